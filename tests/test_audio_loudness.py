"""Loudness normalisation: the target is met, peaks never pass the ceiling, no clicks."""

from __future__ import annotations

import numpy as np
import pytest

from audio.loudness import fade, limit, measure_lufs, normalise, peak_dbfs, to_pcm16

RATE = 22050


def sine(level: float, seconds: float = 2.0, f: float = 997.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return level * np.sin(2 * np.pi * f * t)


def test_full_scale_sine_measures_minus_3_lufs() -> None:
    # BS.1770's reference: a 997 Hz full-scale sine is -3.01 LUFS.
    assert measure_lufs(sine(1.0), RATE) == pytest.approx(-3.01, abs=0.1)


@pytest.mark.parametrize("level", [0.001, 0.05, 0.5, 1.0])
@pytest.mark.parametrize("target", [-23.0, -18.0, -14.0])
def test_sine_reaches_the_target(level: float, target: float) -> None:
    out = normalise(sine(level), RATE, target)
    assert measure_lufs(out, RATE) == pytest.approx(target, abs=0.1)
    assert peak_dbfs(out) <= -1.0


def test_short_audio_falls_back_to_rms() -> None:
    short = sine(0.01, seconds=0.2)
    assert measure_lufs(short, RATE) == pytest.approx(20 * np.log10(0.01 / np.sqrt(2)), abs=0.05)
    out = normalise(short, RATE, -18.0)
    assert measure_lufs(out, RATE) == pytest.approx(-18.0, abs=0.1)


def test_peaks_are_limited_not_clipped() -> None:
    # Quiet tone with sharp clicks: reaching -18 LUFS would push the clicks far over 0 dBFS.
    x = sine(0.05)
    x[::2000] = 0.9
    out = normalise(x, RATE, -18.0)
    assert peak_dbfs(out) <= -1.0
    assert np.abs(to_pcm16(out)).max() < 32767 * 10 ** (-1 / 20)
    # The gain taken off to protect the peaks is bounded, so loudness stays close to target.
    assert measure_lufs(out, RATE) > -24.0


def test_limiter_keeps_quiet_parts_untouched() -> None:
    x = sine(0.1)
    x[20000] = 1.0
    out = limit(x, RATE, 0.5)
    assert np.abs(out).max() <= 0.5 + 1e-12
    assert np.array_equal(out[:19000], x[:19000]) and np.array_equal(out[21000:], x[21000:])


def test_silence_stays_silence() -> None:
    assert not normalise(np.zeros(RATE), RATE, -18.0).any()


def test_fade_starts_and_ends_at_zero() -> None:
    out = fade(np.ones(RATE), RATE)
    assert out[0] == 0.0 and out[-1] < 1e-3
    assert out[RATE // 2] == 1.0
    assert np.all(np.diff(out[:110]) >= 0)
