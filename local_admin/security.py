"""Access to the admin page: per-box secrets, the one password, rate limits, the Host check.

Per-box secrets live in `<data_dir>/secrets/` (made by first boot; created here, 0700 dir and
0600 files, when missing, e.g. on a laptop):

- `setup-code`: six digits, valid only while no password is set; consumed (deleted, and void in
  any case once a password exists) when the password is set.
- `admin-session-key`: 32 random bytes as hex; signs the session cookie.

The password lives in `<data_dir>/admin/password.json` (dir 0700, file 0600), a folder the admin
service owns (first boot keeps `secrets/` read-only for it): JSON `{"hash": <werkzeug scrypt
hash>, "generation": n, "epoch": <random hex>, "set_at": ...}`. The generation goes up on
logout and on password change, and each of those (and every new setup) draws a new random
epoch. A session cookie carries the stamp `<generation>-<epoch>` it was issued under, so a
logout ends every other session at once, and a session stays dead after `setup-code --reset`:
the reset deletes the record, the new setup starts the generation at 1 again, but with an
epoch no old cookie can carry.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from werkzeug.security import check_password_hash, generate_password_hash

from device.datafolder import DataFolder
from device.fsutil import atomic_write_text
from local_admin.i18n import gettext

MIN_PASSWORD = 10
MAX_PASSWORD = 200


def secrets_dir(data_dir: Path) -> Path:
    """`DataFolder.secrets`, made (0700) when missing, e.g. on a laptop."""
    path = DataFolder(data_dir).secrets
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
    secrets_dir(data_dir)
    path = DataFolder(data_dir).session_key
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
        self.data = DataFolder(data_dir)
        self.password_path = self.data.admin_password
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

    def session_stamp(self) -> str | None:
        """What a session cookie must carry to be valid now (None: no password, no sessions)."""
        record = self._record()
        if record is None:
            return None
        return f"{int(record.get('generation', 0))}-{record.get('epoch', '')}"

    def setup_code(self) -> str | None:
        """The current setup code (created if missing); None once a password is set."""
        if self.is_set():
            return None
        with self._lock:
            path = self.data.setup_code
            code = _read(path)
            if not _valid_code(code):
                code = new_setup_code()
                atomic_write_text(path, code + "\n", mode=0o600)
            return code

    # -- changes ---------------------------------------------------------------------------

    def check_setup_code(self, attempt: str) -> bool:
        code = self.setup_code()
        # bytes: compare_digest refuses str with non-ASCII characters (a TypeError, not a wrong code)
        return code is not None and secrets.compare_digest(attempt.strip().encode("utf-8"), code.encode("utf-8"))

    def check_password(self, attempt: str) -> bool:
        record = self._record()
        if record is None:
            return False
        return check_password_hash(record["hash"], attempt)

    def set_password(self, password: str) -> str:
        """Hash and store the password, bump the generation, consume the setup code; returns
        the new session stamp."""
        with self._lock:
            old = self._record()
            generation = (int(old.get("generation", 0)) if old else 0) + 1
            record = {
                "hash": generate_password_hash(password, method="scrypt"),
                "generation": generation,
                "epoch": secrets.token_hex(16),
                "set_at": int(time.time()),
            }
            self._write_record(record)
            # Void in any case once a password exists; deleted where the folder allows it (on
            # the box the admin service sees the secrets folder read-only: EROFS, not EACCES).
            try:
                (self.data.setup_code).unlink()
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS):
                    raise
            return f"{generation}-{record['epoch']}"

    def bump_generation(self) -> int | None:
        """End every session (logout everywhere)."""
        with self._lock:
            record = self._record()
            if record is None:
                return None
            record["generation"] = int(record.get("generation", 0)) + 1
            record["epoch"] = secrets.token_hex(16)
            self._write_record(record)
            return record["generation"]

    def reset(self) -> str:
        """Console reset: forget the password and make a new setup code. Every session ends for
        good: the next setup draws a new epoch, so no old cookie matches it."""
        with self._lock:
            with contextlib.suppress(FileNotFoundError):
                self.password_path.unlink()
            code = new_setup_code()
            path = self.data.setup_code
            atomic_write_text(path, code + "\n", mode=0o600)
            _match_owner(path, self.data.session_key)
            return code


def logged_in(session: Mapping, passwords: PasswordStore) -> bool:
    """Does this (decoded) session cookie belong to a live login? One rule for the page guard
    and the server's pre-body check (local_admin.serving)."""
    stamp = session.get("stamp")
    return bool(session.get("admin")) and isinstance(stamp, str) and stamp == passwords.session_stamp()


