"""Atomic file writes: temp file in the same directory, fsync, rename, fsync the directory.

A power cut at any moment leaves either the old file or the new one, never half of either.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import tempfile
import time
from pathlib import Path

# A temp file this old next to the file being written is left over from a write a power cut
# interrupted (a live write touches its temp file continuously, and takes well under a second).
STALE_TMP_S = 600.0


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    remove_stale_temps(path)


def remove_stale_temps(path: Path, older_than_s: float = STALE_TMP_S) -> int:
    """Delete temp files that interrupted writes of `path` left behind; returns how many."""
    cutoff = time.time() - older_than_s
    removed = 0
    for stale in Path(path).parent.glob(f".{glob.escape(Path(path).name)}.*.tmp"):
        with contextlib.suppress(OSError):
            if stale.stat().st_mtime < cutoff:
                stale.unlink()
                removed += 1
    return removed


def atomic_write_text(path: Path, text: str, mode: int = 0o644) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode)


def sha256_file(path: Path) -> str:
    """sha256 of a file, read in 1 MiB blocks (voices and bundles are too big to read whole)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
