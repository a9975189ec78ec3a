"""The admin page's way in: an uploaded bundle takes exactly the stick's path (copy, verify,
install, health, rollback) and returns the same coded Result the page shows.

The install writes root-owned releases and restarts services, so it needs the updater's
privileges: call this from a privileged helper (a unit the page triggers), not from inside the
hardened admin web process. The update lock serialises it with a stick import.
"""

from __future__ import annotations

from pathlib import Path

from device.update.announce import Announcer
from device.update.box import Box, Result
from device.update.installer import apply_bundle


def install_uploaded_bundle(
    path: Path,
    box: Box | None = None,
    *,
    data_dir: Path | None = None,
    announcer: Announcer | None = None,
) -> Result:
    """Install an uploaded .cbx. Without `box`, the box's own updater for `data_dir` (default:
    the configured data dir), speaking through `announcer` (default: the console)."""
    if box is None:
        from device.control import socket_path
        from device.update.announce import BoxAnnouncer
        from device.update.factory import real_box

        if data_dir is None:
            from device.config import load_config

            data_dir = load_config().data_dir
        box = real_box(Path(data_dir), announcer or BoxAnnouncer(socket_path(Path(data_dir))))
    return apply_bundle(Path(path), box)
