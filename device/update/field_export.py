"""Field data onto the stick: the per-insert report and the usage export, each copy read back
from the stick and checked before anything is marked exported (a cheap stick can lie).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from device.update.safefs import (
    check_box_id,
    dir_fd,
    exists_at,
    open_dir,
    open_dir_at,
    read_small_at,
    write_file_at,
)

STICK_FOLDER = "circlebox"
MAX_EXPORT_FILE = 64 * 1024 * 1024  # a usage export is a few KB a month


class UsageExporter(Protocol):
    """What the updater needs from the usage store (device/usage.py via StoreExporter)."""

    def export_since_last(self, dest_dir: Path) -> tuple[list[Path], list[str]]: ...

    def mark_exported(self, ids: Sequence[str]) -> object: ...


class StoreExporter:
    """Adapts device.usage (store + DHIS2 codes + box id) to UsageExporter.

    Given a path, the store is opened only when the export runs, only if it exists, and with
    umask 002: the updater runs as root, and SQLite files (or -wal/-shm) it created 0644 would
    lock the runtime (group circlebox, via the setgid data dir) out of its own usage data.
    """

    def __init__(self, store: Any, dhis2_section: Mapping[str, Any], box_id: str):
        self._store, self.dhis2_section, self.box_id = store, dhis2_section, box_id

    def _open(self) -> Any | None:
        if not isinstance(self._store, (str, Path)):
            return self._store
        if not Path(self._store).exists():
            return None
        from device.usage import UsageStore

        old = os.umask(0o002)
        try:
            self._store = UsageStore(Path(self._store))
        finally:
            os.umask(old)
        return self._store

    def export_since_last(self, dest_dir: Path) -> tuple[list[Path], list[str]]:
        from device.usage import export_since_last

        store = self._open()
        if store is None:
            return [], []
        old = os.umask(0o002)
        try:
            return export_since_last(store, dest_dir, self.dhis2_section, self.box_id)
        finally:
            os.umask(old)

    def mark_exported(self, ids: Sequence[str]) -> object:
        store = self._open()
        if store is None or not ids:
            return 0
        old = os.umask(0o002)
        try:
            return store.mark_exported(ids)
        finally:
            os.umask(old)


@dataclass
class ExportOutcome:
    files: list[str] = field(default_factory=list)
    sessions: int = 0
    verified: bool = False
    error: str = ""


def _sha256_at(parent_fd: int, name: str, limit: int) -> str:
    """Hash of a file on the stick as the stick returns it (not the page cache we wrote)."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
    try:
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        digest, left = hashlib.sha256(), limit + 1
        while left and (block := os.read(fd, min(1 << 20, left))):
            digest.update(block)
            left -= len(block)
        return digest.hexdigest()
    finally:
        os.close(fd)


def write_verified(parent_fd: int, name: str, data: bytes) -> None:
    """Write `name` in the stick folder `parent_fd` (never through a symlink), read it back
    from the stick and compare; OSError if the stick returned something else."""
    write_file_at(parent_fd, name, data)
    if _sha256_at(parent_fd, name, len(data)) != hashlib.sha256(data).hexdigest():
        raise OSError(f"{name}: the copy read back from the stick differs")


def stick_dir(stick: Path, box_id: str) -> Path:
    """Where this box's files go on a stick (for messages; writes go through open_stick_dir)."""
    return Path(stick) / STICK_FOLDER / check_box_id(box_id)


def open_stick_dir(stick: Path, box_id: str) -> int:
    """A directory fd for <stick>/circlebox/<box id>, made if missing. Each step is opened
    with O_NOFOLLOW from the one above, starting at the stick's mount point: a `circlebox`
    folder that is a symlink (or a box name with '/' or '..') can never lead root off the stick."""
    check_box_id(box_id)
    top = open_dir(Path(stick))
    try:
        folder = open_dir_at(top, STICK_FOLDER, create=True)
    finally:
        os.close(top)
    try:
        return open_dir_at(folder, box_id, create=True)
    finally:
        os.close(folder)


def export_usage(usage: UsageExporter, dest_fd: int, work_dir: Path) -> ExportOutcome:
    """Export unexported sessions into the stick folder `dest_fd`; mark them exported only if
    every copy reads back right. `work_dir` is root's own (the export is made there first)."""
    outcome = ExportOutcome()
    tmp = Path(work_dir) / "export"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        files, ids = usage.export_since_last(tmp)
        with dir_fd(tmp) as tmp_fd:
            for path in files:
                data = read_small_at(tmp_fd, Path(path).name, MAX_EXPORT_FILE)
                write_verified(dest_fd, Path(path).name, data)
                outcome.files.append(Path(path).name)
        usage.mark_exported(ids)
        outcome.sessions, outcome.verified = len(ids), True
    except OSError as exc:
        outcome.error = str(exc)[:300]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return outcome


def write_report(dest_fd: int, report: Mapping[str, Any], now: datetime | None = None) -> str:
    """report-<UTC time>-<n>.json, never overwriting an earlier one (the box clock may be wrong)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    n = 1
    while exists_at(dest_fd, name := f"report-{stamp}-{n:03d}.json"):
        n += 1
    body = (json.dumps(report, indent=1, sort_keys=True) + "\n").encode("utf-8")
    write_verified(dest_fd, name, body)
    return name
