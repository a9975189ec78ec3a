"""The real box service as a child process, for the harnesses that must treat it as the Pi does
(SIGKILL it, soak it for hours): its environment, its stderr journal read on a thread, the
moment its control socket answers, and what /proc says about it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PYTHON = Path(sys.executable)
FINISHED = re.compile(r"session_finished completed=(True|False)")


def prepare_data(data: Path, rendered: Path) -> Path:
    """A data dir with the rendered default circle (as tests/conftest.py `box_data`)."""
    from device.script import packaged_scripts_dir

    shutil.copytree(rendered / "cache", data / "cache")
    (data / "scripts").mkdir(parents=True)
    shutil.copy(packaged_scripts_dir() / "three-step-circle.yaml", data / "scripts")
    return data


def box_env(data: Path, **extra: str) -> dict[str, str]:
    """The service's environment off the Pi: this data dir, mock pins, SDL's disk audio driver."""
    env = {**os.environ, "CIRCLEBOX_PATHS__DATA_DIR": str(data), "CIRCLEBOX_BUTTONS__PIN_FACTORY": "mock",
           "SDL_AUDIODRIVER": "disk", "SDL_DISKAUDIOFILE": "/dev/null", "PYGAME_HIDE_SUPPORT_PROMPT": "1", **extra}
    env.pop("NOTIFY_SOCKET", None)  # not systemd: no READY/WATCHDOG datagrams
    env.pop("WATCHDOG_USEC", None)
    return env


class RuntimeProcess:
    """`circlebox run` as a child, its stderr read line by line on a thread."""

    def __init__(self, data: Path, log_dir: Path, n: int, **env: str) -> None:
        self.finished: list[bool] = []  # completed flag of each session_finished line, in order
        self.lines: list[str] = []
        self.log = log_dir / f"run-{n:04d}.log"
        self.proc = subprocess.Popen([str(PYTHON), "-m", "device.cli", "run"], cwd=ROOT,
                                     env=box_env(data, PYTHONUNBUFFERED="1", **env),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            m = FINISHED.search(line)
            if m:
                self.finished.append(m.group(1) == "True")

    def finished_so_far(self) -> list[bool]:
        return list(self.finished)

    def count(self, text: str) -> int:
        """Journal lines so far that contain `text`."""
        return sum(text in line for line in list(self.lines))

    def kill(self) -> list[bool]:
        """SIGKILL; returns the session_finished lines read *before* the kill."""
        seen = self.finished_so_far()
        self.proc.send_signal(9)
        self.proc.wait(timeout=30)
        self._reader.join(timeout=10)
        return seen

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, as systemd stops it; returns the exit code."""
        self.proc.terminate()
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def save_log(self) -> None:
        self.log.write_text("".join(self.lines), encoding="utf-8")


def wait_ready(sock: Path, proc: subprocess.Popen, timeout: float = 60.0) -> dict | None:
    """The status once the control socket answers and start-up is over; None if it never does."""
    from device.control import BoxNotRunning, ControlClient

    client = ControlClient(sock, timeout=2.0)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return None
        with contextlib.suppress(BoxNotRunning, ValueError):
            status = client.status()
            # the socket answers a moment before start-up ends: "starting" is honest, not yet ready
            if status.get("state") != "starting":
                return status
        time.sleep(0.05)
    return None


def proc_sample(pid: int) -> dict[str, float]:
    """Resident memory (MiB), open files and threads of a process, from /proc."""
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    return {"rss_mb": rss, "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "threads": len(os.listdir(f"/proc/{pid}/task"))}


def check_files(data: Path) -> list[str]:
    """Every file the box reads parses: nothing half-written anywhere in the data dir."""
    problems = []
    for path in sorted(data.rglob("*")):
        if not path.is_file() or path.name.endswith(".tmp"):
            continue
        name = path.name
        try:
            if name.endswith(".json"):
                json.loads(path.read_text(encoding="utf-8"))
            elif name.endswith((".yaml", ".yml")):
                yaml.safe_load(path.read_text(encoding="utf-8"))
            elif name.endswith(".wav"):
                with wave.open(str(path)) as w:
                    if w.getnframes() == 0:
                        problems.append(f"{path}: empty WAV")
            elif name.endswith((".db", ".sqlite")):
                db = sqlite3.connect(path)
                try:
                    ok = db.execute("PRAGMA integrity_check").fetchone()[0]
                finally:
                    db.close()
                if ok != "ok":
                    problems.append(f"{path}: integrity_check says {ok}")
        except Exception as exc:
            problems.append(f"{path}: {type(exc).__name__}: {exc}")
    return problems
