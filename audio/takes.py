"""One take: a recording of one prompt, made on a phone, made ready for the box.

Decoded within bounds (audio.recording), trimmed of the silence before and after the words,
checked (too quiet, clipped, too short, too long), then brought to the box's loudness with
soft edges, as one 16-bit mono WAV at the box's rate. Every refusal says what to do next.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from audio import loudness
from audio.recording import MAX_RECORDING_S, RecordingError, decode_mono
from device.problems import N_, Problem

FRAME_S = 0.02  # the trimming looks at the sound 20 ms at a time
SILENCE_BELOW_PEAK_DB = 40.0  # a frame this far under the loudest one is silence
SILENCE_FLOOR_DBFS = -60.0  # and anything under this always is
MARGIN_S = 0.15  # kept before and after the words, so no syllable is cut
MIN_SPEECH_S = 0.3
TOO_QUIET_DBFS = -45.0  # the loudest frames of a usable take are well above this
CLIPPED_AT = 0.999
CLIPPED_FRACTION = 0.002  # more samples than this at full scale: the phone was too close


class TakeError(ValueError):
    """A take that cannot be used; the message says why and what to do, in plain words."""


@dataclass(frozen=True)
class Take:
    wav: bytes
    seconds: float
    trimmed_s: float  # silence taken off the start and the end


def _frame_db(x: np.ndarray, frame: int) -> np.ndarray:
    n = x.size // frame
    if n == 0:
        return np.array([20 * np.log10(max(float(np.sqrt(np.mean(x**2))) if x.size else 0.0, 1e-9))])
    rms = np.sqrt(np.mean(x[: n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-9))


def speech_bounds(x: np.ndarray, rate: int) -> tuple[int, int]:
    """Where the words begin and end (samples); (0, 0) when there is only silence."""
    frame = max(1, int(FRAME_S * rate))
    db = _frame_db(x, frame)
    threshold = max(float(db.max()) - SILENCE_BELOW_PEAK_DB, SILENCE_FLOOR_DBFS)
    loud = np.flatnonzero(db > threshold)
    if loud.size == 0:
        return 0, 0
    return int(loud[0]) * frame, min(x.size, (int(loud[-1]) + 1) * frame)


def trim_silence(x: np.ndarray, rate: int) -> np.ndarray:
    """The take without the silence before and after the words (MARGIN_S of it kept)."""
    start, end = speech_bounds(x, rate)
    margin = int(MARGIN_S * rate)
    return x[max(0, start - margin):min(x.size, end + margin)] if end > start else x[:0]


def make_take(data: bytes, filename: str, rate: int, loudness_lufs: float,
              max_seconds: float = MAX_RECORDING_S, *, phone_formats: bool = False) -> Take:
    """Check and convert an uploaded recording; raises TakeError saying what is wrong. The format
    is found from the file's content, not from `filename` (phones name files as they like).
    `phone_formats` (the admin page only): M4A, 3GP, WebM... too, read by FFmpeg in a child."""
    if len(data) < 100:
        raise TakeError(Problem(N_("this file is empty or too short to be a recording: record it again")))
    try:
        raw = decode_mono(io.BytesIO(data), rate, max_seconds=max_seconds, phone_formats=phone_formats)
    except RecordingError as exc:  # its message as it is (a Problem stays one, for the page to translate)
        raise TakeError(exc.args[0] if exc.args else str(exc)) from exc
    x = np.asarray(raw, dtype=np.float32)
    if not np.any(np.abs(x) > 1e-4):
        raise TakeError(Problem(N_("this recording is silent: check that the microphone is not covered, "
                                   "and record again")))
    clipped = float(np.mean(np.abs(x) >= CLIPPED_AT))
    if clipped > CLIPPED_FRACTION:
        raise TakeError(Problem(N_("this recording is clipped (too loud, it crackles): hold the phone a little "
                                   "further from your mouth and record again")))
    if float(_frame_db(x, max(1, int(FRAME_S * rate))).max()) < TOO_QUIET_DBFS:
        raise TakeError(Problem(N_("this recording is too quiet: hold the phone closer, speak up, and record again")))
    start, end = speech_bounds(x, rate)
    if (end - start) / rate < MIN_SPEECH_S:
        raise TakeError(Problem(N_("this recording is shorter than a third of a second: record the whole prompt")))
    words = trim_silence(x, rate)
    out = loudness.normalise(words, rate, loudness_lufs)
    from audio.cache import wav_bytes

    wav = wav_bytes(loudness.to_pcm16(loudness.fade(out, rate)), rate)
    return Take(wav=wav, seconds=words.size / rate, trimmed_s=(x.size - words.size) / rate)


__all__ = ["Take", "TakeError", "make_take", "speech_bounds", "trim_silence"]
