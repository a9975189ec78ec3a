"""Noise pre-filters for the audio handed to the speech detector only: a bench experiment (issue 13)
that lost (BENCHMARKS.md), kept in bench/ so it can be rerun; the box does not use it.

The room noise in our rooms is low-frequency heavy (pink and brown noise, hum), speech lives
at 300-4000 Hz. A soft speaker at the noise's broadband level can go unheard by Silero for
seconds. These filters are causal and streaming (state kept across 30 ms frames, no
per-sample Python loop), so they could run in front of the detector on the box; the listener's
level meter and noise floor keep the unfiltered audio.

- `HighPass`: a Butterworth high-pass (scipy.signal.sosfilt with kept state).
- `NoiseSuppressor`: a streaming spectral suppressor: per-bin noise estimate from a slow
  quantile of the (time-smoothed) power, Wiener gain with a decision-directed a-priori SNR and a
  gain floor, sqrt-Hann analysis/synthesis windows at 50 % overlap, overlap-add back to
  samples. Its output lags its input by one hop (15 ms).
- `Chain`: filters in series.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from device.listening.events import SAMPLE_RATE


class PreFilter(Protocol):
    def process(self, samples: np.ndarray) -> np.ndarray:
        """Filter the next samples (float32, -1..1); as many come out as went in."""
        ...

    def reset(self) -> None:
        """Forget the signal's past (after the microphone was muted); what was learnt of the
        room's noise is kept (the room did not change while the box spoke)."""
        ...


class HighPass:
    """Butterworth high-pass, `order` poles at `cutoff_hz`."""

    def __init__(self, cutoff_hz: float = 200.0, order: int = 2) -> None:
        from scipy.signal import butter

        self._sos = butter(order, cutoff_hz, btype="highpass", fs=SAMPLE_RATE, output="sos")
        self._zi = np.zeros((self._sos.shape[0], 2))

    def process(self, samples: np.ndarray) -> np.ndarray:
        from scipy.signal import sosfilt

        out, self._zi = sosfilt(self._sos, samples, zi=self._zi)
        return out.astype(np.float32)

    def reset(self) -> None:
        self._zi[:] = 0.0


class NoiseSuppressor:
    """Streaming Wiener suppressor; the noise estimate is learnt slowly from each bin's
    low-power moments (a running `quantile` of its smoothed power in dB), so a voice that is
    present most of the time does not become "noise"."""

    def __init__(self, hop: int = 240, floor_db: float = -12.0, quantile: float = 0.3,
                 step_db: float = 0.4, smooth: float = 0.7, dd_alpha: float = 0.98,
                 warmup_hops: int = 20) -> None:
        self._hop = hop
        n_fft = 2 * hop
        self._win = np.sqrt(np.hanning(n_fft + 1)[:-1]).astype(np.float64)  # periodic
        self._gmin = 10.0 ** (floor_db / 20.0)
        self._up = step_db * quantile  # dB per hop while the power is above the estimate
        self._down = step_db * (1.0 - quantile)
        self._smooth = smooth
        self._alpha = dd_alpha
        self._warmup = warmup_hops
        # The quantile of a smoothed periodogram sits below the noise's mean power: measured
        # on white noise with these settings (see `_calibrate`), added back in dB.
        self._bias_db = _quantile_bias_db(quantile, smooth)
        bins = n_fft // 2 + 1
        self._noise_db = np.zeros(bins)
        self._sum_db = np.zeros(bins)
        self._seen = 0
        self._in = np.zeros(n_fft)
        self._tail = np.zeros(hop)
        self._power = np.zeros(bins)
        self._clean = np.zeros(bins)

    def process(self, samples: np.ndarray) -> np.ndarray:
        hop = self._hop
        if len(samples) % hop:
            raise ValueError(f"give the suppressor a multiple of {hop} samples, not {len(samples)}")
        out = np.empty(len(samples), dtype=np.float32)
        for i in range(0, len(samples), hop):
            self._in[:hop] = self._in[hop:]
            self._in[hop:] = samples[i:i + hop]
            spec = np.fft.rfft(self._in * self._win)
            power = spec.real ** 2 + spec.imag ** 2
            gain = self._gain(power)
            y = np.fft.irfft(spec * gain) * self._win
            out[i:i + hop] = self._tail + y[:hop]
            self._tail = y[hop:].copy()
        return out

    def _gain(self, power: np.ndarray) -> np.ndarray:
        eps = 1e-12
        if self._seen == 0:
            self._power = power.copy()
        else:
            self._power = self._smooth * self._power + (1.0 - self._smooth) * power
        smoothed_db = 10.0 * np.log10(self._power + eps)
        self._seen += 1
        if self._seen <= self._warmup:  # the first hops: the log-mean, then the slow quantile
            self._sum_db += smoothed_db
            self._noise_db = self._sum_db / self._seen
        else:
            self._noise_db += np.where(smoothed_db > self._noise_db, self._up, -self._down)
        noise = 10.0 ** ((self._noise_db + self._bias_db) / 10.0) + eps
        post = power / noise
        prior = self._alpha * self._clean / noise + (1.0 - self._alpha) * np.maximum(post - 1.0, 0.0)
        gain = np.maximum(prior / (1.0 + prior), self._gmin)
        self._clean = gain * gain * power
        return gain

    def reset(self) -> None:
        self._in[:] = 0.0
        self._tail[:] = 0.0
        self._clean[:] = 0.0


def _quantile_bias_db(quantile: float, smooth: float, hops: int = 20000) -> float:
    """How far (dB) the `quantile` of a periodogram smoothed by `smooth` lies below its mean,
    for Gaussian noise (a periodogram bin is exponential): simulated once, seeded."""
    from scipy.signal import lfilter

    power = np.random.default_rng(0).exponential(size=hops)
    smoothed = lfilter([1.0 - smooth], [1.0, -smooth], power)
    return float(-10.0 * np.log10(np.quantile(smoothed[100:], quantile)))


class Chain:
    """Filters in series."""

    def __init__(self, *filters: PreFilter) -> None:
        self._filters = filters

    def process(self, samples: np.ndarray) -> np.ndarray:
        for f in self._filters:
            samples = f.process(samples)
        return samples

    def reset(self) -> None:
        for f in self._filters:
            f.reset()


class FilteredDetector:
    """A speech detector that hears the frame through `prefilter` (the listener's level and
    noise floor still see the unfiltered frame)."""

    def __init__(self, detector, prefilter: PreFilter) -> None:
        self._det = detector
        self._filter = prefilter

    def probability(self, frame: bytes) -> float:
        x = np.frombuffer(frame, dtype="<i2").astype(np.float32) * (1.0 / 32768.0)
        y = self._filter.process(x)
        pcm = np.clip(np.round(y * 32768.0), -32768, 32767).astype("<i2")
        return self._det.probability(pcm.tobytes())

    def reset(self) -> None:
        self._det.reset()
        self._filter.reset()
