"""TimelineSpeaker: the virtual speaker of `circlebox simulate`, driven by a virtual clock."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from audio.bank import SoundBank
from audio.timeline import TimelineSpeaker

RATE = 8000  # small numbers make the sample arithmetic easy to read
N = 2 * RATE  # the test sound lasts 2 s
# Every sample distinct and non-zero, so any offset error shows.
SOUND = (np.arange(N) % 20000 + 1).astype("<i2")


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def setup() -> tuple[TimelineSpeaker, Clock]:
    bank = SoundBank(RATE)
    bank.add("s", SOUND.tobytes())
    bank.add_tones(["tick"])
    clock = Clock()
    speaker = TimelineSpeaker(RATE, clock=clock)
    speaker.load(bank)
    return speaker, clock


def read_back(speaker: TimelineSpeaker, until: float, path: Path) -> np.ndarray:
    speaker.write_wav(path, until)
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, RATE)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def test_play_then_stop_leaves_silence_sound_silence(setup, tmp_path: Path) -> None:
    speaker, clock = setup
    clock.t = 1.0
    speaker.play("s")
    assert speaker.ends_at() == pytest.approx(3.0)
    clock.t = 1.5
    speaker.stop()
    assert speaker.ends_at() is None
    assert speaker.poll(3.5) is None  # stopped, never finished
    out = read_back(speaker, 4.0, tmp_path / "out.wav")
    assert out.size == 4 * RATE
    assert not out[:RATE].any()
    assert np.array_equal(out[RATE : int(1.5 * RATE)], SOUND[: RATE // 2])
    assert not out[int(1.5 * RATE) :].any()


def test_pause_and_resume_continue_from_the_paused_position(setup, tmp_path: Path) -> None:
    speaker, clock = setup
    clock.t = 1.0
    speaker.play("s")
    clock.t = 1.5
    speaker.pause()
    assert speaker.ends_at() is None
    assert speaker.poll(2.9) is None  # paused: the original end time passes, no finish
    clock.t = 3.0
    speaker.resume()
    assert speaker.ends_at() == pytest.approx(4.5)  # 1.5 s of the sound were left
    assert speaker.poll(4.4) is None
    assert speaker.poll(4.5) == "s"
    assert speaker.poll(4.6) is None  # reported once
    out = read_back(speaker, 5.0, tmp_path / "out.wav")
    half = RATE // 2
    assert not out[:RATE].any()
    assert np.array_equal(out[RATE : RATE + half], SOUND[:half])
    assert not out[RATE + half : 3 * RATE].any()
    assert np.array_equal(out[3 * RATE : int(4.5 * RATE)], SOUND[half:])
    assert not out[int(4.5 * RATE) :].any()


def test_volume_scales_everything_after_it(setup) -> None:
    speaker, clock = setup
    speaker.set_volume(0.5)
    speaker.play("s")
    clock.t = 1.0
    speaker.set_volume(0.25)  # mid-sound: the rest is softer
    out = speaker.render(2.0).astype(np.int32)
    src = SOUND.astype(np.int32)
    assert np.abs(out[:RATE] - src[:RATE] * 0.5).max() <= 0.5
    assert np.abs(out[RATE:] - src[RATE:] * 0.25).max() <= 0.5
    speaker.set_volume(7.0)
    assert speaker.volume == 1.0


def test_a_new_play_cuts_the_old_sound_without_a_finish(setup) -> None:
    speaker, clock = setup
    speaker.play("s")
    clock.t = 0.5
    speaker.play("bell:tick")
    end = speaker.ends_at()
    assert end is not None and 0.5 < end < 0.6
    assert speaker.poll(end) == "bell:tick"
    assert speaker.poll(end + 1) is None
    out = speaker.render(1.0)
    assert np.array_equal(out[: RATE // 2], SOUND[: RATE // 2])


def test_a_finish_missed_by_poll_is_still_reported_once(setup) -> None:
    speaker, clock = setup
    speaker.play("s")
    clock.t = 2.5  # the sound ended at 2.0; the simulation plays the next one first
    speaker.play("bell:tick")
    assert speaker.poll(2.5) == "s"
    assert speaker.poll(2.5) is None
    assert np.array_equal(speaker.render(2.5)[:N], SOUND)


def test_unknown_sound_is_a_clear_error(setup) -> None:
    speaker, _ = setup
    with pytest.raises(KeyError, match="nope"):
        speaker.play("nope")
