"""Bells and signal tones: deterministic, never clipping, bell-like (decaying, inharmonic)."""

from __future__ import annotations

import numpy as np
import pytest

from audio.tones import TONES, tone_pcm, tone_samples

RATE = 22050
BELLS = ("soft_bell", "bell", "warn_bell", "end_bell", "chime")


def test_every_named_tone_exists() -> None:
    assert set(TONES) == {*BELLS, "tick", "fault"}


@pytest.mark.parametrize("name", TONES)
def test_tone_is_deterministic_bounded_and_click_free(name: str) -> None:
    pcm = tone_pcm(name, RATE)
    assert pcm == tone_pcm(name, RATE)
    x = np.frombuffer(pcm, dtype="<i2").astype(np.int32)
    assert x.size > 0.03 * RATE
    assert 0.05 * 32767 < np.abs(x).max() < 0.9 * 32767  # audible, with headroom
    assert abs(x[0]) < 200 and abs(x[-1]) < 50  # soft onset, faded tail


@pytest.mark.parametrize("name", BELLS)
def test_bells_decay_and_have_inharmonic_partials(name: str) -> None:
    x = tone_samples(name, RATE)
    tenth = x.size // 10
    assert np.sqrt(np.mean(x[-tenth:] ** 2)) < 0.3 * np.sqrt(np.mean(x[:tenth] ** 2))
    spectrum = np.abs(np.fft.rfft(x))
    freqs = np.fft.rfftfreq(x.size, 1 / RATE)
    f0 = freqs[np.argmax(spectrum)]
    # The strongest partial above 1.5 x f0 is not a whole multiple of f0 (a bowl, not a buzzer).
    above = freqs > 1.5 * f0
    f1 = freqs[above][np.argmax(spectrum[above])]
    assert abs(f1 / f0 - round(f1 / f0)) > 0.15


def test_soft_bell_is_softer_than_bell() -> None:
    def rms(n: str) -> float:
        return float(np.sqrt(np.mean(tone_samples(n, RATE) ** 2)))

    assert rms("soft_bell") < 0.6 * rms("bell")


def test_tones_follow_the_sample_rate() -> None:
    for name in TONES:
        a, b = tone_samples(name, 22050), tone_samples(name, 44100)
        assert b.size == pytest.approx(2 * a.size, rel=0.001)


def test_fault_tone_is_unlike_any_bell() -> None:
    fault = tone_samples("fault", RATE)
    # Loud and steady (repeated notes), not a decaying strike.
    tenth = fault.size // 10
    assert np.sqrt(np.mean(fault[-3 * tenth : -tenth] ** 2)) > 0.3 * np.sqrt(
        np.mean(fault[:tenth] ** 2)
    )
    assert np.abs(fault).max() > max(np.abs(tone_samples(b, RATE)).max() for b in BELLS) * 0.99


def test_unknown_tone_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="soft_bell"):
        tone_pcm("gong", RATE)
