"""Step one on the box: copy the bundle off the stick (or the upload) into local storage,
hashing as it goes. Only this copy is verified and installed: a stick can change under us."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path

from device.fsutil import fsync_dir
from device.update import messages as M
from device.update.announce import Narrator
from device.update.box import Box
from device.update.crash import crashpoint
from device.update.errors import Refusal
from device.update.manifest import MiB
from device.update.safefs import check_private_dir, open_beneath


def open_source(source: Path, beneath: Path | None = None) -> int:
    """The bundle to copy, never through a symbolic link: with `beneath` (a stick's mount
    point, the upload inbox) no component below it may be one either. O_NONBLOCK: a FIFO
    named like a bundle must not hang the updater (it is refused as not a regular file)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    if beneath is None:
        return os.open(source, flags)
    return open_beneath(beneath, Path(source).relative_to(beneath), flags)


def copy_in(source: Path, box: Box, narr: Narrator, beneath: Path | None = None) -> tuple[Path, str]:
    """Copy the bundle off the stick into <root>/update/incoming; (local path, sha256)."""
    try:
        fd = open_source(Path(source), beneath)
    except OSError as exc:
        code = M.DAMAGED if exc.errno == errno.ELOOP else M.STICK_ERROR
        raise Refusal(code, f"{Path(source).name}: cannot open ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as src:
        st = os.fstat(src.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise Refusal(M.DAMAGED, f"{Path(source).name} is not a regular file")
        if st.st_size == 0:
            raise Refusal(M.DAMAGED, f"{Path(source).name} is empty (0 bytes)")
        if st.st_size > box.limits.max_total + box.limits.max_manifest + 64 * MiB:
            raise Refusal(M.DAMAGED, f"{Path(source).name} is {st.st_size} bytes, larger than any bundle")
        need = 2 * st.st_size + box.limits.reserve  # the copy, then the extracted payload
        free = box.seams.free_bytes(box.root)
        if free < need:
            raise Refusal(M.NO_SPACE, f"needs {need} bytes free, the box has {free}")
        incoming = Path(box.root) / "update" / "incoming"
        check_private_dir(incoming.parent)
        check_private_dir(incoming)
        partial = incoming / ".copy.partial"
        partial.unlink(missing_ok=True)
        narr.say(M.COPYING)
        digest, done = hashlib.sha256(), 0
        out = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(out, "wb") as dst:
            while True:
                try:
                    chunk = src.read(MiB)
                except OSError as exc:
                    raise Refusal(M.STICK_ERROR, f"read error after {done} bytes ({exc.strerror})") from None
                if not chunk:
                    break
                digest.update(chunk)
                dst.write(chunk)
                done += len(chunk)
                narr.work(0.3 * done / st.st_size)
            dst.flush()
            os.fsync(dst.fileno())
    if done != st.st_size:
        raise Refusal(M.STICK_ERROR, f"the file changed size while copying ({done} of {st.st_size} bytes)")
    local = incoming / f"{digest.hexdigest()}.cbx"
    os.replace(partial, local)
    fsync_dir(incoming)
    crashpoint("copied")
    return local, digest.hexdigest()
