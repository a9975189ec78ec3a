"""Bundles uploaded on the admin page: an inbox folder, emptied by the box's own updater.

The admin service runs locked down (its own user, read-only system, no privileges), so it
cannot install anything itself. It only drops a complete upload into the inbox (written to a
.part file, then renamed); a root systemd path unit sees it and runs `circlebox update-inbox`,
which installs through exactly the same checks as a USB stick and leaves the result in
update/last-result.json for the page to show.
"""

from __future__ import annotations

import contextlib
import os
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path

from device.update.manifest import Limits
from device.update.safefs import dir_fd, open_dir

INBOX = "update-inbox"
CHUNK = 1024 * 1024
MAX_UPLOAD = Limits().max_total + Limits().max_manifest + 1024 * 1024


class UploadRefused(ValueError):
    """The upload is not a bundle at all, or too big; the message is for the person uploading."""


def inbox_dir(data_dir: Path) -> Path:
    return Path(data_dir) / INBOX


def _looks_like_bundle(head: bytes) -> bool:
    """A .cbx starts with the tar header of manifest.json (the updater checks everything else)."""
    if len(head) < tarfile.BLOCKSIZE:
        return False
    name = head[:100].split(b"\0", 1)[0]
    return name == b"manifest.json" and head[257:262] == b"ustar"


def accept_upload(chunks: Iterable[bytes], data_dir: Path, max_bytes: int = MAX_UPLOAD) -> Path:
    """Stream an upload into the inbox; only a complete, plausible file gets a .cbx name."""
    inbox = inbox_dir(data_dir)
    inbox.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".upload-", suffix=".part", dir=inbox)
    size, head = 0, b""
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise UploadRefused(f"the file is larger than {max_bytes // (1024 * 1024)} MB")
                if len(head) < tarfile.BLOCKSIZE:
                    head += chunk[: tarfile.BLOCKSIZE - len(head)]
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if not _looks_like_bundle(head):
            raise UploadRefused("this is not a Circlebox update file (.cbx)")
        final = inbox / (Path(tmp).name.removeprefix(".upload-").removesuffix(".part") + ".cbx")
        os.chmod(tmp, 0o640)
        os.replace(tmp, final)
        return final
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def pending_uploads(inbox: Path) -> list[Path]:
    """Complete uploads in the inbox, oldest first. Listed from a directory fd without
    following symlinks: a link the admin service planted is never opened by root."""
    try:
        fd = open_dir(inbox)
    except FileNotFoundError:
        return []
    try:
        with os.scandir(fd) as entries:
            found = [
                (e.stat(follow_symlinks=False).st_mtime, inbox / e.name)
                for e in entries
                if e.name.endswith(".cbx") and not e.name.startswith(".") and e.is_file(follow_symlinks=False)
            ]
    finally:
        os.close(fd)
    return [path for _mtime, path in sorted(found)]


def process_inbox(data_dir: Path, box=None) -> list:  # -> list[Result]
    """Install every complete upload, oldest first, then remove it (the result stays on record).
    Root reads the admin service's folder: each file is opened beneath it with O_NOFOLLOW."""
    from device.update.upload import install_uploaded_bundle

    inbox = inbox_dir(data_dir)
    results = []
    for path in pending_uploads(inbox):
        try:
            results.append(install_uploaded_bundle(path, box, data_dir=data_dir, beneath=inbox))
        finally:
            with contextlib.suppress(OSError), dir_fd(inbox) as fd:
                os.unlink(path.name, dir_fd=fd)
    return results
