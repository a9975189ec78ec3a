"""Recordings in phones' own formats (M4A/AAC, 3GP/AMR, WebM or Ogg with Opus), read by FFmpeg
(PyAV) in a child process, because FFmpeg's demuxers are a large surface for a hostile file.

Used only by the admin page's studio, through audio.recording.decode_mono(phone_formats=True),
for what soundfile (libsndfile) cannot open; the runtime never imports PyAV. The parent sends
the file's bytes on the child's stdin and reads mono float32 samples at the box's rate from its
stdout, never more than the length limit allows, within a wall-clock timeout. The child, before
it reads a byte of the file, caps its own memory (RLIMIT_AS) and CPU time (RLIMIT_CPU), opens
only whitelisted containers and codecs with no network or file protocols, checks the length the
container declares, then counts what it decodes against the same limit (audio.recording's
MAX_RECORDING_S, passed in). A refusal comes back as one JSON line on stderr naming a reason from
a fixed list; the parent turns every failure into a RecordingError in plain words.

Run as `python -m audio.phone_decode --rate R --max-seconds S ...` (the parent does this).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import os
import selectors
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from audio.recording import MAX_CHANNELS, MAX_RATE, MIN_RATE, RecordingError, _too_long, empty_recording
from device.problems import N_, Problem

if TYPE_CHECKING:
    import numpy as np

# FFmpeg demuxer names a phone's recording may come in (a demuxer named "mov,mp4,m4a,3gp,3g2,mj2"
# matches when any of its names is here).
CONTAINERS = ("mov", "mp4", "m4a", "3gp", "matroska", "webm", "ogg", "aac", "amr", "amrnb", "amrwb",
              "wav", "mp3", "flac")
# Audio decoders phones' recorders (and the formats soundfile also reads) use.
CODECS = ("aac", "aac_fixed", "amrnb", "amrwb", "amr_nb", "amr_wb", "opus", "vorbis", "mp3", "mp3float",
          "flac", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s32le", "pcm_f32le", "pcm_u8", "pcm_alaw",
          "pcm_mulaw")
NO_PROTOCOL = "none"  # no protocol has this name: a file that points at another file or a URL is not followed


@dataclass(frozen=True)
class ChildLimits:
    """What the child may spend on one file: memory and CPU beyond what the reader itself takes
    (Python, numpy and FFmpeg loaded, before the file is read), and wall-clock time in all."""

    memory_bytes: int = 256 * 1024 * 1024  # a 15-minute M4A needs under 64 MB (measured)
    cpu_s: int = 60  # a 15-minute AAC recording takes a few seconds on a Pi 4
    wall_s: float = 120.0


DEFAULT_LIMITS = ChildLimits()
MAX_INPUT_BYTES = 64 * 1024 * 1024  # above the admin page's upload limit (16 MB)
_DETAIL_CHARS = 200
_STDERR_KEPT = 16 * 1024

# Why the child refused, as a key (never free text, so a misbehaving child cannot word the page).
_WHY: dict[str, str] = {
    "damaged": N_("the file is damaged, or is not a recording"),
    "kind": N_("the file is of a kind the box does not read"),
    "video_only": N_("the file holds pictures or video but no sound"),
    "format": N_("the sound is in an unusual format"),
    "memory": N_("reading it needed more memory than the box allows"),
    "time": N_("reading it took longer than the box allows"),
    "no_reader": N_("this box has no reader for phone recordings (PyAV is not installed)"),
}
_COULD_NOT_READ = N_("this recording could not be read: %(why)s; record it again, or save it as WAV or MP3 "
                     "(technical detail: %(detail)s)")


def _refusal(why: str, detail: str) -> RecordingError:
    return RecordingError(Problem(_COULD_NOT_READ, why=Problem(_WHY[why]), detail=_plain(detail) or why))


def _plain(text: str) -> str:
    """Technical detail fit to show: printable, one line, short."""
    kept = "".join(c if c.isprintable() else " " for c in str(text))
    return " ".join(kept.split())[:_DETAIL_CHARS]


# -- the parent ---------------------------------------------------------------------------------

def decode_phone_recording(data: bytes, target_rate: int, max_seconds: float,
                           limits: ChildLimits = DEFAULT_LIMITS) -> np.ndarray:
    """The recording in `data` as mono float32 samples at `target_rate`, decoded by the child.

    Raises RecordingError saying in plain words why it cannot be used.
    """
    import numpy as np

    if len(data) > MAX_INPUT_BYTES:  # past the page's upload limit: not reached from the page
        raise _refusal("memory", f"{len(data)} bytes; at most {MAX_INPUT_BYTES}")
    most_bytes = 4 * (math.ceil(max_seconds * target_rate) + target_rate)  # the resampler's tail
    command = [sys.executable, "-m", "audio.phone_decode", "--rate", str(target_rate),
               "--max-seconds", repr(float(max_seconds)), "--memory-bytes", str(limits.memory_bytes),
               "--cpu-s", str(limits.cpu_s)]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=_child_env(), cwd="/", start_new_session=True)
    try:
        out, err, overflow, timed_out = _exchange(child, data, most_bytes, limits.wall_s)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
    if timed_out:
        raise _refusal("time", f"stopped after {limits.wall_s:g} s")
    if overflow:  # the child decodes no more than the limit: only a misbehaving one gets here
        raise _too_long(None, max_seconds)
    if child.returncode != 0:
        raise _child_failure(child.returncode, err, max_seconds)
    if len(out) % 4:
        raise _refusal("damaged", "the reader's output was cut short")
    samples = np.frombuffer(out, dtype="<f4").astype(np.float32, copy=False)  # no copy
    if samples.size == 0:
        raise RecordingError(empty_recording())
    return samples


def _child_env() -> dict[str, str]:
    """The child's environment: this project importable, one thread for every library (each
    thread's stack and malloc arena would count against its memory cap)."""
    root = str(Path(__file__).resolve().parent.parent)
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "HOME", "PYTHONPATH")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MALLOC_ARENA_MAX="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def _exchange(child: subprocess.Popen, data: bytes, most_bytes: int,
              wall_s: float) -> tuple[bytearray, bytes, bool, bool]:
    """Feed `data` to the child while reading its stdout (at most `most_bytes`) and the tail of
    its stderr, until it closes both or `wall_s` passes. Returns (out, err, overflow, timed_out)."""
    import time

    assert child.stdin and child.stdout and child.stderr
    feeder = threading.Thread(target=_feed, args=(child.stdin, data), daemon=True)
    feeder.start()
    out, err = bytearray(), bytearray()
    deadline = time.monotonic() + wall_s
    with selectors.DefaultSelector() as sel:
        sel.register(child.stdout, selectors.EVENT_READ, out)
        sel.register(child.stderr, selectors.EVENT_READ, err)
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                return out, bytes(err), False, True
            for key, _ in sel.select(timeout=left):
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                key.data.extend(chunk)
                if key.data is out and len(out) > most_bytes:
                    return out, bytes(err), True, False
                if key.data is err and len(err) > _STDERR_KEPT:
                    del err[:-_STDERR_KEPT]
    try:  # both pipes closed: it is exiting (or holds on, and is stopped like any slow child)
        child.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return out, bytes(err), False, True
    return out, bytes(err), False, False


