"""Reading a .cbx with our own parser: Python's `tarfile` never sees a bundle on the box.

A bundle is a plain POSIX ustar archive, read front to back once in 512-byte blocks:
manifest.json first, manifest.sig second (both small, read whole), then only regular files
named payload/<listed path>, each exactly the listed size, hashed as it streams.

Every header is checked here before anything else looks at it: the checksum, the ustar magic,
a name of at most 256 bytes in the ustar name/prefix fields, a size in plain octal. Extension
headers (pax `x`/`g`, GNU long names `L`/`K`, sparse `S`), links, devices, FIFOs, directories,
duplicates, extras and anything missing are refused by name. So a hostile header costs at
most one block of memory and one pass of simple byte checks: no regular expressions over
attacker data (CPython's pax parsing is quadratic, CVE-2024-6232) and no buffer sized by an
attacker's number (a GNU long-name header claiming 300 MB is read by tarfile whole).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from device.update import messages as M
from device.update.errors import Refusal
from device.update.manifest import PAYLOAD, Limits, Manifest

MANIFEST_NAME = "manifest.json"
SIG_NAME = "manifest.sig"
CHUNK = 1 << 20
BLOCK = 512
# After the end-of-archive marker only zero padding may follow (tar pads to 10 KiB records).
MAX_TRAILER = 20 * BLOCK
_USTAR_MAGICS = (b"ustar\x0000",)
_REGULAR = (b"0", b"\x00")
_KINDS = {
    b"1": "a hard link",
    b"2": "a symbolic link",
    b"3": "a character device",
    b"4": "a block device",
    b"5": "a directory",
    b"6": "a FIFO",
    b"7": "a contiguous file",
    b"x": "a pax extended header",
    b"g": "a pax global header",
    b"L": "a GNU long-name header",
    b"K": "a GNU long-link header",
    b"S": "a sparse file",
}


def _damaged(detail: str) -> Refusal:
    return Refusal(M.DAMAGED, detail)


@dataclass(frozen=True)
class Member:
    """One checked header: a regular file's name and size (nothing else is ever accepted)."""

    name: str
    size: int


def _octal(field: bytes, what: str) -> int:
    """A ustar number: octal digits, optionally space-padded, ended by NUL or space."""
    digits = field.rstrip(b"\x00 ").lstrip(b" ")
    if field[:1] and field[0] & 0x80:
        raise _damaged(f"tar header {what} uses the base-256 extension; only plain ustar is allowed")
    if not digits or any(c not in b"01234567" for c in digits):
        raise _damaged(f"tar header {what} is not an octal number")
    return int(digits, 8)


def _cstring(field: bytes) -> bytes:
    return field.split(b"\x00", 1)[0]


def parse_header(block: bytes) -> Member:
    """Check one 512-byte header completely; refuse anything but a plain regular file."""
    stored = _octal(block[148:156], "checksum")
    computed = sum(block[:148]) + 8 * 32 + sum(block[156:])
    if stored != computed:
        raise _damaged("tar header checksum is wrong: the file is damaged or not a bundle")
    if block[257:265] not in _USTAR_MAGICS:
        raise _damaged("not a Circlebox bundle (not a POSIX ustar archive)")
    raw_name, prefix = _cstring(block[0:100]), _cstring(block[345:500])
    raw = prefix + b"/" + raw_name if prefix else raw_name
    try:
        name = raw.decode("ascii")
    except UnicodeDecodeError:
        raise _damaged(f"member {raw[:120]!r} has a name that is not plain ASCII") from None
    typeflag = block[156:157]
    if typeflag not in _REGULAR:
        what = _KINDS.get(typeflag, f"of tar type {typeflag!r}")
        raise _damaged(f"member {name[:120]!r} is {what}; only regular files are allowed")
    if not name:
        raise _damaged("a member has an empty name")
    if name.startswith("/") or "\\" in name:
        raise _damaged(f"member {name[:120]!r} has an absolute or unsafe path")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise _damaged(f"member {name[:120]!r} has an empty, '.' or '..' path component")
    return Member(name, _octal(block[124:136], f"size of {name[:120]!r}"))


