"""Recordings (WAV, MP3, OGG, FLAC): length checked from the header, then decoded in chunks.
Phones' own formats (M4A, 3GP, WebM) go to audio.phone_decode, for the admin page's studio only.

A compressed file says little about how much sound it holds: 0.67 MB of FLAC can be an hour of
tone, 3 GB once decoded whole to float64. So the length is read from the header first (nothing
is decoded) and a file over the limit is refused at once; then the sound is decoded one block at
a time, mixed to mono and resampled to the box's rate as it goes, and refused as soon as it runs
past the limit (a header may say "length unknown"). Memory: one block, plus the result at the
box's rate as float32 (at most MAX_RECORDING_S of it: 80 MB at 22,050 Hz).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from device.problems import N_, Problem

if TYPE_CHECKING:  # numpy and soundfile load when a recording is decoded, not on import
    import numpy as np

MAX_RECORDING_S = 15 * 60  # one recording, one prompt: a long guided exercise at most
MAX_CHANNELS = 8
MIN_RATE, MAX_RATE = 4_000, 384_000
BLOCK_FRAMES = 65_536  # decoded at a time (0.7 s of 96 kHz audio; 2 MB for 8 channels)
_UNKNOWN_LENGTH = 1 << 62  # libsndfile's frame count when the header does not say


class RecordingError(ValueError):
    """A recording that cannot be used; the message (a Problem, said in the reader's language on
    the admin page) says why in plain words."""


def empty_recording() -> Problem:
    """One message for both decoders."""
    return Problem(N_("this recording is empty"))


def _too_long(seconds: float | None, max_seconds: float) -> RecordingError:
    """Too long, in minutes for the box's limit and in seconds for a short one (a take's limit)."""
    in_minutes = max_seconds >= 90
    unit = 60 if in_minutes else 1
    limit = f"{max_seconds / unit:.0f}"
    if seconds is None:
        template = (N_("this recording runs on; one recording may be at most %(limit)s minutes: cut it into "
                       "shorter pieces, one for each step") if in_minutes else
                    N_("this recording runs on; one recording may be at most %(limit)s seconds: cut it into "
                       "shorter pieces, one for each step"))
        return RecordingError(Problem(template, limit=limit))
    template = (N_("this recording is %(length)s minutes long; one recording may be at most %(limit)s minutes: "
                   "cut it into shorter pieces, one for each step") if in_minutes else
                N_("this recording is %(length)s seconds long; one recording may be at most %(limit)s seconds: "
                   "cut it into shorter pieces, one for each step"))
    return RecordingError(Problem(template, length=f"{seconds / unit:.0f}", limit=limit))


def decode_mono(
    source: str | Path | BinaryIO, target_rate: int, *, max_seconds: float = MAX_RECORDING_S,
    phone_formats: bool = False,
) -> np.ndarray:
    """The recording as mono float32 samples at `target_rate`, never longer than `max_seconds`.

    With `phone_formats` (the admin page's studio only), a file soundfile cannot open (M4A, 3GP,
    WebM...) is read by FFmpeg in a child process (audio.phone_decode); the runtime never asks.
    Raises RecordingError (a ValueError) when the file is not sound, too long, empty or damaged.
    """
    import numpy as np
    import soundfile

    try:
        sound = soundfile.SoundFile(source if not isinstance(source, Path) else str(source))
    except Exception as exc:  # libsndfile's own words are for technicians: keep them after ours
        if phone_formats:
            from audio.phone_decode import decode_phone_recording

            return decode_phone_recording(_all_bytes(source), target_rate, max_seconds)
        raise RecordingError(Problem(N_("this file cannot be read as sound (%(detail)s); save it again as WAV or MP3"),
                                     detail=type(exc).__name__)) from exc
    with sound:
        rate, channels, frames = int(sound.samplerate), int(sound.channels), int(sound.frames)
        if not MIN_RATE <= rate <= MAX_RATE or not 1 <= channels <= MAX_CHANNELS:
            raise RecordingError(Problem(N_("this recording has an unusual format (%(rate)s Hz, %(channels)s "
                                            "channels); save it again as WAV or MP3"), rate=rate, channels=channels))
        limit_frames = math.ceil(max_seconds * rate)
        if limit_frames < frames < _UNKNOWN_LENGTH:  # the header says so: nothing decoded
            raise _too_long(frames / rate, max_seconds)
        resampler = None
        if rate != target_rate:
            import soxr

            resampler = soxr.ResampleStream(rate, target_rate, 1, dtype="float32", quality="HQ")
        out = _Output(frames, rate, target_rate, max_seconds)
        decoded = 0
        try:
            for block in sound.blocks(BLOCK_FRAMES, dtype="float32", always_2d=True):
                decoded += len(block)
                if decoded > limit_frames:  # a header that did not say, or said too little
                    raise _too_long(None, max_seconds)
                if not np.all(np.isfinite(block)):  # a float WAV can hold NaN or infinity
                    raise RecordingError(Problem(N_("this recording is damaged (some samples are not numbers); "
                                                    "save it again as WAV or MP3")))
                mono = block.mean(axis=1, dtype=np.float32)
                out.add(resampler.resample_chunk(mono) if resampler else mono)
        except RecordingError:
            raise
        except Exception as exc:  # a file damaged part way through
            raise RecordingError(Problem(N_("this recording is damaged part way through (%(detail)s); save it "
                                            "again as WAV or MP3"), detail=type(exc).__name__)) from exc
        if resampler is not None:
            out.add(resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    if decoded == 0:
        raise RecordingError(empty_recording())
    return out.samples()


def _all_bytes(source: str | Path | BinaryIO) -> bytes:
    """The whole file, from its start (soundfile may have read part of it)."""
    if isinstance(source, str | Path):
        return Path(source).read_bytes()
    if hasattr(source, "getvalue"):
        return source.getvalue()
    source.seek(0)
    return source.read()


class _Output:
    """The decoded samples: one array sized from the header when it gives the length (no
    second copy when the pieces are joined), grown by doubling when it does not."""

    def __init__(self, frames: int, rate: int, target_rate: int, max_seconds: float):
        import numpy as np

        known = frames < _UNKNOWN_LENGTH
        seconds = frames / rate if known else min(max_seconds, 60.0)
        self._buf = np.empty(math.ceil(seconds * target_rate) + 1024, dtype=np.float32)
        self._size = 0

    def add(self, chunk: np.ndarray) -> None:
        import numpy as np

        end = self._size + chunk.size
        if end > self._buf.size:
            grown = np.empty(max(end, 2 * self._buf.size), dtype=np.float32)
            grown[: self._size] = self._buf[: self._size]
            self._buf = grown
        self._buf[self._size : end] = chunk
        self._size = end

    def samples(self) -> np.ndarray:
        return self._buf[: self._size]
