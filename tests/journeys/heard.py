"""What the box played, read from SDL's disk audio driver while the runtime runs.

The runtime opens pygame's mixer at `audio.sample_rate`, 16-bit signed, mono, with no format
changes allowed (audio/speaker.py), and keeps the stream open: the disk driver writes every
mixed sample to SDL_DISKAUDIOFILE, silence included, at the pace of a real sound card. A sound
played at volume v comes out as `trunc(sample * int(v * 128) / 128)` (SDL's integer volume), so
a rendered prompt is found in the output by normalised cross-correlation at full rate (gain does
not change it) and its level by the least-squares gain against the prompt's own samples.
"""

from __future__ import annotations

import json
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WINDOW_S = 0.3  # the part of a sound used to recognise it: long enough that nothing else matches
MATCH_NCC = 0.97  # truncation at low gain costs a little; another prompt scores far below this
AUDIBLE = 40  # a sample above this (of 32767) is sound, not the mixer's silence or rounding


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1, f"{path}: not 16-bit mono"
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64), w.getframerate()


def rendered_prompt(cache: Path, script_id: str, prompt_id: str) -> np.ndarray:
    """A prompt as the box renders it: the rendered set `<cache>/sets/<id>.json` names the WAV."""
    prompt_set = json.loads((cache / "sets" / f"{script_id}.json").read_text(encoding="utf-8"))
    try:
        entry = prompt_set["prompts"][prompt_id]
    except KeyError:
        raise AssertionError(f"{script_id}'s rendered set has no {prompt_id!r} "
                             f"(it has {sorted(prompt_set['prompts'])})") from None
    samples, _ = read_wav(cache / entry["file"])
    return samples


def rendered_set(cache: Path, script_id: str) -> dict[str, np.ndarray]:
    """Every prompt of a rendered set, by `<script_id> <prompt_id>` (for saying what played)."""
    prompt_set = json.loads((cache / "sets" / f"{script_id}.json").read_text(encoding="utf-8"))
    return {f"{script_id} {pid}": read_wav(cache / e["file"])[0] for pid, e in prompt_set["prompts"].items()}


def _first_audible(x: np.ndarray, start: int = 0) -> int | None:
    loud = np.flatnonzero(np.abs(x[start:]) > AUDIBLE)
    return None if loud.size == 0 else start + int(loud[0])


def _ncc(haystack: np.ndarray, needle: np.ndarray) -> np.ndarray:
    """Normalised cross-correlation of `needle` at every offset of `haystack` (FFT)."""
    n, w = len(haystack), len(needle)
    if n < w:
        return np.zeros(0)
    size = 1 << int(np.ceil(np.log2(n + w)))
    corr = np.fft.irfft(np.fft.rfft(haystack, size) * np.conj(np.fft.rfft(needle, size)), size)[: n - w + 1]
    energy = np.concatenate([[0.0], np.cumsum(haystack * haystack)])
    local = energy[w:] - energy[: n - w + 1]
    denom = np.sqrt(np.maximum(local, 0.0) * float(needle @ needle))
    out = np.zeros_like(corr)
    ok = denom > 1e-9 * max(1.0, float(needle @ needle))
    out[ok] = corr[ok] / denom[ok]
    return out


@dataclass(frozen=True)
class Heard:
    """One sound found in the output: where it began (output sample), from which sample of the
    sound, where it stopped matching, and the gain it was played at."""

    name: str
    at: int
    offset: int
    end: int
    gain: float
    rate: int
    lead: int = 0  # the sound's own leading near-silence, in samples

    @property
    def at_s(self) -> float:
        return self.at / self.rate

    @property
    def from_start(self) -> bool:
        """It began at the sound's beginning (not a resumed or cut-in part)."""
        return self.offset <= self.lead + int(0.1 * self.rate)

    @property
    def seconds(self) -> float:
        return (self.end - self.at) / self.rate

    def __str__(self) -> str:
        part = "from its start" if self.from_start else f"from {self.offset / self.rate:.1f} s in"
        return (f"{self.name} at {self.at_s:.1f} s ({part}, {(self.end - self.at) / self.rate:.1f} s of it, "
                f"gain {self.gain:.2f})")


