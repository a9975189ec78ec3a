"""The Box as the Pi runs it: data dir as root, keys from /etc, systemd and the circle lock."""

from __future__ import annotations

from pathlib import Path

from device.update.announce import Announcer
from device.update.box import Box, Seams, box_compatible
from device.update.keys import load_trusted_keys
from device.update.seams import SystemdService, circle_running_from_lock

CIRCLE_LOCK = "circle.lock"  # the runtime holds flock on <data_dir>/circle.lock during a circle


def read_box_id(data_dir: Path, fallback: str) -> str:
    """The id firstboot wrote to <data_dir>/box-id, else the configured box name."""
    try:
        return (Path(data_dir) / "box-id").read_text(encoding="utf-8").strip() or fallback
    except OSError:
        return fallback


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
