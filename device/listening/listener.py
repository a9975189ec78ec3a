"""Frames in, events out: voice activity with smoothing, an adaptive noise floor, self-mute.

Time is counted in frames (30 ms each), never read from a clock, so a WAV replays the same
decisions every run. A frame is looked at once and dropped; the only audio kept is a ring of
about half a second before a speech start, and only when spoken commands are on (vosk needs
the first syllable). Nothing is written anywhere.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from device.listening.events import (
    FRAME_BYTES,
    FRAME_S,
    SAMPLE_RATE,
    CommandHeard,
    ListenEvent,
    SpeechEnded,
    SpeechStarted,
)
from device.listening.settings import ListeningSettings

if TYPE_CHECKING:
    from device.listening.commands import CommandRecognizer

_SILENT_DB = -100.0
_WARMUP_S = 1.0  # the floor rises quickly during the first second it hears
_WARMUP_RISE_S = 0.2


def frame_level_db(frame: bytes) -> float:
    """RMS level of a S16 frame in dBFS (a full-scale sine is about -3 dB)."""
    x = np.frombuffer(frame, dtype="<i2").astype(np.float32)
    power = float(np.dot(x, x)) / (len(x) * 32768.0 * 32768.0)
    return 10.0 * math.log10(power) if power > 1e-10 else _SILENT_DB


def _frames(seconds: float) -> int:
    return max(0, round(seconds / FRAME_S))


class NoiseFloor:
    """The room's background level in dB, followed slowly while nobody speaks.

    Two parts: an asymmetric average of non-speech frame levels (falls within about a second,
    rises over several seconds), and a guard: the lowest level heard in the last few seconds.
    Speech always dips between words, so a sound that never dips below X for that long is a
    fan, rain or a generator, and the floor is lifted to X even while "speech" is on.
    """

    BLOCK_FRAMES = 10

    def __init__(self, settings: ListeningSettings):
        self.value: float | None = None
        self._rise = 1.0 - math.exp(-FRAME_S / settings.noise_rise_s)
        self._fall = 1.0 - math.exp(-FRAME_S / settings.noise_fall_s)
        self._warm_rise = 1.0 - math.exp(-FRAME_S / _WARMUP_RISE_S)
        self._warmup_left = _frames(_WARMUP_S)
        n_blocks = max(1, math.ceil(settings.noise_window_s / (self.BLOCK_FRAMES * FRAME_S)))
        self._blocks: deque[float] = deque(maxlen=n_blocks)
        self._block_min = math.inf
        self._block_n = 0

    def update(self, level: float, speechy: bool) -> None:
        self._block_min = min(self._block_min, level)
        self._block_n += 1
        if self._block_n == self.BLOCK_FRAMES:
            self._blocks.append(self._block_min)
            self._block_min, self._block_n = math.inf, 0
        if self.value is None:
            self.value = level
            return
        if not speechy:
            rate = self._fall
            if level > self.value:
                rate = self._warm_rise if self._warmup_left > 0 else self._rise
            self.value += rate * (level - self.value)
        if self._warmup_left > 0:
            self._warmup_left -= 1
        if len(self._blocks) == self._blocks.maxlen:
            window_min = min(min(self._blocks), self._block_min)
            if window_min > self.value:
                self.value = window_min


class Listener:
    """Frames in, events out; counts audio time in frames, never wall time."""

    def __init__(
        self,
        settings: ListeningSettings,
        vad=None,
        commands: CommandRecognizer | None = None,
        start_t: float = 0.0,
    ):
        if vad is None:
            import webrtcvad

            vad = webrtcvad.Vad(settings.vad_aggressiveness)
        self.settings = settings
        self.commands = commands
        self._vad = vad
        self._start_t = float(start_t)
        self._n = 0
        self._start_frames = max(1, _frames(settings.speech_start_s))
        self._start_needed = max(
            1, math.ceil(settings.speech_start_ratio * self._start_frames - 1e-9)
        )
        self._hangover = max(1, _frames(settings.speech_end_hangover_s))
        self._tail = _frames(settings.self_mute_tail_s)
        self._margin = settings.noise_margin_db
        self._min_db = settings.min_speech_db
        self._floor = NoiseFloor(settings)
        self._window: deque[tuple[int, bool]] = deque(maxlen=self._start_frames)
        # Pre-roll ring: audio before a start, kept only for the command recogniser.
        ring = self._start_frames + _frames(settings.preroll_s) if commands is not None else 0
        self._preroll: deque[bytes] = deque(maxlen=ring)
        self._max_cmd_frames = _frames(commands.max_command_s) if commands is not None else 0
        self._preroll_frames = _frames(settings.preroll_s)
        # Non-speech inside a command segment is held back (at most one hangover) and fed only
        # if speech resumes; at the end only `tail_s` of it goes to the recogniser: it turns
        # long stretches of room noise into extra words, which would reject a good command.
        self._cmd_tail = _frames(commands.tail_s) if commands is not None else 0
        self._cmd_pending: list[bytes] = []
        self._mute_left = 0
        self._in_speech = False
        self._seg_start = 0
        self._last_speech = 0
        self._silence_run = 0
        self._cmd_active = False
        self._level = _SILENT_DB
        self._muted = False

    # -- live meter for the admin page ------------------------------------------------------
    @property
    def t(self) -> float:
        """Audio time processed so far (seconds)."""
        return self._start_t + self._n * FRAME_S

    @property
    def level_db(self) -> float:
        return self._level

    @property
    def noise_floor_db(self) -> float:
        return self._floor.value if self._floor.value is not None else _SILENT_DB

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def muted(self) -> bool:
        return self._muted

    @property
    def commands_enabled(self) -> bool:
        return self.commands is not None

    def _time(self, frame_index: int) -> float:
        return self._start_t + frame_index * FRAME_S

    # -- the work ----------------------------------------------------------------------------
    def process(self, frame: bytes, box_playing: bool) -> list[ListenEvent]:
        """Look at one 30 ms frame (960 bytes, 16 kHz mono S16LE); return what happened."""
        if len(frame) != FRAME_BYTES:
            raise ValueError(
                f"a frame is {FRAME_BYTES} bytes (30 ms of 16 kHz mono S16), not {len(frame)}"
            )
        idx = self._n
        self._n += 1
        level = frame_level_db(frame)
        self._level = level
        if box_playing:
            self._mute_left = self._tail
            muted = True
        elif self._mute_left > 0:
            self._mute_left -= 1
            muted = True
        else:
            muted = False
        self._muted = muted
        events: list[ListenEvent] = []
        if muted:
            # The mic hears the box and its echo: no speech can start from these frames, and
            # a speech in progress (the box was started by a button) ends where it was.
            if self._in_speech:
                events.append(self._end_speech(command=False))
            self._window.clear()
            self._preroll.clear()
            return events

        vad_flag = self._vad.is_speech(frame, SAMPLE_RATE)
        floor = self._floor.value if self._floor.value is not None else level
        gate = level >= max(floor + self._margin, self._min_db)
        flag = bool(vad_flag and gate)
        self._floor.update(level, speechy=flag or self._in_speech)
        if self._preroll.maxlen:
            self._preroll.append(frame)

        if not self._in_speech:
            self._window.append((idx, flag))
            if len(self._window) == self._start_frames:
                flags = [f for _, f in self._window]
                if sum(flags) >= self._start_needed:
                    first = next(i for i, f in self._window if f)
                    last = max(i for i, f in self._window if f)
                    self._in_speech = True
                    self._seg_start = first
                    self._last_speech = last
                    self._silence_run = idx - last
                    self._window.clear()
                    events.append(SpeechStarted(t=round(self._time(first), 6)))
                    self._begin_command(first, idx)
            return events

        if flag:
            self._last_speech = idx
            self._silence_run = 0
        else:
            self._silence_run += 1
        if self._cmd_active:
            assert self.commands is not None
            if idx - self._seg_start >= self._max_cmd_frames:
                self.commands.abort()  # a long utterance is talk, not a command
                self._cmd_active = False
                self._cmd_pending.clear()
            elif flag:
                for held in self._cmd_pending:
                    self.commands.feed(held)
                self._cmd_pending.clear()
                self.commands.feed(frame)
            else:
                self._cmd_pending.append(frame)
        if self._silence_run >= self._hangover:
            events.extend(self._finish_segment())
        return events

    def _begin_command(self, first: int, idx: int) -> None:
        if self.commands is None:
            return
        self.commands.begin()
        # From `preroll_s` before the first speech frame: more room noise before an utterance
        # tends to come out as an extra word (measured: 20 of 35 commands vs 17 of 35).
        oldest = idx - len(self._preroll) + 1  # frame index of the oldest frame in the ring
        for i, f in enumerate(self._preroll):
            if oldest + i >= first - self._preroll_frames:
                self.commands.feed(f)
        self._preroll.clear()
        self._cmd_pending.clear()
        self._cmd_active = True

    def _end_speech(self, command: bool) -> SpeechEnded:
        end_t = self._time(self._last_speech + 1)
        start_t = self._time(self._seg_start)
        self._in_speech = False
        self._silence_run = 0
        self._window.clear()
        if self._cmd_active and not command:
            assert self.commands is not None
            self.commands.abort()
            self._cmd_active = False
            self._cmd_pending.clear()
        return SpeechEnded(t=round(end_t, 6), duration_s=round(end_t - start_t, 6))

    def _finish_segment(self) -> list[ListenEvent]:
        ended = self._end_speech(command=True)
        events: list[ListenEvent] = [ended]
        if self._cmd_active:
            assert self.commands is not None
            self._cmd_active = False
            for held in self._cmd_pending[: self._cmd_tail]:
                self.commands.feed(held)
            self._cmd_pending.clear()
            match = self.commands.finish()
            if match is not None:
                events.append(
                    CommandHeard(
                        t=ended.t,
                        phrase=match.phrase,
                        action=match.action,
                        confidence=round(match.confidence, 3),
                    )
                )
        return events

    def flush(self) -> list[ListenEvent]:
        """End of input: close a speech in progress (its command, if any, is judged)."""
        if not self._in_speech:
            return []
        return self._finish_segment()
