"""`circlebox usb-import DIR`: what the udev-started unit runs for an inserted stick."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("usb-import", help="install bundles from a mounted stick, write field data")
    p.add_argument("stick", type=Path, help="where the stick is mounted (read-only)")
    p.add_argument(
        "--remount",
        action="store_true",
        help="remount the stick read-write only while writing the report (the unit does)",
    )
    p.add_argument("--keys-dir", type=Path, help="trusted public keys (default /etc/circlebox/keys)")
    p.set_defaults(handler=run)


def root_config(args: argparse.Namespace):
    """Root's configuration for the update commands: defaults, /etc (or --config), --data.
    Never the admin layer (device.update.rootconfig says why)."""
    from device.config import ConfigError
    from device.errors import UserFacingError
    from device.update.rootconfig import load_root_config
    from device.update.safefs import UnsafePath

    etc = Path(args.config) if getattr(args, "config", None) else None
    data = Path(args.data).resolve() if getattr(args, "data", None) else None
    try:
        return load_root_config(etc, data) if etc else load_root_config(data_dir=data)
    except (ConfigError, UnsafePath) as exc:
        raise UserFacingError(f"the updater's configuration cannot be used: {exc}") from exc


def run(args: argparse.Namespace) -> int:
    import contextlib
    import os

    from device.control import socket_path
    from device.errors import UserFacingError
    from device.update import messages as M
    from device.update.announce import BoxAnnouncer
    from device.update.asuser import RuntimeUserExporter
    from device.update.factory import read_box_id, real_box
    from device.update.usb import import_from_stick, remounted_rw, unmount, wait_then_finish

    if args.remount and not os.path.ismount(args.stick):
        # the unit mounts the stick there first: an empty folder would read as "no update" and
        # take the report and the usage export (found in QEMU, when the sandbox hid the mount)
        raise UserFacingError(f"no stick is mounted at {args.stick}: nothing was read from it or "
                              "written to it (the unit's mount did not reach the importer)")
    config = root_config(args)
    data_dir = config.data_dir
    box = real_box(data_dir, BoxAnnouncer(socket_path(data_dir)), args.keys_dir)
    box_id = read_box_id(data_dir, config.box.name)
    usage = RuntimeUserExporter(data_dir, box_id)  # root never opens the usage database
    writable = (lambda: remounted_rw(args.stick)) if args.remount else contextlib.nullcontext
    report = import_from_stick(args.stick, box, box_id, usage, writable)
    print(json.dumps(report, indent=1, sort_keys=True, default=str))
    if any(r["code"] == M.STAGED for r in report["results"]):  # type: ignore[union-attr]
        if args.remount:
            unmount(args.stick)
        for result in wait_then_finish(box):
            print(json.dumps(result.to_dict(), sort_keys=True))
    return 0 if report["result"] == "ok" else 1
