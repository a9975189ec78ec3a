"""Microphone sources: arecord on the box, a WAV file in tests and `circlebox simulate`.

Both hand out 30 ms frames of 16 kHz mono S16LE, one at a time. Nothing is kept: a frame is
read, returned, and forgotten by the source.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np

from device.config_sections import alsa_device_problem
from device.listening.events import FRAME_BYTES, SAMPLE_RATE, MicError

# The runtime's HOME: an empty folder of root's that no service can write (created by
# firmware_config/tmpfiles.d/circlebox.conf, set by systemd/circlebox.service). ALSA reads
# ~/.asoundrc and $XDG_CONFIG_HOME/alsa/asoundrc: a planted one can define the capture device
# as a `file` plugin that writes the room to disk, or load a plugin library. arecord always gets
# this HOME, whatever the runtime's own environment says.
SAFE_HOME = "/run/circlebox-home"
# Variables that would make ALSA read another top-level configuration than the system's.
_ALSA_CONFIG_VARS = ("ALSA_CONFIG_PATH", "ALSA_CONFIG_DIR", "ALSA_PLUGIN_DIR")


def arecord_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment arecord runs with: the caller's, but ALSA reads only the system's
    configuration (/usr/share/alsa, /etc/asound.conf, /etc/alsa/conf.d), never a user file."""
    env = {k: v for k, v in (os.environ if environ is None else environ).items()
           if k not in _ALSA_CONFIG_VARS}
    env["HOME"] = SAFE_HOME
    env["XDG_CONFIG_HOME"] = SAFE_HOME
    return env

_WAVE_PCM = 1
_WAVE_FLOAT = 3
_WAVE_EXTENSIBLE = 0xFFFE
_CHUNK_SOURCE_S = 0.5  # how much of the file is decoded at a time


class _WavFormat:
    def __init__(
        self, fmt: int, channels: int, rate: int, width: int, data_offset: int, data_len: int
    ):
        self.fmt, self.channels, self.rate, self.width = fmt, channels, rate, width
        self.data_offset, self.data_len = data_offset, data_len


