"""Bells and signal tones, computed with numpy at the output rate (no files, no randomness).

Each bell is a sum of inharmonic partials with exponential decay, like a singing bowl or a small
hand bell: calm enough for a circle, distinct enough to notice. The fault tone is meant to be
unmistakable (a falling two-note pattern, three times) rather than pleasant.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# Partial ratios of a small singing bowl (measured bowls cluster near 1 : 2.7 : 5.2 : 8.4).
_BOWL = ((1.0, 1.0, 1.0), (2.71, 0.45, 1.7), (5.15, 0.18, 2.8), (8.43, 0.07, 4.0))
_ATTACK_S = 0.004


@dataclass(frozen=True)
class _Strike:
    at_s: float  # when the bell is struck
    f0: float  # fundamental, Hz
    decay_s: float  # time constant of the fundamental
    amp: float = 1.0


@dataclass(frozen=True)
class _BellSpec:
    strikes: tuple[_Strike, ...]
    length_s: float
    peak_dbfs: float


_SPECS: dict[str, _BellSpec] = {
    # Between turns: quiet, low, short.
    "soft_bell": _BellSpec((_Strike(0.0, 392.0, 0.9),), 2.5, -14.0),
    # A step or a session begins.
    "bell": _BellSpec((_Strike(0.0, 440.0, 1.2),), 3.2, -8.0),
    # "Time is nearly up": two light strikes, higher.
    "warn_bell": _BellSpec((_Strike(0.0, 587.3, 0.6), _Strike(0.45, 587.3, 0.8)), 2.6, -10.0),
    # "Time is up": three descending strikes.
    "end_bell": _BellSpec(
        (_Strike(0.0, 659.3, 0.7), _Strike(0.5, 523.3, 0.8), _Strike(1.0, 440.0, 1.3)), 3.8, -8.0
    ),
    # Ready: two quick rising notes.
    "chime": _BellSpec((_Strike(0.0, 784.0, 0.25), _Strike(0.14, 1046.5, 0.35)), 1.0, -12.0),
}
TONES: tuple[str, ...] = (*_SPECS, "tick", "fault")


def _bell(spec: _BellSpec, rate: int) -> np.ndarray:
    n = round(spec.length_s * rate)
    t = np.arange(n) / rate
    out = np.zeros(n)
    for strike in spec.strikes:
        local = t - strike.at_s
        on = local >= 0
        lt = local[on]
        env_attack = np.minimum(1.0, lt / _ATTACK_S)
        for ratio, amp, speed in _BOWL:
            f = strike.f0 * ratio
            if f >= rate / 2:
                continue
            decay = np.exp(-lt * speed / strike.decay_s)
            # Two slightly detuned copies: the slow beating of a real bowl.
            tone = np.sin(2 * np.pi * f * lt) + np.sin(2 * np.pi * (f + 0.7 * ratio) * lt)
            out[on] += strike.amp * amp * 0.5 * tone * decay * env_attack
    return out


def _tick(rate: int) -> np.ndarray:
    t = np.arange(int(0.06 * rate)) / rate
    return np.sin(2 * np.pi * 1200.0 * t) * np.exp(-t / 0.012) * np.minimum(1.0, t / 0.001)


def _fault(rate: int) -> np.ndarray:
    """880 Hz then 440 Hz, three times: odd harmonics make it cut through room noise."""
    note = int(0.18 * rate)
    gap = int(0.07 * rate)
    t = np.arange(note) / rate
    env = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)
    pieces = []
    for _ in range(3):
        for f in (880.0, 440.0):
            wave = sum(np.sin(2 * np.pi * f * k * t) / k for k in (1, 3, 5) if f * k < rate / 2)
            pieces += [wave * env, np.zeros(gap)]
        pieces.append(np.zeros(3 * gap))
    return np.concatenate(pieces)


_LEVELS = {"tick": -16.0, "fault": -6.0}


@lru_cache(maxsize=32)
def _samples(name: str, sample_rate: int) -> np.ndarray:
    if name in _SPECS:
        spec = _SPECS[name]
        raw, peak_db = _bell(spec, sample_rate), spec.peak_dbfs
    elif name == "tick":
        raw, peak_db = _tick(sample_rate), _LEVELS["tick"]
    elif name == "fault":
        raw, peak_db = _fault(sample_rate), _LEVELS["fault"]
    else:
        raise KeyError(f"unknown tone '{name}' (known: {', '.join(TONES)})")
    # Fade the very end so a decayed tail never stops on a step.
    tail = min(int(0.05 * sample_rate), raw.size)
    raw[-tail:] *= np.linspace(1.0, 0.0, tail)
    out = raw * (10 ** (peak_db / 20) / np.max(np.abs(raw)))
    out.setflags(write=False)
    return out


def tone_samples(name: str, sample_rate: int) -> np.ndarray:
    """The tone as float samples in [-1, 1] (read-only)."""
    return _samples(name, sample_rate)


def tone_pcm(name: str, sample_rate: int) -> bytes:
    """The tone as S16LE mono bytes."""
    x = _samples(name, sample_rate)
    return np.round(x * 32767.0).astype("<i2").tobytes()
