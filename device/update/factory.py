"""The Box as the Pi runs it: data dir as root, keys from /etc, systemd and the circle lock."""

from __future__ import annotations

import re
from pathlib import Path

from device.update.announce import Announcer
from device.update.box import Box, Seams, box_compatible
from device.update.keys import load_trusted_keys
from device.update.safefs import check_box_id, dir_fd, read_small_at
from device.update.seams import SystemdService, circle_running_from_lock

CIRCLE_LOCK = "circle.lock"  # the runtime holds flock on <data_dir>/circle.lock during a circle


def read_box_id(data_dir: Path, fallback: str) -> str:
    """The id firstboot wrote to <data_dir>/box-id, else the configured box name made into a
    folder name. It names this box's folder on a stick, so it must be one plain folder name:
    the file is read without following a symlink, and a name with '/' or '..' is not used."""
    try:
        with dir_fd(Path(data_dir)) as fd:
            name = read_small_at(fd, "box-id", 256).decode("utf-8").strip()
        return check_box_id(name)
    except (OSError, ValueError):
        return folder_name(fallback)


def folder_name(name: str) -> str:
    """A configured box name ("Clinic 7 / east") as a safe folder name ("Clinic-7---east")."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "-", name).lstrip(".-")[:63]
    return safe or "circlebox"


def real_box(data_dir: Path, announcer: Announcer, keys_dir: Path | None = None, pubkey: Path | None = None) -> Box:
    """The box's own updater: restarts circlebox.service, waits for systemd's verdict."""
    service = SystemdService()
    seams = Seams(
        announcer=announcer,
        circle_running=circle_running_from_lock(Path(data_dir) / CIRCLE_LOCK),
        restart=service.restart,
        health=service.health,
    )
    return Box(
        root=Path(data_dir),
        trusted_keys=load_trusted_keys(keys_dir, pubkey),
        compatible=box_compatible(),
        seams=seams,
    )
