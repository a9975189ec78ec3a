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


def copy_in(source: Path, box: Box, narr: Narrator) -> tuple[Path, str]:
    """Copy the bundle off the stick into <root>/update/incoming; (local path, sha256)."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        code = M.DAMAGED if exc.errno == errno.ELOOP else M.STICK_ERROR
        raise Refusal(code, f"{Path(source).name}: cannot open ({exc.strerror})") from None
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
        incoming.mkdir(parents=True, exist_ok=True)
        partial = incoming / ".copy.partial"
        narr.say(M.COPYING)
        digest, done = hashlib.sha256(), 0
        with open(partial, "wb") as dst:
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