def _parse_wav_header(f: BinaryIO, path: Path) -> _WavFormat:
    head = f.read(12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
        raise MicError(f"{path}: not a WAV file")
    fmt_info = None
    while True:
        chunk = f.read(8)
        if len(chunk) < 8:
            raise MicError(f"{path}: WAV file has no audio data")
        cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if cid == b"fmt ":
            body = f.read(size + (size & 1))
            fmt, channels, rate = struct.unpack("<HHI", body[:8])
            bits = struct.unpack("<H", body[14:16])[0]
            if fmt == _WAVE_EXTENSIBLE and size >= 40:
                fmt = struct.unpack("<H", body[24:26])[0]
            fmt_info = (fmt, channels, rate, bits)
        elif cid == b"data":
            if fmt_info is None:
                raise MicError(f"{path}: WAV data before its format chunk")
            fmt, channels, rate, bits = fmt_info
            width = bits // 8
            ok = (fmt == _WAVE_PCM and width in (1, 2, 3, 4)) or (
                fmt == _WAVE_FLOAT and width in (4, 8)
            )
            if not ok or channels < 1 or rate < 4000:
                raise MicError(
                    f"{path}: unsupported WAV format (format {fmt}, {bits} bit, "
                    f"{channels} channels, {rate} Hz)"
                )
            if size in (0, 0xFFFFFFFF):  # streamed or RF64: read to the end of the file
                size = 1 << 62
            return _WavFormat(fmt, channels, rate, width, f.tell(), size)
        else:
            f.seek(size + (size & 1), 1)


def _to_float(raw: bytes, fmt: _WavFormat) -> np.ndarray:
    """Interleaved samples -> mono float32 in [-1, 1]."""
    w = fmt.width
    if fmt.fmt == _WAVE_FLOAT:
        x = np.frombuffer(raw, dtype="<f4" if w == 4 else "<f8").astype(np.float32)
    elif w == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif w == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif w == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = v.astype(np.float32) / float(1 << 23)
    else:
        x = np.frombuffer(raw, dtype="<i4").astype(np.float32) / float(1 << 31)
    if fmt.channels > 1:
        x = x.reshape(-1, fmt.channels).mean(axis=1)
    return x


class WavMic:
    """Reads a WAV file of any common format as 16 kHz mono S16 frames, streaming."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self._f: BinaryIO | None = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise MicError(f"{self.path}: cannot open: {exc.strerror}") from exc
        try:
            self._fmt = _parse_wav_header(self._f, self.path)
        except Exception:
            self._f.close()
            raise
        self._left = self._fmt.data_len
        self._block = self._fmt.channels * self._fmt.width
        self._resampler = None
        if self._fmt.rate != SAMPLE_RATE:
            try:
                import soxr
            except ImportError:
                self._f.close()
                raise MicError(f"{self.path}: is {self._fmt.rate} Hz; resampling to 16 kHz needs "
                               "soxr (pip install 'circlebox[listen]')") from None
            self._resampler = soxr.ResampleStream(self._fmt.rate, SAMPLE_RATE, 1, dtype="float32")
        self._pending = b""
        self._eof = False

    @property
    def source_rate(self) -> int:
        return self._fmt.rate

    def _decode_more(self) -> None:
        assert self._f is not None
        want = max(self._block, int(self._fmt.rate * _CHUNK_SOURCE_S) * self._block)
        raw = self._f.read(min(want, self._left))
        raw = raw[: len(raw) - len(raw) % self._block]
        self._left -= len(raw)
        last = not raw or self._left <= 0
        x = _to_float(raw, self._fmt) if raw else np.zeros(0, dtype=np.float32)
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x, last=last)
        pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2").tobytes()
        self._pending += pcm
        if last:
            self._eof = True

    def read_frame(self) -> bytes | None:
        if self._f is None:
            return None
        while len(self._pending) < FRAME_BYTES and not self._eof:
            self._decode_more()
        if not self._pending:
            return None
        frame, self._pending = self._pending[:FRAME_BYTES], self._pending[FRAME_BYTES:]
        if len(frame) < FRAME_BYTES:
            frame += b"\0" * (FRAME_BYTES - len(frame))
        return frame

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        self._pending = b""

    def __enter__(self) -> WavMic:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_wav_mic(path: Path) -> WavMic:
    """A WAV file as a microphone: converted to 16 kHz mono, 30 ms frames, last one zero-padded."""
    return WavMic(Path(path))


class ArecordMic:
    """`arecord` as a subprocess writing raw 16 kHz mono S16LE to a pipe; read frame by frame."""

    def __init__(self, device: str | None, command: str = "arecord", startup_check_s: float = 0.3):
        problem = alsa_device_problem(device) if device is not None else None
        if problem:  # the config refuses it too; this is the last door before arecord
            raise MicError(f"cannot start the microphone: listening.device {problem}")
        exe = shutil.which(command)
        if exe is None:
            raise MicError(
                f"cannot start the microphone: '{command}' is not installed (alsa-utils)"
            )
        self.argv = [exe, "-q"]
        if device:
            self.argv += ["-D", device]
        self.argv += ["-r", str(SAMPLE_RATE), "-c", "1", "-f", "S16_LE", "-t", "raw"]
        self.environment = arecord_environment()
        self.device = device
        try:
            self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
                env=self.environment,
            )
        except OSError as exc:
            raise MicError(f"cannot start the microphone ({command}): {exc.strerror}") from exc
        try:
            code = self._proc.wait(timeout=startup_check_s)
        except subprocess.TimeoutExpired:
            return  # still running: good
        err = self._stderr_tail()
        self.close()
        raise MicError(f"microphone {device or 'default'} failed to start (exit {code}): {err}")

    def _stderr_tail(self) -> str:
        if self._proc is None or self._proc.stderr is None:
            return ""
        try:
            text = self._proc.stderr.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""
        return text.splitlines()[-1] if text else "no message"

    def read_frame(self) -> bytes | None:
        if self._proc is None or self._proc.stdout is None:
            raise MicError("microphone is closed")
        buf = b""
        while len(buf) < FRAME_BYTES:
            try:
                chunk = self._proc.stdout.read(FRAME_BYTES - len(buf))
            except OSError as exc:
                raise MicError(f"microphone read failed: {exc.strerror}") from exc
            if not chunk:
                code = self._proc.wait()
                err = self._stderr_tail()
                self.close()
                raise MicError(
                    f"microphone {self.device or 'default'} stopped (exit {code}): {err}"
                )
            buf += chunk
        return buf

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def open_arecord_mic(device: str | None, command: str = "arecord") -> ArecordMic:
    """The box's microphone through arecord; raises MicError if it cannot start."""
    return ArecordMic(device, command=command)
