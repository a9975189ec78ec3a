"""`circlebox firstboot`: create this box's secrets once (run by circlebox-firstboot.service)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_DATA_DIR = Path("/var/lib/circlebox")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "firstboot",
        help="create this box's secrets (setup code, admin key, hotspot passphrase) once",
        description="Create the per-box secrets on the data partition if they are missing. "
        "Safe to run again: existing secrets are kept. Run as root on the box.",
    )
    parser.add_argument(
        "--show",
        action="store_true",
        help="print the box id, hotspot name and passphrase and the setup code (for the label)",
    )
    parser.add_argument(
        "--template",
        metavar="FILE",
        help="hotspot profile template (default /etc/circlebox/circlebox-hotspot.nmconnection.in)",
    )
    parser.add_argument(
        "--seal-root",
        action="store_true",
        help="only make the root file system read-only from the next boot (cmdline.txt)",
    )
    parser.add_argument(
        "--cmdline",
        metavar="FILE",
        help=argparse.SUPPRESS,  # tests: another cmdline.txt
    )
    parser.add_argument(
        "--no-chown",
        action="store_true",
        help="leave file owners alone (for trying it out as an ordinary user)",
    )
    parser.set_defaults(handler=handle)


def _data_dir(args: argparse.Namespace) -> Path:
    if getattr(args, "data", None):
        return Path(args.data)
    from device.commands import load_cli_config
    from device.errors import UserFacingError

    try:
        return load_cli_config(args).data_dir
    except UserFacingError as exc:
        # A broken config must not leave a box without secrets: use the standard place.
        print(f"circlebox firstboot: {exc}; using {DEFAULT_DATA_DIR}", file=sys.stderr)
        return DEFAULT_DATA_DIR


def handle(args: argparse.Namespace) -> int:
    from device.errors import UserFacingError
    from device.firstboot import (
        CMDLINE,
        DEFAULT_OWNERS,
        HOTSPOT_TEMPLATE,
        Firstboot,
        FirstbootError,
        seal_root,
    )

    if args.seal_root:
        cmdline = Path(args.cmdline) if args.cmdline else CMDLINE
        try:
            changed = seal_root(cmdline)
        except (OSError, FirstbootError) as exc:
            raise UserFacingError(f"seal-root failed: {exc}") from exc
        print(f"seal-root: {'read-only root from the next boot' if changed else 'nothing to do'}")
        return 0
    boot = Firstboot(
        _data_dir(args),
        template=Path(args.template) if args.template else HOTSPOT_TEMPLATE,
        owners=None if args.no_chown else DEFAULT_OWNERS,
    )
    try:
        if args.show:  # read only: never remake a setup code the admin page has used up
            for key, value in boot.summary().items():
                print(f"{key}: {value}")
        else:
            changed = boot.run()
            print("firstboot: " + (", ".join(changed) if changed else "nothing to do"))
    except (OSError, FirstbootError) as exc:
        raise UserFacingError(f"firstboot failed: {exc}") from exc
    return 0
