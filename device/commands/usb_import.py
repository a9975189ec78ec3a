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


def run(args: argparse.Namespace) -> int:
    import contextlib

    from device.commands import load_cli_config
    from device.control import socket_path
    from device.update import messages as M
    from device.update.announce import BoxAnnouncer
    from device.update.factory import read_box_id, real_box
    from device.update.field_export import StoreExporter
    from device.update.usb import import_from_stick, remounted_rw, unmount, wait_then_finish
    from device.usage import store_path

    config = load_cli_config(args)
    data_dir = config.data_dir
    box = real_box(data_dir, BoxAnnouncer(socket_path(data_dir)), args.keys_dir)
    box_id = read_box_id(data_dir, config.box.name)
    usage = StoreExporter(store_path(data_dir), config.dhis2, box_id)
    writable = (lambda: remounted_rw(args.stick)) if args.remount else contextlib.nullcontext
    report = import_from_stick(args.stick, box, box_id, usage, writable)
    print(json.dumps(report, indent=1, sort_keys=True, default=str))
    if any(r["code"] == M.STAGED for r in report["results"]):  # type: ignore[union-attr]
        if args.remount:
            unmount(args.stick)
        for result in wait_then_finish(box):
            print(json.dumps(result.to_dict(), sort_keys=True))
    return 0 if report["result"] == "ok" else 1
