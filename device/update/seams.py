"""The box's real seams: circle lock, free space, systemd restart and health.

Tests pass fakes for all of these (see Seams in installer.py); these are what the Pi uses.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import subprocess
from pathlib import Path

RUNTIME_UNIT = "circlebox.service"
ADMIN_UNIT = "circlebox-admin.service"  # restarted too, not health-gated


def circle_running_from_lock(lock_path: Path):
    """A circle_running() that asks the runtime's lock: the runtime holds flock on it while a
    circle runs, so a lock we cannot take means a circle is on. No file: no circle."""

    def circle_running() -> bool:
        try:
            fd = os.open(lock_path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return True
            raise
        finally:
            os.close(fd)
        return False

    return circle_running


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem holding path (or its nearest existing parent)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


class SystemdService:
    """restart(kind) and health() for one unit. Healthy means: a new invocation (not the one
    running before our restart, which may still be up for a moment), active and running
    (Type=notify: READY=1 sent), and still that same invocation with the same NRestarts at
    every later poll: if systemd restarts it, the invocation changes and it is a failure.
    (A manual restart resets NRestarts, so the baseline is taken from the new invocation.)"""

    def __init__(self, unit: str = RUNTIME_UNIT):
        self.unit = unit
        self._old_invocation = ""
        self._seen: tuple[str, str] | None = None  # (InvocationID, NRestarts) when first ready

    def _show(self) -> dict[str, str]:
        out = subprocess.run(
            [
                "systemctl",
                "show",
                self.unit,
                "-p",
                "ActiveState",
                "-p",
                "SubState",
                "-p",
                "NRestarts",
                "-p",
                "InvocationID",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def restart(self, kind: str) -> None:
        """Restart now. reset-failed first: a crash-looping release may have used up the unit's
        start limit, and the rollback's restart must not be refused for it."""
        subprocess.run(["systemctl", "reset-failed", self.unit], timeout=30, check=False)
        self._old_invocation = self._show().get("InvocationID", "")
        self._seen = None
        subprocess.run(["systemctl", "restart", "--no-block", self.unit], timeout=30, check=True)
        if kind in ("app", "config"):  # the admin page runs the same code and config
            subprocess.run(["systemctl", "try-restart", "--no-block", ADMIN_UNIT], timeout=30, check=False)

    def health(self) -> bool:
        props = self._show()
        invocation = props.get("InvocationID", "")
        if props.get("ActiveState") != "active" or props.get("SubState") != "running":
            return False
        if invocation == self._old_invocation:
            return False  # the restart job has not run yet
        now = (invocation, props.get("NRestarts", ""))
        if self._seen is None:
            self._seen = now
        return now == self._seen


class UpdateLock:
    """One updater at a time (two sticks, or a stick and an upload): flock on a file in root."""

    def __init__(self, root: Path):
        self.path = Path(root) / "update" / "lock"
        self._fd: int | None = None

    def __enter__(self) -> UpdateLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