def _feed(pipe: BinaryIO, data: bytes) -> None:
    """Writes the file to the child; a child that stopped reading (refused early, or was
    stopped) is no error here: its exit says why."""
    with contextlib.suppress(OSError):
        pipe.write(data)
    with contextlib.suppress(OSError):
        pipe.close()


def _child_failure(returncode: int, err: bytes, max_seconds: float) -> RecordingError:
    if returncode < 0:
        sig = -returncode
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        why = "time" if sig in (signal.SIGXCPU, signal.SIGKILL) else "damaged"
        return _refusal(why, f"the reader stopped ({name})")
    report = _last_report(err)
    if report is None:  # it stopped without saying why: its last words are the detail
        last = err.decode("utf-8", "replace").strip().splitlines()
        return _refusal("damaged", last[-1] if last else f"exit {returncode}")
    why = str(report.get("why", ""))
    if why == "too_long":
        seconds = report.get("seconds")
        known = isinstance(seconds, int | float) and math.isfinite(seconds)
        return _too_long(float(seconds) if known else None, max_seconds)
    if why == "empty":
        return RecordingError(empty_recording())
    return _refusal(why if why in _WHY else "damaged", str(report.get("detail", "")))


def _last_report(err: bytes) -> dict[str, Any] | None:
    for line in reversed(err.decode("utf-8", "replace").splitlines()):
        if line.startswith("{"):
            try:
                found = json.loads(line)
            except ValueError:
                return None
            return found if isinstance(found, dict) else None
    return None


# -- the child ----------------------------------------------------------------------------------

class _Refused(Exception):
    def __init__(self, why: str, detail: str = "", **extra: Any):
        super().__init__(why, detail)
        self.report = {"why": why, "detail": detail, **extra}


def _cap_self(memory_bytes: int, cpu_s: int) -> None:
    """Caps this process before it reads the file: memory and CPU beyond what it uses now."""
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    used_cpu = resource.getrusage(resource.RUSAGE_SELF)
    spent = int(used_cpu.ru_utime + used_cpu.ru_stime)
    resource.setrlimit(resource.RLIMIT_CPU, (spent + cpu_s, spent + cpu_s + 1))  # SIGXCPU, then SIGKILL
    page = os.sysconf("SC_PAGE_SIZE")
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * page
    resource.setrlimit(resource.RLIMIT_AS, (mapped + memory_bytes, mapped + memory_bytes))


