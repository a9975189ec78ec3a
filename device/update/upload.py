"""The admin page's way in: an uploaded bundle takes exactly the stick's path (copy, verify,
install, health, rollback) and returns the same coded Result the page shows.

Two halves with different privileges. `receive_upload` runs in the admin web process: it
streams the request body straight into the inbox file in bounded chunks (never whole in
memory, never in /tmp, refused before reading when too large for the limit or the free space).
`install_uploaded_bundle` runs in the root updater (circlebox-update-inbox.service), reading
the file beneath the inbox without following symlinks. The update lock serialises it with a
stick import.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from device.update.announce import Announcer
from device.update.box import Box, Result
from device.update.inbox import CHUNK, MAX_UPLOAD, UploadRefused, accept_upload, inbox_dir
from device.update.installer import apply_bundle
from device.update.seams import free_bytes

# Left free on the data partition after an upload: the install needs room to unpack it.
UPLOAD_RESERVE = 64 * 1024 * 1024


def receive_upload(
    stream: BinaryIO,
    length: int | None,
    data_dir: Path,
    max_bytes: int = MAX_UPLOAD,
) -> Path:
    """Stream a raw request body (`length` bytes, from Content-Length) into the inbox.

    Memory stays at one CHUNK whatever the size; UploadRefused (a message for the person
    uploading) when the length is missing, over `max_bytes`, or more than the box has room for.
    """
    if length is None:
        raise UploadRefused("the upload did not say its size; use the page's upload button")
    if length > max_bytes:
        raise UploadRefused(f"the file is larger than {max_bytes // (1024 * 1024)} MB")
    room = free_bytes(inbox_dir(data_dir)) - UPLOAD_RESERVE
    if length > room:
        raise UploadRefused(
            f"the box has room for {max(room, 0) // (1024 * 1024)} MB, the file is {length // (1024 * 1024)} MB"
        )

    def chunks():
        left = length
        while left:
            chunk = stream.read(min(CHUNK, left))
            if not chunk:
                raise UploadRefused("the upload stopped before the whole file arrived; try again")
            left -= len(chunk)
            yield chunk

    return accept_upload(chunks(), data_dir, max_bytes=min(max_bytes, length))


def install_uploaded_bundle(
    path: Path,
    box: Box | None = None,
    *,
    data_dir: Path | None = None,
    announcer: Announcer | None = None,
    beneath: Path | None = None,
) -> Result:
    """Install an uploaded .cbx. Without `box`, the box's own updater for `data_dir` (default:
    root's configured data dir, never the admin layer), speaking through `announcer` (default:
    the console). `beneath`: the inbox, which the file is opened inside without symlinks."""
    if box is None:
        from device.control import socket_path
        from device.update.announce import BoxAnnouncer
        from device.update.factory import real_box
        from device.update.rootconfig import load_root_config

        if data_dir is None:
            data_dir = load_root_config().data_dir
        box = real_box(Path(data_dir), announcer or BoxAnnouncer(socket_path(Path(data_dir))))
    return apply_bundle(Path(path), box, beneath=beneath)
