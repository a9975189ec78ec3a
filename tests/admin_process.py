"""The real `circlebox admin` (waitress) as a child process, and a small browser for it.

Shared by tests/test_admin_limits.py and bench/bench_admin_limits.py, which attack it over
loopback the way the security review did.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from local_admin.security import PasswordStore

PASSWORD = "blue river morning tea"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
ROOT = Path(__file__).resolve().parent.parent


class AdminProcess:
    """`circlebox admin` on a free loopback port with its own data folder and TMPDIR."""

    def __init__(self, data: Path, tmp: Path, *, password: bool = True, argv: list[str] | None = None):
        self.data, self.tmp = data, tmp
        tmp.mkdir(parents=True, exist_ok=True)
        if password:
            data.mkdir(parents=True, exist_ok=True)
            PasswordStore(data).set_password(PASSWORD)
        command = argv or [sys.executable, "-m", "device.cli", "--data", str(data), "admin"]
        env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        line = self.proc.stdout.readline()
        match = re.search(r"http://localhost:(\d+)/", line)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"circlebox admin did not start: {line}{self.proc.stderr.read()}")
        self.port = int(match[1])
        self.base = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> AdminProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def tmp_bytes(self) -> int:
        """Bytes in files under TMPDIR that the process holds open (deleted ones included)."""
        total = 0
        fd_dir = Path(f"/proc/{self.proc.pid}/fd")
        for fd in fd_dir.iterdir():
            try:
                target = os.readlink(fd)
                if target.startswith(str(self.tmp)):
                    total += os.stat(fd).st_size
            except OSError:
                continue
        for path in self.tmp.rglob("*"):  # named files too (werkzeug's spooled forms)
            try:
                total += path.stat().st_size if path.is_file() else 0
            except OSError:
                continue
        return total

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=30)

    def browser(self, timeout: float = 30.0) -> Browser:
        return Browser(self.base, timeout)


class Browser:
    """Cookies, CSRF tokens and plain answers (errors are answers too)."""

    def __init__(self, base: str, timeout: float):
        self.base, self.timeout = base, timeout
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect()
        )

    def request(self, path: str, data: bytes | None = None, headers: dict | None = None,
                method: str | None = None) -> tuple[int, str]:
        req = urllib.request.Request(self.base + path, data=data, headers=headers or {}, method=method)
        try:
            with self.opener.open(req, timeout=self.timeout) as response:
                return response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace")

    def token(self, path: str) -> str:
        status, page = self.request(path)
        match = CSRF.search(page)
        assert match, f"no CSRF token on {path} ({status})"
        return match[1]

    def post_form(self, path: str, fields: dict[str, str], token_from: str | None = None) -> tuple[int, str]:
        fields = {"csrf_token": self.token(token_from or path), **fields}
        return self.request(path, urllib.parse.urlencode(fields).encode())

    def login(self, password: str = PASSWORD) -> int:
        return self.post_form("/login", {"password": password})[0]

    def post_json(self, path: str, body: object, token: str) -> tuple[int, dict]:
        status, text = self.request(
            path,
            json.dumps(body).encode(),
            {"Content-Type": "application/json", "X-CSRFToken": token, "Accept": "application/json"},
        )
        return status, json.loads(text)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a 302 is an answer to look at, not to follow
        return None


def half_sent(admin: AdminProcess, count: int, head: bytes) -> list[socket.socket]:
    """`count` connections that each sent `head` (an unfinished request) and then wait."""
    held = []
    for _ in range(count):
        sock = admin.connect()
        sock.sendall(head)
        held.append(sock)
    return held


def status_of(sock: socket.socket) -> int | None:
    """The status code the server answered on this connection (None: closed, no answer)."""
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    match = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return int(match[1]) if match else None
