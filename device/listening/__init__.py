"""Listening that paces the circle: voice activity, an adaptive noise floor, optional spoken
commands. Frames in, events out; audio lives in memory, frame by frame, and is dropped.

The runtime and `circlebox simulate` use:

    settings = listening_settings(config.listening)
    listener, commands_off_reason = build_listener(settings)
    mic = open_arecord_mic(settings.device)        # or open_wav_mic(path)
    while (frame := mic.read_frame()) is not None:
        for event in listener.process(frame, box_playing):
            ...                                     # SpeechStarted / SpeechEnded / CommandHeard

vosk is imported only when spoken commands are built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from device.listening.commands import (
    CommandMatch,
    CommandRecognizer,
    CommandsUnavailable,
    build_recognizer,
    find_model,
    mem_total_mb,
)
from device.listening.events import (
    CLEAR_VOICE_DB,
    FRAME_BYTES,
    FRAME_S,
    FRAME_SAMPLES,
    SAMPLE_RATE,
    VOICE_MEASURE_MIN_S,
    CommandHeard,
    ListenEvent,
    MaybeSpeech,
    MaybeSpeechEnded,
    MicError,
    MicSource,
    RoomNoiseChanged,
    SpeechEnded,
    SpeechStarted,
    UnsureSound,
    UnsureSoundEnded,
    VoiceLevels,
    heard_clearly,
)
from device.listening.listener import Listener, NoiseFloor, frame_level_db
from device.listening.mic import ArecordMic, WavMic, open_arecord_mic, open_wav_mic
from device.listening.settings import (
    DEFAULT_GARBAGE,
    DEFAULT_PHRASES,
    CommandSettings,
    ListeningConfigError,
    ListeningSettings,
    listening_settings,
)

__all__ = [
    "CLEAR_VOICE_DB",
    "DEFAULT_GARBAGE",
    "DEFAULT_PHRASES",
    "FRAME_BYTES",
    "FRAME_S",
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "VOICE_MEASURE_MIN_S",
    "ArecordMic",
    "CommandHeard",
    "CommandMatch",
    "CommandRecognizer",
    "CommandSettings",
    "CommandsUnavailable",
    "ListenEvent",
    "Listener",
    "ListeningConfigError",
    "ListeningSettings",
    "MaybeSpeech",
    "MaybeSpeechEnded",
    "MicError",
    "MicSource",
    "NoiseFloor",
    "RoomNoiseChanged",
    "SpeechEnded",
    "SpeechStarted",
    "UnsureSound",
    "UnsureSoundEnded",
    "VoiceLevels",
    "WavMic",
    "build_listener",
    "build_recognizer",
    "find_model",
    "frame_level_db",
    "heard_clearly",
    "listening_settings",
    "mem_total_mb",
    "open_arecord_mic",
    "open_wav_mic",
]


def build_listener(
    settings: ListeningSettings,
    *,
    mem_mb: int | None = None,
    meminfo: Path = Path("/proc/meminfo"),
    model: Any = None,
    start_t: float = 0.0,
) -> tuple[Listener, str | None]:
    """The listener, and why spoken commands are off (None when they are on).

    Commands are off when disabled in config, when the board has too little RAM (MemTotal
    below `listening.commands.min_memory_mb`; `mem_mb` overrides the reading for tests), when
    no model is found for the language, or when its phrases are not in the model's vocabulary.
    Pacing by voice activity works in every case.
    """
    try:
        recognizer: CommandRecognizer | None = build_recognizer(
            settings.commands, mem_mb=mem_mb, meminfo=meminfo, model=model
        )
        reason = None
    except CommandsUnavailable as exc:
        recognizer, reason = None, str(exc)
    return Listener(settings, commands=recognizer, start_t=start_t), reason