class BundleStream:
    """One front-to-back pass over a bundle file: header first, then the payload."""

    def __init__(self, fileobj: BinaryIO, limits: Limits):
        self.limits = limits
        self._file = fileobj
        self._ended = False

    def _read_exact(self, n: int, what: str) -> bytes:
        data = self._file.read(n)
        if len(data) != n:
            raise _damaged(f"the bundle is truncated (in {what})")
        return data

    def _next(self) -> Member | None:
        """The next member's checked header, or None at the end-of-archive marker."""
        if self._ended:
            return None
        block = self._file.read(BLOCK)
        if not block:
            raise _damaged("the bundle is truncated (no end-of-archive marker)")
        if len(block) != BLOCK:
            raise _damaged("the bundle is truncated (in a header)")
        if block == bytes(BLOCK):
            self._check_trailer()
            self._ended = True
            return None
        return parse_header(block)

    def _check_trailer(self) -> None:
        """Only zero padding, and not much of it, may follow the end-of-archive marker."""
        rest = self._file.read(MAX_TRAILER + 1)
        if len(rest) > MAX_TRAILER or rest.strip(b"\x00"):
            raise _damaged("the bundle has data after the end of the archive")

    def _skip_padding(self, size: int, what: str) -> None:
        pad = -size % BLOCK
        if pad and len(self._file.read(pad)) != pad:
            raise _damaged(f"the bundle is truncated (in {what})")

    def _read_small(self, member: Member, limit: int) -> bytes:
        if member.size > limit:
            raise _damaged(f"{member.name} is {member.size} bytes, the limit is {limit}")
        data = self._read_exact(member.size, member.name)
        self._skip_padding(member.size, member.name)
        return data

    def read_header(self) -> tuple[bytes, bytes]:
        """The exact manifest bytes and signature bytes; nothing of either is interpreted here."""
        first = self._first()
        if first.name != MANIFEST_NAME:
            if first.name == SIG_NAME or not first.name.startswith(PAYLOAD):
                raise _damaged(f"first member is {first.name[:120]!r}, expected {MANIFEST_NAME}")
            raise Refusal(M.UNSIGNED, f"no {MANIFEST_NAME} before the payload")
        manifest = self._read_small(first, self.limits.max_manifest)
        second = self._next()
        if second is None or second.name != SIG_NAME:
            got = "the end of the archive" if second is None else repr(second.name[:120])
            raise Refusal(M.UNSIGNED, f"no {SIG_NAME} after the manifest (found {got})")
        return manifest, self._read_small(second, self.limits.max_sig)

    def _first(self) -> Member:
        block = self._file.read(BLOCK)
        if not block or block == bytes(len(block)):
            raise _damaged("not a Circlebox bundle (empty archive)")
        if len(block) != BLOCK or block[257:262] != b"ustar":
            raise _damaged("not a Circlebox bundle (not a tar archive)")
        return parse_header(block)

    def stream_payload(
        self,
        manifest: Manifest,
        open_dest: Callable[[str, int], BinaryIO | None],
        on_bytes: Callable[[int], None] = lambda n: None,
    ) -> None:
        """Stream every listed file into open_dest(path, mode) (None: hash only), checking all.
        Call only after the manifest's signature checked out: its list bounds everything."""
        expected = {e.path: e for e in manifest.files}
        seen: set[str] = set()
        while (member := self._next()) is not None:
            if not member.name.startswith(PAYLOAD):
                raise _damaged(f"member {member.name[:120]!r} is outside payload/")
            path = member.name[len(PAYLOAD) :]
            if path in seen:
                raise _damaged(f"member {member.name[:120]!r} appears twice")
            entry = expected.get(path)
            if entry is None:
                raise _damaged(f"member {member.name[:120]!r} is not listed in the manifest")
            if member.size != entry.size:
                raise _damaged(f"{path} is {member.size} bytes, the manifest says {entry.size}")
            seen.add(path)
            self._copy_member(member, entry.sha256, open_dest(path, entry.mode), on_bytes)
        missing = [p for p in expected if p not in seen]
        if missing:
            raise _damaged(f"{len(missing)} listed file(s) missing from the bundle, first: {missing[0]}")

    def _copy_member(
        self,
        member: Member,
        sha256: str,
        dest: BinaryIO | None,
        on_bytes: Callable[[int], None],
    ) -> None:
        """Hash and count while copying, CHUNK bytes at a time; write errors propagate."""
        digest, left = hashlib.sha256(), member.size
        try:
            while left:
                chunk = self._file.read(min(CHUNK, left))
                if not chunk:
                    raise _damaged(f"{member.name} is truncated ({member.size - left} of {member.size} bytes)")
                left -= len(chunk)
                digest.update(chunk)
                if dest is not None:
                    dest.write(chunk)
                on_bytes(len(chunk))
            if dest is not None:
                dest.flush()
                os.fsync(dest.fileno())
        finally:
            if dest is not None:
                dest.close()
        self._skip_padding(member.size, member.name)
        if digest.hexdigest() != sha256:
            raise _damaged(f"{member.name[len(PAYLOAD) :]} does not match its sha256 in the manifest")


@contextmanager
def open_bundle(path: Path, limits: Limits) -> Iterator[BundleStream]:
    """A bundle on trusted local storage (the updater's own copy); never follows a symlink."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        yield BundleStream(handle, limits)
