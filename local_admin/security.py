"""Access to the admin page: per-box secrets, the one password, rate limits, the Host check.

Per-box secrets live in `<data_dir>/secrets/` (made by first boot; created here, 0700 dir and
0600 files, when missing, e.g. on a laptop):

- `setup-code`: six digits, valid only while no password is set; consumed (deleted, and void in
  any case once a password exists) when the password is set.
- `admin-session-key`: 32 random bytes as hex; signs the session cookie.

The password lives in `<data_dir>/admin/password.json` (dir 0700, file 0600), a folder the admin
service owns (first boot keeps `secrets/` read-only for it): JSON `{"hash": <werkzeug scrypt
hash>, "generation": n, "set_at": ...}`. The generation goes up on logout and on password change;
a session cookie carries the generation it was issued under, so bumping it ends every other
session at once.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from werkzeug.security import check_password_hash, generate_password_hash

from device.fsutil import atomic_write_text

SETUP_CODE = "setup-code"
SESSION_KEY = "admin-session-key"
PASSWORD_FILE = ("admin", "password.json")
MIN_PASSWORD = 10
MAX_PASSWORD = 200


def secrets_dir(data_dir: Path) -> Path:
    path = Path(data_dir) / "secrets"
    if not path.is_dir():
        path.mkdir(parents=True, mode=0o700, exist_ok=True)
    return path


def _match_owner(path: Path, like: Path) -> None:
    """When root runs the console reset, give the new file to the admin service's user."""
    if os.geteuid() != 0 or not like.exists():
        return
    st = like.stat()
    with contextlib.suppress(OSError):
        os.chown(path, st.st_uid, st.st_gid)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None


def _valid_code(text: str | None) -> bool:
    return bool(text) and len(text) == 6 and text.isdigit()  # type: ignore[arg-type]


def new_setup_code() -> str:
    return f"{secrets.randbelow(10**6):06d}"


def ensure_session_key(data_dir: Path) -> bytes:
    """The cookie-signing key, created (atomically, 0600) if missing or malformed."""
    path = secrets_dir(data_dir) / SESSION_KEY
    text = _read(path)
    try:
        key = bytes.fromhex(text or "")
    except ValueError:
        key = b""
    if len(key) < 32:
        key = secrets.token_bytes(32)
        atomic_write_text(path, key.hex() + "\n", mode=0o600)
    return key


class PasswordStore:
    """The admin password, its session generation and the one-time setup code."""

    def __init__(self, data_dir: Path):
        self.dir = secrets_dir(data_dir)
        self.password_path = Path(data_dir).joinpath(*PASSWORD_FILE)
        self._lock = threading.Lock()

    def _write_record(self, record: dict) -> None:
        folder = self.password_path.parent
        if not folder.is_dir():
            folder.mkdir(parents=True, mode=0o700, exist_ok=True)
        atomic_write_text(self.password_path, json.dumps(record) + "\n", mode=0o600)

    # -- state -----------------------------------------------------------------------------

    def _record(self) -> dict | None:
        text = _read(self.password_path)
        if not text:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("hash"), str):
            return None
        return data

    def is_set(self) -> bool:
        return self._record() is not None

    def generation(self) -> int | None:
        record = self._record()
        return None if record is None else int(record.get("generation", 0))

    def setup_code(self) -> str | None:
        """The current setup code (created if missing); None once a password is set."""
        if self.is_set():
            return None
        with self._lock:
            path = self.dir / SETUP_CODE
            code = _read(path)
            if not _valid_code(code):
                code = new_setup_code()
                atomic_write_text(path, code + "\n", mode=0o600)
            return code

    # -- changes ---------------------------------------------------------------------------

    def check_setup_code(self, attempt: str) -> bool:
        code = self.setup_code()
        return code is not None and secrets.compare_digest(attempt.strip(), code)

    def check_password(self, attempt: str) -> bool:
        record = self._record()
        if record is None:
            return False
        return check_password_hash(record["hash"], attempt)

    def set_password(self, password: str) -> int:
        """Hash and store the password, bump the generation, consume the setup code."""
        with self._lock:
            old = self._record()
            generation = (int(old.get("generation", 0)) if old else 0) + 1
            record = {
                "hash": generate_password_hash(password, method="scrypt"),
                "generation": generation,
                "set_at": int(time.time()),
            }
            self._write_record(record)
            # Void in any case once a password exists; deleted where the folder allows it.
            with contextlib.suppress(FileNotFoundError, PermissionError):
                (self.dir / SETUP_CODE).unlink()
            return generation

    def bump_generation(self) -> int | None:
        """End every session (logout everywhere)."""
        with self._lock:
            record = self._record()
            if record is None:
                return None
            record["generation"] = int(record.get("generation", 0)) + 1
            self._write_record(record)
            return record["generation"]

    def reset(self) -> str:
        """Console reset: forget the password (ending all sessions) and make a new setup code."""
        with self._lock:
            with contextlib.suppress(FileNotFoundError):
                self.password_path.unlink()
            code = new_setup_code()
            path = self.dir / SETUP_CODE
            atomic_write_text(path, code + "\n", mode=0o600)
            _match_owner(path, self.dir / SESSION_KEY)
            return code


