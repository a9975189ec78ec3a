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

from device.fsutil import atomic_write_bytes


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


def _sha256(path: Path, drop_cache: bool = False) -> str:
    with open(path, "rb") as handle:
        if drop_cache and hasattr(os, "posix_fadvise"):
            # Read the medium, not the page cache we just wrote through.
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        return hashlib.sha256(handle.read()).hexdigest()


def copy_verified(src: Path, dest: Path) -> None:
    """Copy with fsync, then read the copy back and compare hashes; OSError if they differ."""
    data = src.read_bytes()
    atomic_write_bytes(dest, data)
    if _sha256(dest, drop_cache=True) != hashlib.sha256(data).hexdigest():
        raise OSError(f"{dest}: the copy read back from the stick differs")


def stick_dir(stick: Path, box_id: str) -> Path:
    return Path(stick) / "circlebox" / box_id


def export_usage(usage: UsageExporter, dest: Path, work_dir: Path) -> ExportOutcome:
    """Export unexported sessions to dest; mark them exported only if every copy checks out."""
    outcome = ExportOutcome()
    tmp = Path(work_dir) / "export"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        files, ids = usage.export_since_last(tmp)
        for path in files:
            copy_verified(path, dest / path.name)
            outcome.files.append(path.name)
        usage.mark_exported(ids)
        outcome.sessions, outcome.verified = len(ids), True
    except OSError as exc:
        outcome.error = str(exc)[:300]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return outcome


def write_report(dest: Path, report: Mapping[str, Any], now: datetime | None = None) -> Path:
    """report-<UTC time>-<n>.json, never overwriting an earlier one (the box clock may be wrong)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    n = 1
    while (path := dest / f"report-{stamp}-{n:03d}.json").exists():
        n += 1
    body = (json.dumps(report, indent=1, sort_keys=True) + "\n").encode("utf-8")
    atomic_write_bytes(path, body)
    if _sha256(path, drop_cache=True) != hashlib.sha256(body).hexdigest():
        raise OSError(f"{path}: the report read back from the stick differs")
    return path
