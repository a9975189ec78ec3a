"""What the VM's USB speaker played: QEMU's WAV (48 kHz stereo), matched against the prompts
the image rendered (its data partition's cache), with tests/journeys/heard.py's correlation.

The box plays at audio.sample_rate (22050 Hz); ALSA's plug converts to the USB card's 48 kHz,
so the output is brought back to the prompt's rate (soxr) before it is matched. Resampling
twice costs a little similarity: MATCH is lower than the journeys' exact-driver threshold, far
above what another prompt scores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from journeys.heard import _first_audible, _ncc, read_wav

from vm.qemu_box import WAV_CHANNELS, WAV_RATE

MATCH = 0.85
WINDOW_S = 0.25
WAV_HEADER = 44


def speaker_samples(wav: Path, rate: int, start_byte: int = WAV_HEADER) -> np.ndarray:
    """QEMU's WAV as it grows (its header's sizes are written only at exit), mono at `rate`."""
    import soxr

    raw = np.fromfile(wav, dtype="<i2", offset=start_byte) if wav.exists() else np.zeros(0, "<i2")
    raw = raw[: len(raw) // WAV_CHANNELS * WAV_CHANNELS].reshape(-1, WAV_CHANNELS).astype(np.float64)
    return soxr.resample(raw.mean(axis=1), WAV_RATE, rate) if len(raw) else np.zeros(0)


def rendered_prompts(cache: Path, circle: str) -> tuple[dict[str, np.ndarray], int]:
    prompt_set = json.loads((cache / "sets" / f"{circle}.json").read_text(encoding="utf-8"))
    out, rate = {}, 0
    for pid, entry in prompt_set["prompts"].items():
        out[f"{circle} {pid}"], rate = read_wav(cache / entry["file"])
    return out, rate


def heard(output: np.ndarray, prompt: np.ndarray, rate: int) -> float:
    """How well the prompt is found in the output (0..1): the best of several WINDOW_S stretches
    of its first seconds. Under emulation ALSA underruns put gaps into the output, so one clean
    stretch is what counts (other prompts score far lower on every stretch)."""
    onset = _first_audible(prompt)
    if onset is None:
        return 0.0
    width = int(WINDOW_S * rate)
    best = 0.0
    for start in range(onset, min(len(prompt) - width, onset + 3 * rate), width):
        window = prompt[start: start + width]
        if np.abs(window).max() <= 40:  # a pause: nothing to recognise
            continue
        scores = _ncc(output, window)
        best = max(best, float(scores.max()) if scores.size else 0.0)
    return best


def heard_share(output: np.ndarray, prompt: np.ndarray, rate: int, seconds: float = 8.0) -> float:
    """The share (0..1) of the prompt's WINDOW_S stretches in its first `seconds` found in the
    output at MATCH. Tells two prompts of one voice apart where `heard` cannot: a word they share
    ("everyone") lets the one not played score near MATCH, but only on a stretch or two."""
    onset = _first_audible(prompt)
    if onset is None:
        return 0.0
    width = int(WINDOW_S * rate)
    found = tried = 0
    for start in range(onset, min(len(prompt) - width, onset + int(seconds * rate)), width):
        window = prompt[start: start + width]
        if np.abs(window).max() <= 40:
            continue
        scores = _ncc(output, window)
        tried += 1
        found += bool(scores.size) and float(scores.max()) >= MATCH
    return found / tried if tried else 0.0


def what_played(output: np.ndarray, prompts: dict[str, np.ndarray], rate: int) -> list[tuple[str, float]]:
    """Every prompt with its best score, best first (for a failure message)."""
    return sorted(((name, heard(output, ref, rate)) for name, ref in prompts.items()),
                  key=lambda item: -item[1])
