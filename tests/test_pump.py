"""One pump for the box and the simulator: they cannot disagree about the microphone.

Regression (issue 11): the runtime muted the microphone while its engine had a sound in hand
(so while paused mid-prompt), the simulator only while its speaker was playing (so not while
paused). A facilitator's pause is not a turn: talk then must neither start nor end one. Both
now run `device.pump`, where the microphone is muted while the box speaks, is paused or in
HELP. Each scenario runs in the simulator and in the real-time runtime, on the same audio.
"""

from __future__ import annotations

import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from conftest import make_config
from gpiozero.pins.mock import MockFactory

from audio.silent import SilentSpeaker
from device.content import load_configured_circle
from device.listening import build_listener, listening_settings, open_wav_mic
from device.runtime import Runtime
from device.simulate import SimEvent, run_simulation

LISTENING = {"enabled": True, "commands": {"enabled": False}}
MIC_RATE = 16000
SPEECH_S = 2.5


def speech_16k(circle) -> np.ndarray:
    """Real speech: the box's own rendered welcome, as a microphone in the room would hear it."""
    import soxr

    pcm = np.frombuffer(circle.bank.pcm("step:welcome"), dtype="<i2").astype(np.float32) / 32768
    voice = soxr.resample(pcm, circle.bank.sample_rate, MIC_RATE).astype(np.float32)
    return voice[MIC_RATE // 2: MIC_RATE // 2 + int(SPEECH_S * MIC_RATE)]


def room_wav(path: Path, duration_s: float, speech: np.ndarray, speech_at: list[float]) -> Path:
    """Quiet fan noise, with the speech at each of `speech_at` (seconds)."""
    rng = np.random.default_rng(5)
    room = rng.normal(0, 10 ** (-60 / 20), int(duration_s * MIC_RATE)).astype(np.float32)
    for t in speech_at:
        start = int(t * MIC_RATE)
        room[start: start + speech.size] += speech[: room.size - start]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(MIC_RATE)
        w.writeframes((np.clip(room, -1, 1) * 32767).astype("<i2").tobytes())
    return path


class Events:
    """A log sink: every event the box emitted, with its time."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict, float]] = []

    def __call__(self, event: str, fields: dict, t: float) -> None:
        self.seen.append((event, dict(fields), t))

    def names(self) -> list[str]:
        return [e for e, _, _ in self.seen]

    def times(self, name: str) -> list[float]:
        return [t for e, _, t in self.seen if e == name]


# the two moments a facilitator pauses: mid-prompt (the old simulator heard the room), and while
# the box waits with nothing playing (the old runtime heard the room)
SCENARIOS = {"mid-prompt": 3.0, "nothing-playing": None}


def pause_at(circle, scenario: str) -> float:
    at = SCENARIOS[scenario]
    return at if at is not None else 0.5 + circle.bank.duration_s("step:welcome") + 2.0


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_simulation_mutes_the_microphone_while_paused(box_data, tmp_path, scenario):
    config = make_config(box_data, listening=LISTENING)
    circle = load_configured_circle("three-step-circle", box_data)
    paused = pause_at(circle, scenario)
    resumed = paused + 8.0
    speech = speech_16k(circle)
    # speech during the pause, and (when nothing plays after it) again once the circle goes on
    mic = open_wav_mic(room_wav(tmp_path / "room.wav", resumed + 6.0, speech, [paused + 2.0, resumed + 2.0]))
    listener, _ = build_listener(listening_settings(config.listening))
    events = [SimEvent(0.5, "next", "test"), SimEvent(paused, "pause", "test"), SimEvent(resumed, "pause", "test")]
    log = Events()
    run_simulation(config, circle, events, mic=mic, listener=listener, until=resumed + 6.0, extra_sinks=[log])
    mic.close()
    assert "paused" in log.names() and "resumed" in log.names()
    heard = log.times("speech_started")
    assert not [t for t in heard if paused <= t <= resumed], heard
    if scenario == "nothing-playing":  # the same speech is heard when the box is not paused
        assert [t for t in heard if t > resumed], heard


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_runtime_mutes_the_microphone_while_paused(box_data, tmp_path, scenario):
    circle = load_configured_circle("three-step-circle", box_data)
    wav = room_wav(tmp_path / "room.wav", 6.0, speech_16k(circle), [2.0])
    room_may_speak = threading.Event()

    def open_mic(device):
        """The room's audio, once the box is paused (the microphone reads it in one go)."""
        room_may_speak.wait(30)
        return open_wav_mic(wav)

    if scenario == "mid-prompt":
        speaker = SilentSpeaker(time.monotonic)  # the welcome lasts half a minute
    else:
        speaker = SilentSpeaker(lambda: time.monotonic() - 1e6)  # every sound ends at once
    log = Events()
    runtime = Runtime(make_config(box_data, listening=LISTENING), pin_factory=MockFactory(), speaker=speaker,
                      control=False, open_mic=open_mic, log_sinks=[log])
    runtime.start()
    loop = threading.Thread(target=runtime.run, daemon=True)
    loop.start()
    try:
        runtime.box.dispatch("next")
        want_playing = scenario == "mid-prompt"
        _wait(lambda: runtime.status()["state"] == ("speaking" if want_playing else "waiting")
              and (runtime.status()["playing"] is not None) == want_playing)
        runtime.box.dispatch("pause")
        _wait(lambda: runtime.status()["state"] == "paused")
        room_may_speak.set()
        # the file ends: the microphone "stops", a fault queued after everything it heard
        _wait(lambda: any("the microphone stopped" in f for f in runtime.status()["faults"]))
        assert runtime.listener is not None and runtime.listener.t >= 5.9  # it heard the whole file
        assert "speech_started" not in log.names()
    finally:
        runtime.stop()
        loop.join(5)
        runtime.close()


def _wait(predicate, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")