class AudioOut:
    """The disk driver's output file, read as it grows."""

    def __init__(self, path: Path, rate: int) -> None:
        self.path = path
        self.rate = rate

    def samples(self, start: int = 0) -> np.ndarray:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return np.zeros(0)
        count = size // 2 - start
        if count <= 0:
            return np.zeros(0)
        return np.fromfile(self.path, dtype="<i2", count=count, offset=2 * start).astype(np.float64)

    def mark(self) -> int:
        """Samples written so far: what plays after this moment is at or after this position."""
        try:
            return self.path.stat().st_size // 2
        except FileNotFoundError:
            return 0

    # -- recognising sounds -------------------------------------------------------------------

    def _window(self, ref: np.ndarray, from_sample: int = 0) -> tuple[int, np.ndarray]:
        onset = _first_audible(ref, from_sample)
        if onset is None:
            raise ValueError("the sound is silent")
        return onset, ref[onset: onset + int(WINDOW_S * self.rate)]

    def _extent(self, out: np.ndarray, at: int, ref: np.ndarray, offset: int, gain: float) -> int:
        """Where, from output position `at` (= ref sample `offset`), the output stops being the
        sound at this gain: its end, or where it was cut, paused or changed."""
        n = min(len(out) - at, len(ref) - offset)
        expected = ref[offset: offset + n] * gain
        got = out[at: at + n]
        bad = np.flatnonzero(np.abs(got - expected) > 3 + 0.02 * np.abs(expected))
        return at + (int(bad[0]) if bad.size else n)

    def _gain(self, out: np.ndarray, at: int, ref: np.ndarray, offset: int) -> float:
        n = min(len(out) - at, len(ref) - offset, int(WINDOW_S * self.rate) * 4)
        r = ref[offset: offset + n]
        return float(out[at: at + n] @ r / (r @ r))

    def find_start(self, name: str, ref: np.ndarray, since: int) -> Heard | None:
        """The first time after `since` that `ref` began playing from its start."""
        onset, window = self._window(ref)
        out = self.samples(since)
        scores = _ncc(out, window)
        hits = np.flatnonzero(scores >= MATCH_NCC)
        if hits.size == 0:
            return None
        at = int(hits[0]) - onset  # where the sound's first sample went out
        if at < 0:
            return None
        gain = self._gain(out, at, ref, 0)
        end = self._extent(out, at, ref, 0, gain)
        return Heard(name, since + at, 0, since + end, gain, self.rate, onset)

    def identify(self, at: int, candidates: dict[str, np.ndarray]) -> Heard | None:
        """The next sound at or after output position `at`, found anywhere inside one of the
        candidates (a resumed prompt starts mid-way); None if nothing audible yet or unknown."""
        out = self.samples(at)
        start = _first_audible(out)
        if start is None:
            return None
        window = out[start: start + int(WINDOW_S * self.rate)]
        if len(window) < int(WINDOW_S * self.rate):
            return None
        best: tuple[float, str, int] | None = None
        for name, ref in candidates.items():
            scores = _ncc(ref, window)
            if scores.size == 0:
                continue
            i = int(np.argmax(scores))
            if scores[i] >= MATCH_NCC and (best is None or scores[i] > best[0]):
                best = (float(scores[i]), name, i)
        if best is None:
            return None
        _, name, offset = best
        ref = candidates[name]
        gain = self._gain(out, start, ref, offset)
        end = self._extent(out, start, ref, offset, gain)
        if end <= start:
            return None
        return Heard(name, at + start, offset, at + end, gain, self.rate, _first_audible(ref * abs(gain)) or 0)

    def timeline(self, since: int, candidates: dict[str, np.ndarray], until: int | None = None) -> list[Heard]:
        """Everything recognisable that played from `since` (to `until`), in order. A stretch
        of sound that matches no candidate is skipped a window at a time."""
        heard: list[Heard] = []
        at = since
        until = self.mark() if until is None else until
        while at < until:
            h = self.identify(at, candidates)
            if h is None:
                out = self.samples(at)
                start = _first_audible(out)
                if start is None or start + int(WINDOW_S * self.rate) > len(out):
                    break
                at += start + int(WINDOW_S * self.rate)  # an unknown sound: step over it
                continue
            heard.append(h)
            at = max(h.end, at + 1)
        return heard

    # -- waiting for what people hear -------------------------------------------------------

    def wait_for_start(self, name: str, ref: np.ndarray, since: int, timeout: float = 20.0) -> Heard | None:
        """Poll (with a deadline) until `ref` begins playing after `since`; the match needs its
        first WINDOW_S of sound written."""
        end = time.monotonic() + timeout
        while True:
            found = self.find_start(name, ref, since)
            if found is not None or time.monotonic() > end:
                return found
            time.sleep(0.2)

    def measured(self, heard: Heard, ref: np.ndarray, seconds: float = 2.0, timeout: float = 20.0) -> Heard:
        """The same sound again once `seconds` of it have been written: its gain and extent
        over that span (a match is reported as soon as its first window is out)."""
        self.wait_until(heard.at + int(seconds * self.rate), timeout)
        return self.identify(heard.at, {heard.name: ref}) or heard

    def wait_until(self, position: int, timeout: float = 20.0) -> bool:
        """Until the output has been written up to `position` (the box keeps its stream open)."""
        end = time.monotonic() + timeout
        while self.mark() < position:
            if time.monotonic() > end:
                return False
            time.sleep(0.1)
        return True

    def describe(self, since: int, candidates: dict[str, np.ndarray]) -> str:
        """What played since `since`, in words, for a failure message."""
        heard = self.timeline(since, candidates)
        seconds = (self.mark() - since) / self.rate
        if not heard:
            silent = _first_audible(self.samples(since)) is None
            return (f"in {seconds:.1f} s of output: " + ("only silence" if silent else
                    "sound, but none of the known prompts"))
        return f"in {seconds:.1f} s of output: " + "; ".join(str(h) for h in heard)
