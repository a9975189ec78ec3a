"""End to end: `circlebox simulate --mic ROOM.wav` paces the sharing round from room audio.

The room file holds what the microphone would hear: the box's own prompts (loud, with room
echo) while it speaks, then people taking turns with thinking pauses, over fan noise."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from audio_fixtures import SR, at_level, build_circle, convolve, maker_for, room_ir

EVENTS = [{"t": 0.5, "button": "next"}, {"t": 40, "button": "next"}, {"t": 100, "button": "next"}]


@pytest.fixture(scope="session")
def speech_maker(request):
    return maker_for(request.config)


def _simulate(data: Path, tmp: Path, *extra: str) -> list[dict]:
    ev = tmp / "events.jsonl"
    ev.write_text("\n".join(json.dumps(e) for e in EVENTS) + "\n")
    log = tmp / "log.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "device.cli", "--data", str(data), "simulate", "--script",
         "three-step-circle", "--events", str(ev), "--log", str(log), *extra],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in log.read_text().splitlines()]


def _read_16k(path: Path) -> np.ndarray:
    import soxr

    with wave.open(str(path)) as w:
        rate, ch = w.getframerate(), w.getnchannels()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768
    if ch > 1:
        x = x.reshape(-1, ch).mean(axis=1)
    return soxr.resample(x, rate, SR).astype(np.float32)


@pytest.fixture(scope="module")
def room_run(rendered_default, speech_maker, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("simmic")
    # 1. what the box plays up to the round (deterministic: buttons only)
    first = _simulate(rendered_default, tmp, "--audio-out", str(tmp / "box.wav"), "--until", "130")
    round_t = next(e["t"] for e in first if e["event"] == "turn_started")
    box = _read_16k(tmp / "box.wav")[: int(round_t * SR)]
    # 2. the room: people speak in the round, the mic also hears the box's prompts before it
    scene = build_circle(speech_maker, seed=7, n_turns=4, noises=("fan",), lead_in_s=round_t + 2.0)
    heard_box = convolve(at_level(box, -20.0), room_ir(0.5, np.random.default_rng(3)))
    scene.audio[: len(heard_box)] += heard_box[: len(scene.audio)]
    mic = scene.write_wav(tmp / "room.wav")
    log = _simulate(rendered_default, tmp, "--mic", str(mic), "--until", str(scene.duration_s))
    return scene, round_t, log


def test_simulate_logs_speech_and_ends_turns_on_silence(room_run):
    scene, round_t, log = room_run
    started = [e for e in log if e["event"] == "speech_started"]
    ended = [e for e in log if e["event"] == "speech_ended"]
    assert len(started) >= len(scene.turns) and len(ended) >= len(scene.turns)
    assert all(e["duration_s"] > 0 for e in ended)
    # the box's own prompts before the round never count as speech
    assert all(e["t"] > round_t for e in started), started[:3]
    turn_ends = [e for e in log if e["event"] == "turn_ended"]
    by_silence = [e["t"] for e in turn_ends if e["reason"] == "silence"]
    # never inside a turn (thinking pauses of 0.5-2 s), and each turn ends once after it is over
    for t0, t1 in scene.turns:
        assert not [t for t in by_silence if t0 <= t < t1], (t0, t1, by_silence)
        assert len([t for t in by_silence if t1 <= t < t1 + 5.0]) == 1, (t0, t1, turn_ends)
