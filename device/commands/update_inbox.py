"""`circlebox update-inbox`: install bundles uploaded on the admin page (root, via a path unit).

Reads only root's configuration (defaults and /etc, `device.update.rootconfig`): never the
admin page's own layer, which the admin service can write."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("update-inbox", help="install update bundles uploaded on the admin page")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from device.commands.usb_import import root_config
    from device.update.inbox import process_inbox

    results = process_inbox(root_config(args).data_dir)
    for result in results:
        print(f"[{result.code}] {result.message}")
    return 0 if all(r.ok for r in results) else 1
