"""The local control channel between the admin page and the running box.

A Unix socket speaking JSON lines, one JSON reply per request:

    {"cmd": "status"}                          -> {"ok": true, "status": {...}}
    {"cmd": "dispatch", "action": "next"}      -> {"ok": true, "action": "next"}
    {"cmd": "announce", "sounds": [...]}       -> {"ok": true}
    {"cmd": "reload"}                          -> {"ok": true, "when": "now" | "after_circle"}
    {"cmd": "set_clock", "time": 1.8e9}        -> {"ok": true, "time": iso, "trusted": bool}
    {"cmd": "course_session", "index": 3}      -> {"ok": true, "position": 3, "label": "Session 4 of 16"}
                                                  (between circles only; the course's plan index)

A refused request is {"ok": false, "error": "<plain words>"}. Separate processes, so a slow
page never stops a running circle; the socket lives in the data directory and is only reachable on the box itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

MAX_REQUEST = 4096
MAX_ANNOUNCE = 40


Handler = Callable[[dict[str, Any]], dict[str, Any]]


def socket_path(data_dir: Path) -> Path:
    """The runtime's control socket (`DataFolder.control_socket`)."""
    from device.datafolder import DataFolder

    return DataFolder(data_dir).control_socket


class ControlServer:
    """Serves status snapshots and dispatches actions; runs on its own threads."""

    def __init__(self, path: Path, status: Callable[[], dict[str, Any]],
                 dispatch: Callable[[str, str], None],
                 announce: Callable[[tuple[str, ...], bool], None] | None = None,
                 handlers: Mapping[str, Handler] | None = None) -> None:
        """`handlers`: more commands by name (the runtime's reload and set_clock), each given
        the request and returning the reply."""
        self.path = Path(path)
        self.status = status
        self.dispatch = dispatch
        self.announce = announce
        self.handlers = dict(handlers or {})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for raw in iter(lambda: self.rfile.readline(MAX_REQUEST), b""):
                    reply = outer.answer(raw)
                    self.wfile.write(json.dumps(reply).encode("utf-8") + b"\n")

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self._server = Server(str(self.path), Handler)
        os.chmod(self.path, 0o660)  # the admin service's user is in the box's group
        self._thread = threading.Thread(target=self._server.serve_forever, name="control", daemon=True)

    def start(self) -> ControlServer:
        self._thread.start()
        return self

    def answer(self, raw: bytes) -> dict[str, Any]:
        from device.actions import UnknownAction, parse_action

        try:
            request = json.loads(raw)
            cmd = request["cmd"]
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "error": "expected a JSON object with cmd"}
        if cmd == "status":
            return {"ok": True, "status": self.status()}
        if cmd == "dispatch":
            try:
                action = parse_action(str(request.get("action", ""))).text
            except UnknownAction as exc:
                return {"ok": False, "error": str(exc)}
            self.dispatch(action, str(request.get("source", "admin"))[:40])
            return {"ok": True, "action": action}
        if cmd == "announce" and self.announce is not None:
            sounds = request.get("sounds")
            if (not isinstance(sounds, list) or not 0 < len(sounds) <= MAX_ANNOUNCE
                    or not all(isinstance(x, str) and 0 < len(x) <= 64 for x in sounds)):
                return {"ok": False, "error": f"sounds must be a list of 1 to {MAX_ANNOUNCE} prompt ids"}
            self.announce(tuple(sounds), bool(request.get("urgent", False)))
            return {"ok": True}
        handler = self.handlers.get(cmd) if isinstance(cmd, str) else None
        if handler is not None:
            return handler(request)
        return {"ok": False, "error": f"unknown cmd '{cmd}'"}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class BoxNotRunning(ConnectionError):
    """The device runtime is not running (or not reachable)."""


class ControlClient:
    def __init__(self, path: Path, timeout: float = 2.0) -> None:
        self.path = Path(path)
        self.timeout = timeout

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(str(self.path))
                sock.sendall(json.dumps(request).encode("utf-8") + b"\n")
                data = b""
                while not data.endswith(b"\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        except OSError as exc:
            raise BoxNotRunning(f"the box is not running ({exc.strerror or exc})") from exc
        return json.loads(data)

    def status(self) -> dict[str, Any]:
        reply = self._ask({"cmd": "status"})
        return reply["status"]

    def dispatch(self, action: str, source: str = "admin") -> dict[str, Any]:
        return self._ask({"cmd": "dispatch", "action": action, "source": source})

    def announce(self, sounds: list[str], urgent: bool = False) -> dict[str, Any]:
        """Ask the box to say these pre-rendered prompts (urgent: even during a circle)."""
        return self._ask({"cmd": "announce", "sounds": sounds, "urgent": urgent})

    def reload(self) -> dict[str, Any]:
        """Tell the box its settings or circle changed: {"ok": true, "when": "now" | "after_circle"}
        (after_circle: a circle is running and the change waits for it to end)."""
        return self._ask({"cmd": "reload"})

    def set_clock(self, epoch: float) -> dict[str, Any]:
        """Set the box's clock to this unix time (a phone's): {"ok": true, "time": iso, "trusted": bool}."""
        return self._ask({"cmd": "set_clock", "time": epoch})

    def course_session(self, index: int) -> dict[str, Any]:
        """Choose the meeting of the course the box plays next (its plan index; between circles
        only): {"ok": true, "position": n, "label": ...} or {"ok": false, "error": ...}."""
        return self._ask({"cmd": "course_session", "index": index})
