"""Test takes, as a phone's recorder would upload them: a tone between two silences, so each
recorded prompt can be traced to its take by pitch (no tests here)."""

from __future__ import annotations

import io
import wave

import numpy as np


def tone_wav(freq: float, seconds: float = 1.0, level: float = 0.3, rate: int = 16000,
             silence_s: float = 0.4) -> bytes:
    """A 16-bit mono WAV: silence, a sine of `freq` Hz at `level` of full scale, silence."""
    t = np.arange(int(seconds * rate)) / rate
    pad = np.zeros(int(silence_s * rate))
    x = np.concatenate([pad, level * np.sin(2 * np.pi * freq * t), pad])
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.round(x * 32767).astype("<i2").tobytes())
    return buf.getvalue()
