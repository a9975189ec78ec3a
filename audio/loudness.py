"""One loudness for every prompt, so the facilitator never reaches for the volume mid-circle.

Loudness is measured with ITU-R BS.1770 (pyloudnorm), whose gating ignores the silences inside
an exercise. Piper peak-normalises each sentence, so speech brought to -18 LUFS often peaks
above full scale: rather than leave those prompts quieter than the rest, a short look-ahead
limiter takes the few loudest peaks down to the ceiling (at most MAX_LIMIT_DB). Beyond that
the gain itself is capped. Nothing ever clips.
"""

from __future__ import annotations

import numpy as np

BLOCK_S = 0.4  # one BS.1770 gating block; shorter audio is measured by RMS
PEAK_CEILING_DBFS = -1.0
MAX_LIMIT_DB = 9.0  # Piper peak-normalises each sentence; a few spiky ones need more than 6 dB
FADE_S = 0.005
_LOOKAHEAD_S = 0.004


def db_to_gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def measure_lufs(samples: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness (LUFS) of mono float audio; -inf for silence."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0 or not np.any(x):
        return float("-inf")
    if x.size < BLOCK_S * sample_rate:
        # Too short to gate: plain RMS in dBFS (a full-scale sine is -3 dB either way).
        return float(10.0 * np.log10(np.mean(x**2)))
    import pyloudnorm  # render-time only: the runtime never measures loudness

    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(x))


def peak_dbfs(samples: np.ndarray) -> float:
    peak = float(np.max(np.abs(samples))) if np.size(samples) else 0.0
    return 20.0 * np.log10(peak) if peak > 0 else float("-inf")


def limit(samples: np.ndarray, sample_rate: int, ceiling: float) -> np.ndarray:
    """Bring every |sample| to <= ceiling with smooth gain ramps (no clipping, no clicks).

    The required gain is min-filtered over +-L samples and then averaged over +-L, which makes
    the ramps smooth while keeping the gain at each sample at or below what that sample needs.
    """
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    x = np.asarray(samples, dtype=np.float64)
    need = np.minimum(1.0, ceiling / np.maximum(np.abs(x), 1e-12))
    if need.min() >= 1.0:
        return x
    half = max(1, int(_LOOKAHEAD_S * sample_rate))
    gain = minimum_filter1d(need, size=2 * half + 1, mode="nearest")
    gain = uniform_filter1d(gain, size=2 * half + 1, mode="nearest")
    out = x * np.minimum(gain, need)  # the min() only guards against float rounding
    return out


def normalise(
    samples: np.ndarray,
    sample_rate: int,
    target_lufs: float,
    ceiling_dbfs: float = PEAK_CEILING_DBFS,
) -> np.ndarray:
    """Gain to `target_lufs`, peaks limited (at most MAX_LIMIT_DB) under `ceiling_dbfs`."""
    x = np.asarray(samples, dtype=np.float64)
    loudness = measure_lufs(x, sample_rate)
    if not np.isfinite(loudness):
        return x.copy()
    gain_db = target_lufs - loudness
    # Cap the gain so that the limiter never has to take more than MAX_LIMIT_DB off a peak.
    gain_db = min(gain_db, ceiling_dbfs + MAX_LIMIT_DB - peak_dbfs(x))
    ceiling = db_to_gain(ceiling_dbfs) * 0.998  # margin for rounding to 16 bits
    out = limit(x * db_to_gain(gain_db), sample_rate, ceiling)
    # Limiting takes a little loudness off; one correction pass, capped the same way.
    again = measure_lufs(out, sample_rate)
    if np.isfinite(again) and again < target_lufs - 0.1:
        extra = min(target_lufs - again, ceiling_dbfs + MAX_LIMIT_DB - peak_dbfs(x) - gain_db)
        if extra > 0:
            out = limit(x * db_to_gain(gain_db + extra), sample_rate, ceiling)
    return out


def fade(samples: np.ndarray, sample_rate: int, fade_s: float = FADE_S) -> np.ndarray:
    """Raised-cosine fade in and out, so no piece starts or stops with a click."""
    x = np.array(samples, dtype=np.float64)
    n = min(int(fade_s * sample_rate), x.size // 2)
    if n > 0:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n, endpoint=False))
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Float [-1, 1] to int16 (rounded, clipped only as a guard)."""
    return np.clip(np.round(np.asarray(samples) * 32767.0), -32768, 32767).astype(np.int16)
