"""The box as separate processes, as `make demo` and a real box run it: `circlebox run` and
`circlebox admin` sharing one data folder, the runtime's sound going to SDL's disk driver.

Each service is a child process whose output (stdout and stderr) is read on a thread, line by
line with the time it was read, into memory and a log file; a journey waits for a journal line
or for a sound with a deadline, never with a sleep. When a journey fails, its box's logs are
printed (tests/journeys/conftest.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench.service import PYTHON, ROOT, box_env
from journeys.heard import AudioOut

PASSWORD = "blue river morning tea"
SAMPLE_RATE = 22050  # device/defaults.yaml audio.sample_rate: the mixer's rate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def plain_env(**extra: str) -> dict[str, str]:
    """This machine's environment without any CIRCLEBOX_ setting (as a technician's laptop)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIRCLEBOX_")}
    env.update(PYTHONUNBUFFERED="1", PYGAME_HIDE_SUPPORT_PROMPT="1", **extra)
    return env


def circlebox(*argv: str, data: Path | None = None, timeout: float = 300.0,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """One `circlebox` command, as a person types it (with `--data` when given)."""
    cmd = [str(PYTHON), "-m", "device.cli", *(["--data", str(data)] if data else []), *argv]
    return subprocess.run(cmd, cwd=ROOT, env=env or plain_env(), capture_output=True, text=True, timeout=timeout)


class Service:
    """A child process whose output is read on a thread into `lines` (with the time each line
    was read) and a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self.lines: list[tuple[float, str]] = []
        self._file = open(log, "w", encoding="utf-8")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self._reader = threading.Thread(target=self._read, name=f"{name}-log", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))
            self._file.write(line)
            self._file.flush()

    def running(self) -> bool:
        return self.proc.poll() is None

    def mark(self) -> int:
        """Lines so far: wait_line(since=mark) sees only what comes after this moment."""
        return len(self.lines)

    def wait_line(self, pattern: str, since: int = 0, timeout: float = 20.0) -> tuple[float, str] | None:
        """The first line at or after `since` that matches `pattern` (a regex), polled with a
        deadline; None if it never came (or the process ended)."""
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        seen = since
        while True:
            lines = self.lines
            for t, line in lines[seen:]:
                if rx.search(line):
                    return t, line
            seen = len(lines)
            if time.monotonic() > end or (not self.running() and seen == len(self.lines)):
                return None
            time.sleep(0.05)

    def text(self, since: int = 0) -> str:
        return "\n".join(line for _, line in self.lines[since:])

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (as systemd stops it), SIGKILL if it does not end in time."""
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        self._file.close()
        return self.proc.returncode


@dataclass
class Box:
    """One box: its data folder, the runtime and the admin page as separate processes."""

    data: Path
    work: Path
    audio: AudioOut = field(init=False)
    runtime: Service | None = None
    admin: Service | None = None
    admin_url: str = ""

    def __post_init__(self) -> None:
        self.audio = AudioOut(self.work / "box-output.raw", SAMPLE_RATE)

    # -- the runtime ----------------------------------------------------------------------------

    def start_runtime(self, timeout: float = 60.0, microphone: Path | None = None) -> dict:
        """`circlebox run` with mock pins, its sound to the disk driver; the status once ready.
        `microphone`: a bin dir whose `arecord` is the room (bench.soak_service.install_microphone)."""
        from bench.service import wait_ready
        from device.datafolder import DataFolder

        env = box_env(self.data, PYTHONUNBUFFERED="1", SDL_DISKAUDIOFILE=str(self.audio.path))
        if microphone is not None:
            env["PATH"] = f"{microphone}{os.pathsep}{env.get('PATH', '')}"
        self.runtime = Service("runtime", [str(PYTHON), "-m", "device.cli", "run"], env, self.work / "runtime.log")
        status = wait_ready(DataFolder(self.data).control_socket, self.runtime.proc, timeout=timeout)
        if status is None:
            code = self.runtime.proc.poll()
            why = f"ended with exit code {code}" if code is not None else f"was not ready in {timeout:.0f} s"
            raise AssertionError(f"`circlebox run` {why}:\n{self.runtime.text()}")
        return status

    def status(self) -> dict:
        from device.control import ControlClient
        from device.datafolder import DataFolder

        return ControlClient(DataFolder(self.data).control_socket, timeout=5.0).status()

    def press(self, action: str, source: str = "button") -> None:
        """A named action into the runtime over its control socket: what a button (its map),
        the panel and a spoken command all end in."""
        from device.control import ControlClient
        from device.datafolder import DataFolder

        ControlClient(DataFolder(self.data).control_socket, timeout=5.0).dispatch(action, source=source)

    # -- the admin page -------------------------------------------------------------------------

    def start_admin(self, timeout: float = 60.0) -> str:
        """`circlebox admin` on a free loopback port; its URL once the login page answers."""
        port = free_port()
        env = box_env(self.data, PYTHONUNBUFFERED="1")
        self.admin = Service("admin", [str(PYTHON), "-m", "device.cli", "admin", "--host", "127.0.0.1",
                                       "--port", str(port)], env, self.work / "admin.log")
        self.admin_url = f"http://127.0.0.1:{port}"
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.admin.running():
            with contextlib.suppress(OSError, urllib.error.URLError), \
                    urllib.request.urlopen(self.admin_url + "/login", timeout=2) as r:
                if r.status == 200:
                    return self.admin_url
            time.sleep(0.1)
        raise AssertionError(f"`circlebox admin` did not serve pages in {timeout:.0f} s:\n{self.admin.text()}")

    # -- the end --------------------------------------------------------------------------------

    def stop(self) -> None:
        for service in (self.admin, self.runtime):
            if service is not None:
                service.stop()

    def logs(self) -> str:
        """Both journals, for a failure report."""
        parts = []
        for service in (self.runtime, self.admin):
            if service is not None:
                parts.append(f"----- {service.name} (exit {service.proc.poll()}, {service.log}) -----\n"
                             + "\n".join(line for _, line in service.lines[-200:]))
        return "\n".join(parts)


def new_data_folder(path: Path, rendered: Path) -> Path:
    """A data folder as the image leaves it: the packaged circles rendered into its cache (a copy
    of the session's one render), nothing else. The packaged circles themselves are found in
    the installed program, as on a box."""
    shutil.copytree(rendered / "cache", path / "cache")
    return path