def password_problem(password: str, confirm: str) -> str | None:
    if len(password) < MIN_PASSWORD:
        return f"use at least {MIN_PASSWORD} characters (a few words together are easy to remember)"
    if len(password) > MAX_PASSWORD:
        return f"use at most {MAX_PASSWORD} characters"
    if password != confirm:
        return "the two passwords are not the same"
    return None


# -- rate limiting -----------------------------------------------------------------------------


@dataclass
class _Entry:
    failures: int = 0
    locked_until: float = 0.0
    last: float = 0.0


@dataclass
class RateLimiter:
    """Growing lockouts per client and purpose, in memory.

    The first `free` failures cost nothing; after that each failure locks the client out for
    `base_s * 2**(extra failures)`, capped at `max_s`. While locked out, attempts are refused
    without being checked. A success clears the client's record; records idle for a day go.
    """

    free: int = 3
    base_s: float = 2.0
    max_s: float = 900.0
    clock: Callable[[], float] = time.monotonic
    _entries: dict[tuple[str, str], _Entry] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def retry_after(self, purpose: str, client: str) -> int:
        """Seconds the client must wait before trying again (0: may try now)."""
        with self._lock:
            entry = self._entries.get((purpose, client))
            if entry is None:
                return 0
            wait = entry.locked_until - self.clock()
            return max(0, int(wait + 0.999))

    def failure(self, purpose: str, client: str) -> int:
        """Record a failed attempt; returns the lockout in seconds it caused (0 if none)."""
        now = self.clock()
        with self._lock:
            self._expire(now)
            entry = self._entries.setdefault((purpose, client), _Entry())
            entry.failures += 1
            entry.last = now
            if entry.failures < self.free:
                return 0
            delay = min(self.max_s, self.base_s * 2 ** (entry.failures - self.free))
            entry.locked_until = now + delay
            return int(delay + 0.999)

    def success(self, purpose: str, client: str) -> None:
        with self._lock:
            self._entries.pop((purpose, client), None)

    def _expire(self, now: float) -> None:
        stale = [k for k, e in self._entries.items() if now - e.last > 86400]
        for key in stale:
            del self._entries[key]


# -- the Host header ---------------------------------------------------------------------------


def _local_addresses() -> set[str]:
    """This machine's own IP addresses (Linux /proc, plus what the resolver says)."""
    found: set[str] = {"127.0.0.1", "::1"}
    with contextlib.suppress(OSError):
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
        for i, line in enumerate(lines):
            if "/32 host LOCAL" in line and i > 0:
                found.add(lines[i - 1].split()[-1])
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            raw = line.split()[0]
            found.add(str(ipaddress.IPv6Address(int(raw, 16))))
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None):
            found.add(str(info[4][0]).split("%")[0])
    return found


def _name_forms(name: str) -> set[str]:
    name = name.strip().lower().rstrip(".")
    if not name:
        return set()
    slug = "-".join(name.replace("_", "-").split())
    return {name, slug, f"{slug}.local"}


class HostCheck:
    """Is a request's Host one of the box's own names? (Blocks DNS rebinding and foreign names.)"""

    def __init__(self, extra_names: Iterable[str], refresh_s: float = 30.0):
        self.extra = {n.strip().lower().rstrip(".") for n in extra_names if n and n.strip()}
        self.refresh_s = refresh_s
        self._cached: set[str] = set()
        self._at = -1e9
        self._lock = threading.Lock()

    def names(self) -> set[str]:
        now = time.monotonic()
        with self._lock:
            if now - self._at > self.refresh_s:
                names = {"localhost", *self.extra, *_local_addresses()}
                for extra in list(self.extra):
                    names |= _name_forms(extra)
                with contextlib.suppress(OSError):
                    names |= _name_forms(socket.gethostname())
                self._cached, self._at = names, now
            return self._cached

    @staticmethod
    def host_only(host_header: str) -> str:
        host = host_header.strip().lower()
        if host.startswith("["):  # [v6]:port
            return host[1:].split("]", 1)[0]
        if host.count(":") == 1:
            host = host.split(":", 1)[0]
        return host.rstrip(".")

    def allowed(self, host_header: str | None) -> bool:
        if not host_header:
            return False
        return self.host_only(host_header) in self.names()
