"""Work the root updater hands to a service's own user: the usage export.

The usage database is the runtime's, in the shared data folder. Root opening it would follow
whatever a service left there (a symlink `usage.sqlite` makes SQLite create its journal next to
the link's target, as root) and would leave root-owned journal files the runtime cannot delete.
So a forked child drops to the runtime's user (no supplementary groups but its own) and does
the database work with exactly that user's rights; only names and ids come back, as JSON
through a pipe, bounded in size. The export files it writes land in a folder root made for it
and are read back by root without following symlinks (field_export.export_usage).
"""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RUNTIME_USER = "circlebox"
MAX_REPLY = 4 * 1024 * 1024


def run_as(uid: int, gid: int, work: Callable[[], Any]) -> Any:
    """`work()` in a child running as uid/gid; its JSON-able result, or OSError with its error."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop for good, then work; never return into the caller's code
        code = 0
        try:
            os.close(read_end)
            os.setgroups([gid])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            reply = {"ok": work()}
        except BaseException as exc:  # reported to the parent, not lost
            reply, code = {"error": f"{type(exc).__name__}: {exc}"[:500]}, 1
        try:
            os.write(write_end, json.dumps(reply).encode()[:MAX_REPLY])
        finally:
            os._exit(code)
    os.close(write_end)
    chunks, size = [], 0
    with os.fdopen(read_end, "rb") as pipe:
        while size <= MAX_REPLY and (block := pipe.read(65536)):
            chunks.append(block)
            size += len(block)
    os.waitpid(pid, 0)
    try:
        reply = json.loads(b"".join(chunks))
    except ValueError:
        raise OSError("the usage export stopped without an answer") from None
    if "error" in reply:
        raise OSError(f"usage export (as uid {uid}): {reply['error']}")
    return reply["ok"]


def _run_as(uid: int, gid: int, work: Callable[[], Any]) -> Any:
    return run_as(uid, gid, work)  # looked up at call time: the CLI wiring test runs it inline


class RuntimeUserExporter:
    """UsageExporter for root: the runtime's user exports and marks; root only copies files.

    The DHIS2 codes come from the full configuration, read by that user (the admin layer is
    no more trusted than the user reading it)."""

    def __init__(self, data_dir: Path, box_id: str, user: str | None = None, ids: tuple[int, int] | None = None):
        self.data_dir, self.box_id = Path(data_dir), box_id
        if ids is None:
            entry = pwd.getpwnam(user or RUNTIME_USER)
            ids = (entry.pw_uid, entry.pw_gid)
        self.uid, self.gid = ids

    def _store(self):
        from device.usage import UsageStore, store_path

        path = store_path(self.data_dir)
        return UsageStore(path) if path.exists() else None

    def export_since_last(self, dest_dir: Path) -> tuple[list[Path], list[str]]:
        os.chown(dest_dir, self.uid, self.gid)  # root's fresh, empty folder, for the child to fill

        def work() -> dict[str, list[str]]:
            from device.config import load_config
            from device.usage import export_since_last

            store = self._store()
            if store is None:
                return {"files": [], "ids": []}
            config = load_config(overrides={"paths": {"data_dir": str(self.data_dir)}})
            files, ids = export_since_last(store, Path(dest_dir), config.dhis2, self.box_id)
            return {"files": [Path(f).name for f in files], "ids": list(ids)}

        reply = _run_as(self.uid, self.gid, work)
        return [Path(dest_dir) / name for name in reply["files"]], [str(i) for i in reply["ids"]]

    def mark_exported(self, ids: Sequence[str]) -> object:
        if not ids:
            return 0

        def work() -> int:
            store = self._store()
            return 0 if store is None else int(store.mark_exported(list(ids)))

        return _run_as(self.uid, self.gid, work)
