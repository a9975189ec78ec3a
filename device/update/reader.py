"""Reading a .cbx with our own checks on every member (tarfile only parses the headers).

Stream mode ("r|") reads the archive front to back once: manifest.json first, manifest.sig
second, then only regular files named payload/<listed path>, each exactly the listed size,
hashed as it streams. Links, devices, FIFOs, directories, sparse files, duplicates, extras and
anything missing are refused by name, whatever the tar flavour.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from device.update import messages as M
from device.update.errors import Refusal
from device.update.manifest import Limits, Manifest

MANIFEST_NAME = "manifest.json"
SIG_NAME = "manifest.sig"
PAYLOAD = "payload/"
CHUNK = 1 << 20
_KINDS = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
    tarfile.DIRTYPE: "a directory",
    tarfile.CONTTYPE: "a contiguous file",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
}
_TAR_ERRORS = (tarfile.TarError, EOFError, ValueError, UnicodeError, OverflowError, OSError)


def _damaged(detail: str) -> Refusal:
    return Refusal(M.DAMAGED, detail)


def check_member(info: tarfile.TarInfo) -> None:
    """Refuse anything that is not a plain regular file with a safe relative name."""
    name = info.name
    if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or info.issparse():
        what = _KINDS.get(info.type, f"of tar type {info.type!r}")
        raise _damaged(f"member {name[:120]!r} is {what}; only regular files are allowed")
    if name.startswith("/") or "\\" in name or "\0" in name:
        raise _damaged(f"member {name[:120]!r} has an absolute or unsafe path")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise _damaged(f"member {name[:120]!r} has an empty, '.' or '..' path component")


class BundleStream:
    """One front-to-back pass over a bundle file: header first, then the payload."""

    def __init__(self, fileobj: BinaryIO, limits: Limits):
        self.limits = limits
        try:
            self._tar = tarfile.open(fileobj=fileobj, mode="r|")  # noqa: SIM115 - lives with self
        except _TAR_ERRORS as exc:
            raise _damaged(f"not a Circlebox bundle (not a tar archive: {exc})") from None

    def _next(self) -> tarfile.TarInfo | None:
        try:
            return self._tar.next()
        except _TAR_ERRORS as exc:
            raise _damaged(f"tar archive is damaged or truncated ({exc})") from None

    def _read_small(self, info: tarfile.TarInfo, limit: int) -> bytes:
        if info.size > limit:
            raise _damaged(f"{info.name} is {info.size} bytes, the limit is {limit}")
        try:
            handle = self._tar.extractfile(info)
            data = handle.read(limit + 1) if handle else b""
        except _TAR_ERRORS as exc:
            raise _damaged(f"{info.name} cannot be read ({exc})") from None
        if len(data) != info.size:
            raise _damaged(f"{info.name} is truncated ({len(data)} of {info.size} bytes)")
        return data

    def read_header(self) -> tuple[bytes, bytes]:
        """The exact manifest bytes and signature bytes; nothing of either is interpreted here."""
        first = self._next()
        if first is None:
            raise _damaged("not a Circlebox bundle (empty archive)")
        check_member(first)
        if first.name != MANIFEST_NAME:
            if first.name == SIG_NAME or not first.name.startswith(PAYLOAD):
                raise _damaged(f"first member is {first.name[:120]!r}, expected {MANIFEST_NAME}")
            raise Refusal(M.UNSIGNED, f"no {MANIFEST_NAME} before the payload")
        manifest = self._read_small(first, self.limits.max_manifest)
        second = self._next()
        if second is None or second.name != SIG_NAME:
            got = "the end of the archive" if second is None else repr(second.name[:120])
            raise Refusal(M.UNSIGNED, f"no {SIG_NAME} after the manifest (found {got})")
        check_member(second)
        return manifest, self._read_small(second, self.limits.max_sig)

    def stream_payload(
        self,
        manifest: Manifest,
        open_dest: Callable[[str, int], BinaryIO | None],
        on_bytes: Callable[[int], None] = lambda n: None,
    ) -> None:
        """Stream every listed file into open_dest(path, mode) (None: hash only), checking all."""
        expected = {e.path: e for e in manifest.files}
        seen: set[str] = set()
        while (info := self._next()) is not None:
            check_member(info)
            if not info.name.startswith(PAYLOAD):
                raise _damaged(f"member {info.name[:120]!r} is outside payload/")
            path = info.name[len(PAYLOAD) :]
            if path in seen:
                raise _damaged(f"member {info.name[:120]!r} appears twice")
            entry = expected.get(path)
            if entry is None:
                raise _damaged(f"member {info.name[:120]!r} is not listed in the manifest")
            if info.size != entry.size:
                raise _damaged(f"{path} is {info.size} bytes, the manifest says {entry.size}")
            seen.add(path)
            self._copy_member(info, entry.sha256, open_dest(path, entry.mode), on_bytes)
        missing = [p for p in expected if p not in seen]
        if missing:
            raise _damaged(f"{len(missing)} listed file(s) missing from the bundle, first: {missing[0]}")

    def _copy_member(
        self,
        info: tarfile.TarInfo,
        sha256: str,
        dest: BinaryIO | None,
        on_bytes: Callable[[int], None],
    ) -> None:
        """Hash and count while copying; read errors are damage, write errors propagate."""
        digest, done = hashlib.sha256(), 0
        try:
            source = self._tar.extractfile(info)
            while True:
                try:
                    chunk = source.read(CHUNK) if source is not None else b""
                except _TAR_ERRORS as exc:
                    raise _damaged(f"{info.name} cannot be read ({exc})") from None
                if not chunk:
                    break
                done += len(chunk)
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
        if done != info.size:
            raise _damaged(f"{info.name} is truncated ({done} of {info.size} bytes)")
        if digest.hexdigest() != sha256:
            raise _damaged(f"{info.name[len(PAYLOAD) :]} does not match its sha256 in the manifest")


@contextmanager
def open_bundle(path: Path, limits: Limits) -> Iterator[BundleStream]:
    with open(path, "rb") as handle:
        yield BundleStream(handle, limits)
