"""audio.takes: a phone recording made ready for the box: trimmed, checked, normalised."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest

from audio.loudness import measure_lufs
from audio.takes import TakeError, make_take

RATE = 16000


def wav(samples: np.ndarray, rate: int = RATE) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2").tobytes())
    return buf.getvalue()


def speechlike(seconds: float, level: float = 0.3, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return level * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))


def read(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2") / 32768.0, w.getframerate()


def test_silence_before_and_after_is_cut_and_the_loudness_is_the_boxs():
    room = np.random.default_rng(1).normal(0, 0.0005, int(1.5 * RATE))  # a quiet room, not digital zero
    take = make_take(wav(np.concatenate([room, speechlike(2.0), room])), "t.wav", 22050, -18.0)
    samples, rate = read(take.wav)
    assert rate == 22050
    assert 2.0 <= take.seconds <= 2.0 + 2 * 0.15 + 0.05  # the words and a small margin, not 5 s
    assert take.trimmed_s > 2.5
    assert abs(measure_lufs(samples, rate) - -18.0) < 1.0


def test_a_whisper_is_too_quiet():
    with pytest.raises(TakeError, match="too quiet: hold the phone closer"):
        make_take(wav(speechlike(2.0, level=0.003)), "t.wav", 22050, -18.0)


def test_a_clipped_take_is_refused():
    loud = np.clip(speechlike(2.0, level=3.0), -1, 1)
    with pytest.raises(TakeError, match="clipped"):
        make_take(wav(loud), "t.wav", 22050, -18.0)


def test_silence_and_a_click_are_refused():
    with pytest.raises(TakeError, match="silent"):
        make_take(wav(np.zeros(RATE)), "t.wav", 22050, -18.0)
    with pytest.raises(TakeError, match="shorter than a third of a second"):
        make_take(wav(np.concatenate([np.zeros(RATE), speechlike(0.05), np.zeros(RATE)])), "t.wav", 22050, -18.0)


def test_a_take_too_long_is_refused_from_its_header():
    with pytest.raises(TakeError, match="at most"):
        make_take(wav(speechlike(3.0)), "t.wav", 22050, -18.0, max_seconds=2.0)


def test_a_damaged_phone_recording_says_what_to_do():
    """An M4A header with nothing after it: FFmpeg (in its child process) cannot read it."""
    with pytest.raises(TakeError, match=r"could not be read: the file is damaged.*record it again.*moov atom"):
        make_take(b"\0\0\0\x18ftypM4A " + bytes(200), "voice.m4a", 22050, -18.0, phone_formats=True)
