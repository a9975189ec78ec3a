"""Test recordings in phones' own formats, made with PyAV's encoders at test time (no files
kept): AAC in M4A (iPhone Voice Memos, most Android recorders), AMR in 3GP (older Android),
Opus in WebM (browsers' MediaRecorder), and a video-only MP4. No tests here."""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np

# name: (container format, codec, sample rate, channels)
PHONE_FORMATS = {
    "m4a": ("ipod", "aac", 44_100, 2),
    "3gp": ("3gp", "libopencore_amrnb", 8_000, 1),
    "webm": ("webm", "libopus", 48_000, 1),
}


def speech_like(seconds: float, rate: int, freq: float = 220.0, level: float = 0.3,
                silence_s: float = 0.5) -> np.ndarray:
    """Silence, a tone with a slow wobble (words), silence: float32 in [-1, 1]."""
    t = np.arange(int(seconds * rate)) / rate
    words = level * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    pad = np.zeros(int(silence_s * rate))
    return np.concatenate([pad, words, pad]).astype(np.float32)


def phone_recording(kind: str, seconds: float = 1.0, freq: float = 220.0, level: float = 0.3) -> bytes:
    """A recording as a phone of `kind` ("m4a", "3gp", "webm") would save it."""
    container_format, codec, rate, channels = PHONE_FORMATS[kind]
    return encode(speech_like(seconds, rate, freq, level), container_format, codec, rate, channels)


class _Stream(io.RawIOBase):
    """A sink that cannot seek back, as a browser's MediaRecorder writes: the muxer never goes
    back to write the length, so the file does not say how long it is."""

    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        self.data += b
        return len(b)


def encode(mono: np.ndarray, container_format: str, codec: str, rate: int, channels: int = 1,
           streamed: bool = False) -> bytes:
    """`mono` (float32) encoded with PyAV's `codec` into a `container_format` file, as bytes;
    `streamed`: written as a live recording is, with no length in the file."""
    import av

    buf: io.BytesIO | _Stream = _Stream() if streamed else io.BytesIO()
    layout = "stereo" if channels == 2 else "mono"
    with av.open(buf, mode="w", format=container_format) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        planes = np.repeat(mono[np.newaxis, :], channels, axis=0)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planes), format="fltp", layout=layout)
        frame.sample_rate = rate
        frame.pts = 0
        frame.time_base = Fraction(1, rate)
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return bytes(buf.data) if isinstance(buf, _Stream) else buf.getvalue()


def video_only_mp4(seconds: float = 0.5) -> bytes:
    """An MP4 with pictures and no sound (a phone's silent video)."""
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(int(seconds * 10)):
            picture = np.full((48, 64, 3), (i * 20) % 255, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()