def password_problem(password: str, confirm: str) -> tuple[str, str] | None:
    """What is wrong with a new password, as (the form field to mark, the reader's words)."""
    if len(password) < MIN_PASSWORD:
        return "password", gettext(
            "use at least %(count)s characters (a few words together are easy to remember)", count=MIN_PASSWORD)
    if len(password) > MAX_PASSWORD:
        return "password", gettext("use at most %(count)s characters", count=MAX_PASSWORD)
    if password != confirm:
        return "confirm", gettext("the two passwords are not the same")
    return None


# -- rate limiting -----------------------------------------------------------------------------


@dataclass
class _Entry:
    failures: int = 0
    pending: int = 0  # attempts being checked right now (a password check takes a moment)
    locked_until: float = 0.0
    last: float = 0.0


@dataclass(frozen=True)
class Lockout:
    """Why an attempt is refused unchecked: seconds to wait, and whether the whole box's
    network is waiting (the hotspot-wide cap) or only this address."""

    wait_s: int
    everyone: bool

    def message(self) -> str:
        if self.everyone:
            return gettext("Too many wrong tries from phones and computers on this box's network. "
                           "Wait %(seconds)s seconds, then try again.", seconds=self.wait_s)
        return gettext("Too many wrong tries. Wait %(seconds)s seconds, then try again.", seconds=self.wait_s)


EVERYONE = "*"  # the key of the hotspot-wide record: all addresses together


@dataclass
class RateLimiter:
    """Growing lockouts for guesses (setup code, password), per address and for all addresses
    together, in memory.

    Each attempt is reserved with `begin` before it is checked and closed with `end`, both
    under one lock, so parallel requests cannot slip past the count: while an attempt is being
    checked it counts, and after the free ones only one attempt at a time is checked.
    Per address the first `free` failures cost nothing; after that each failure locks the
    address out for `base_s * 2**(extra failures)`, capped at `max_s`. The same rule with
    `free_total` holds for every address together, so twenty phones on the hotspot do not get
    twenty times the guesses. While locked out, attempts are refused without being checked.
    A success clears the address's record; records idle for a day go.
    """

    free: int = 3
    free_total: int = 10
    base_s: float = 2.0
    max_s: float = 900.0
    clock: Callable[[], float] = time.monotonic
    _entries: dict[tuple[str, str], _Entry] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _allowance(self, client: str) -> int:
        return self.free_total if client == EVERYONE else self.free

    def _refusal(self, key: tuple[str, str], now: float) -> int:
        """Seconds this record makes an attempt wait (0: it may be checked now)."""
        entry = self._entries.get(key)
        if entry is None:
            return 0
        if entry.locked_until > now:
            return max(1, int(entry.locked_until - now + 0.999))
        if entry.pending and entry.failures + entry.pending >= self._allowance(key[1]):
            return 1  # the free tries are all being checked right now: one at a time after that
        return 0

    def begin(self, purpose: str, client: str) -> Lockout | None:
        """Reserve one attempt for `client`; a Lockout (and nothing reserved) if it must wait.
        Every reserved attempt must be closed with `end`."""
        now = self.clock()
        with self._lock:
            self._expire(now)
            own = self._refusal((purpose, client), now)
            everyone = self._refusal((purpose, EVERYONE), now)
            if own or everyone:
                return Lockout(max(own, everyone), everyone > own)
            for key in ((purpose, client), (purpose, EVERYONE)):
                entry = self._entries.setdefault(key, _Entry())
                entry.pending += 1
                entry.last = now
            return None

    def end(self, purpose: str, client: str, ok: bool) -> int:
        """Close a reserved attempt. A failure counts (for the address and for everyone) and
        returns the lockout in seconds it caused (0 if none); a success clears the address."""
        now = self.clock()
        wait = 0
        with self._lock:
            for key in ((purpose, client), (purpose, EVERYONE)):
                entry = self._entries.setdefault(key, _Entry())
                entry.pending = max(0, entry.pending - 1)
                entry.last = now
                if ok:
                    continue
                entry.failures += 1
                if entry.failures >= self._allowance(key[1]):
                    extra = entry.failures - self._allowance(key[1])
                    delay = min(self.max_s, self.base_s * 2**extra)
                    entry.locked_until = max(entry.locked_until, now + delay)
                    wait = max(wait, int(delay + 0.999))
            if ok:
                own = self._entries.get((purpose, client))
                if own is not None and not own.pending:
                    del self._entries[(purpose, client)]
        return wait

    def _expire(self, now: float) -> None:
        stale = [k for k, e in self._entries.items() if not e.pending and now - e.last > 86400]
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
