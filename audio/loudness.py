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
    """Integrated loudness (LUFS) of mono float audio; -inf for silence. Float32 is measured
    as float32 (a long recording: pyloudnorm copies its input twice)."""
    x = np.asarray(samples)
    if x.dtype != np.float32:
        x = x.astype(np.float64, copy=False)
    if x.size == 0 or not np.any(x):
        return float("-inf")
    if x.size < BLOCK_S * sample_rate:
        # Too short to gate: plain RMS in dBFS (a full-scale sine is -3 dB either way).
        return float(10.0 * np.log10(np.mean(x**2)))
    import pyloudnorm  # render-time only: the runtime never measures loudness

    if x.dtype != np.float32:
        return float(pyloudnorm.Meter(sample_rate).integrated_loudness(x))
    # A long recording (float32): K-weight it a chunk at a time into one float32 array and let
    # pyloudnorm gate that, instead of its three float64 copies (370 MB for 14 minutes).
    meter = pyloudnorm.Meter(sample_rate)
    weighted = _k_weighted(x, sample_rate)
    meter.filter_class = "custom"  # no filters of its own: `weighted` is already K-weighted
    return float(meter.integrated_loudness(weighted))


_FILTER_CHUNK = 1 << 18


def _k_weighted(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """BS.1770's K-weighting (pyloudnorm's two stages, same coefficients), in chunks: the same
    result as filtering the whole array, with the filters' state carried from chunk to chunk."""
    from pyloudnorm.iirfilter import IIRfilter
    from scipy.signal import lfilter

    stages = [  # pyloudnorm.Meter's "K-weighting" filter class
        IIRfilter(4.0, 1 / np.sqrt(2), 1500.0, sample_rate, "high_shelf"),
        IIRfilter(0.0, 0.5, 38.0, sample_rate, "high_pass"),
    ]
    state = [np.zeros(max(len(f.a), len(f.b)) - 1) for f in stages]
    out = np.empty(x.size, dtype=np.float32)
    for start in range(0, x.size, _FILTER_CHUNK):
        chunk = x[start : start + _FILTER_CHUNK].astype(np.float64)
        for i, stage in enumerate(stages):
            chunk, state[i] = lfilter(stage.b, stage.a, chunk, zi=state[i])
            chunk *= stage.passband_gain
        out[start : start + chunk.size] = chunk
    return out


def peak_dbfs(samples: np.ndarray) -> float:
    peak = float(np.max(np.abs(samples))) if np.size(samples) else 0.0
    return 20.0 * np.log10(peak) if peak > 0 else float("-inf")


_LIMIT_CHUNK = 1 << 18  # samples limited at a time: memory stays a few MB for any length


def limit(samples: np.ndarray, sample_rate: int, ceiling: float, gain: float = 1.0) -> np.ndarray:
    """Bring every |sample * gain| to <= ceiling with smooth gain ramps (no clipping, no clicks).

    The required gain is min-filtered over +-L samples and then averaged over +-L, which makes
    the ramps smooth while keeping the gain at each sample at or below what that sample needs.
    Worked in chunks with 2L samples of context on each side (exactly the whole-array result),
    so a 15-minute recording needs one output array, not six; float32 input stays float32.
    """
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    x = np.asarray(samples)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    half = max(1, int(_LOOKAHEAD_S * sample_rate))
    out = np.empty_like(x)
    for start in range(0, x.size, _LIMIT_CHUNK):
        stop = min(x.size, start + _LIMIT_CHUNK)
        lo, hi = max(0, start - 2 * half), min(x.size, stop + 2 * half)
        scaled = x[lo:hi].astype(np.float64) * gain
        need = np.minimum(1.0, ceiling / np.maximum(np.abs(scaled), 1e-12))
        if need.min() < 1.0:
            smooth = minimum_filter1d(need, size=2 * half + 1, mode="nearest")
            smooth = uniform_filter1d(smooth, size=2 * half + 1, mode="nearest")
            scaled *= np.minimum(smooth, need)  # the min() only guards against float rounding
        out[start:stop] = scaled[start - lo : stop - lo]
    return out


def normalise(
    samples: np.ndarray,
    sample_rate: int,
    target_lufs: float,
    ceiling_dbfs: float = PEAK_CEILING_DBFS,
) -> np.ndarray:
    """Gain to `target_lufs`, peaks limited (at most MAX_LIMIT_DB) under `ceiling_dbfs`.

    Float32 input gives float32 output (a long recording at half the memory); else float64.
    """
    x = np.asarray(samples)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    loudness = measure_lufs(x, sample_rate)
    if not np.isfinite(loudness):
        return x.copy()
    gain_db = target_lufs - loudness
    # Cap the gain so that the limiter never has to take more than MAX_LIMIT_DB off a peak.
    gain_db = min(gain_db, ceiling_dbfs + MAX_LIMIT_DB - peak_dbfs(x))
    ceiling = db_to_gain(ceiling_dbfs) * 0.998  # margin for rounding to 16 bits
    out = limit(x, sample_rate, ceiling, db_to_gain(gain_db))
    # Limiting takes a little loudness off; one correction pass, capped the same way.
    again = measure_lufs(out, sample_rate)
    if np.isfinite(again) and again < target_lufs - 0.1:
        extra = min(target_lufs - again, ceiling_dbfs + MAX_LIMIT_DB - peak_dbfs(x) - gain_db)
        if extra > 0:
            out = limit(x, sample_rate, ceiling, db_to_gain(gain_db + extra))
    return out


def fade(samples: np.ndarray, sample_rate: int, fade_s: float = FADE_S) -> np.ndarray:
    """Raised-cosine fade in and out, so no piece starts or stops with a click (a copy;
    float32 stays float32)."""
    x = np.array(samples, dtype=np.float32 if np.asarray(samples).dtype == np.float32 else np.float64)
    n = min(int(fade_s * sample_rate), x.size // 2)
    if n > 0:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n, endpoint=False))
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Float [-1, 1] to int16 (rounded, clipped only as a guard)."""
    return np.clip(np.round(np.asarray(samples) * 32767.0), -32768, 32767).astype(np.int16)