def _decode(data: bytes, target_rate: int, max_seconds: float, out: BinaryIO) -> None:
    """Decodes `data` to `out` as mono float32 at `target_rate`; raises _Refused."""
    import io

    import av
    import av.logging
    import numpy as np
    import soxr

    av.logging.set_level(av.logging.ERROR)  # so an error carries FFmpeg's reason (exc.log)
    options = {"format_whitelist": ",".join(CONTAINERS), "codec_whitelist": ",".join(CODECS),
               "protocol_whitelist": NO_PROTOCOL}
    try:
        container = av.open(io.BytesIO(data), mode="r", container_options=options)
    except av.error.FFmpegError as exc:
        raise _Refused(_why_ffmpeg_failed(exc), _ffmpeg_detail(exc)) from exc
    with container:
        names = set(container.format.name.split(","))
        if not names & set(CONTAINERS):  # FFmpeg checked this too; said twice, on purpose
            raise _Refused("kind", f"container {container.format.name}")
        if not container.streams.audio:
            raise _Refused("video_only" if container.streams.video else "damaged", "no audio stream")
        stream = container.streams.audio[0]
        codec = stream.codec_context.name
        if codec not in CODECS:
            raise _Refused("kind", f"audio codec {codec}")
        rate, channels = int(stream.codec_context.sample_rate or 0), int(stream.codec_context.channels or 0)
        if not MIN_RATE <= rate <= MAX_RATE or not 1 <= channels <= MAX_CHANNELS:
            raise _Refused("format", f"{rate} Hz, {channels} channels")
        declared = _declared_seconds(container, stream)
        if declared is not None and declared > max_seconds:
            raise _Refused("too_long", f"{declared:.0f} s", seconds=declared)
        stream.codec_context.thread_count = 1
        to_float = av.AudioResampler(format="fltp")
        resampler = soxr.ResampleStream(rate, target_rate, 1, dtype="float32", quality="HQ") \
            if rate != target_rate else None
        decoded = 0  # source samples
        limit = math.ceil(max_seconds * rate)
        try:
            for frame in container.decode(stream):
                if frame.sample_rate != rate:
                    raise _Refused("format", f"the rate changes from {rate} to {frame.sample_rate} Hz")
                for flt in to_float.resample(frame):
                    block = flt.to_ndarray()
                    decoded += block.shape[1]
                    if decoded > limit:
                        raise _Refused("too_long", "runs on", seconds=None)
                    if not np.all(np.isfinite(block)):
                        raise _Refused("damaged", "samples that are not numbers")
                    mono = block.mean(axis=0, dtype=np.float32)
                    out.write((resampler.resample_chunk(mono) if resampler else mono).astype("<f4").tobytes())
        except av.error.FFmpegError as exc:
            raise _Refused(_why_ffmpeg_failed(exc), _ffmpeg_detail(exc)) from exc
        if decoded == 0:
            raise _Refused("empty")
        if resampler is not None:
            out.write(resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True).astype("<f4").tobytes())


def _why_ffmpeg_failed(exc: Exception) -> str:
    """FFmpeg's error as one of the child's reasons: out of memory, a container or codec off the
    whitelist (FFmpeg says "EINVAL" and logs why), or a damaged file."""
    if isinstance(exc, MemoryError):
        return "memory"
    if getattr(exc, "errno", None) == errno.EINVAL:
        return "kind"
    return "damaged"


def _ffmpeg_detail(exc: Exception) -> str:
    """FFmpeg's own words: its last log line when the error carries one ("avi: Format not on
    whitelist ..."), else the error."""
    log = getattr(exc, "log", None)
    if log and len(log) == 3 and log[2]:
        return f"{log[1]}: {log[2]}" if log[1] else str(log[2])
    return str(exc)


def _declared_seconds(container: Any, stream: Any) -> float | None:
    """The length the container says, before anything is decoded (None: it does not say)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def main(argv: list[str] | None = None) -> int:
    """The child: caps itself, reads the file from stdin, writes samples to stdout."""
    parser = argparse.ArgumentParser(prog="python -m audio.phone_decode")
    parser.add_argument("--rate", type=int, required=True)
    parser.add_argument("--max-seconds", type=float, required=True)
    parser.add_argument("--memory-bytes", type=int, default=DEFAULT_LIMITS.memory_bytes)
    parser.add_argument("--cpu-s", type=int, default=DEFAULT_LIMITS.cpu_s)
    args = parser.parse_args(argv)
    report: dict[str, Any]
    try:
        try:  # load the reader before the caps: they are for the file, not for Python and FFmpeg
            import av  # noqa: F401
            import numpy  # noqa: F401
            import soxr  # noqa: F401
        except ImportError as exc:
            raise _Refused("no_reader", str(exc)) from exc
        _cap_self(args.memory_bytes, args.cpu_s)
        data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
        if len(data) > MAX_INPUT_BYTES:
            raise _Refused("memory", f"more than {MAX_INPUT_BYTES} bytes")
        _decode(data, args.rate, args.max_seconds, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return 0
    except _Refused as refused:
        report = refused.report
    except MemoryError as exc:
        report = {"why": "memory", "detail": f"{type(exc).__name__}: {exc}"}
    except Exception as exc:  # anything else FFmpeg or numpy raise on a strange file
        report = {"why": "damaged", "detail": f"{type(exc).__name__}: {exc}"}
    sys.stderr.write("\n" + json.dumps(report) + "\n")
    sys.stderr.flush()
    return 3


if __name__ == "__main__":
    sys.exit(main())
