"""The `circlebox` command. Each subcommand lives in device/commands/<name>.py.

A command module exposes `register(subparsers)` and imports nothing heavy at module level, so
`circlebox run` on the Pi never pays for the renderer, Flask or the updater.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from device.errors import UserFacingError

# One line per subcommand module; order is the order in `circlebox --help`.
COMMAND_MODULES = (
    "device.commands.run",
    "device.commands.demo",
    "device.commands.simulate",
    "device.commands.render",
    "device.commands.validate",
    "device.commands.course",  # `course check`, `course list`
    "device.commands.firstboot",
    "device.commands.bundle",
    "device.commands.usb_import",
    "device.commands.update_inbox",
    "device.commands.admin",  # `admin` and `setup-code`
    "device.commands.doctor",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="circlebox",
        description="Circlebox: a box that guides a group circle with an offline voice and big buttons.",
    )
    parser.add_argument("--config", metavar="FILE", help="extra config file (instead of /etc/circlebox/config.yaml)")
    parser.add_argument("--data", metavar="DIR", help="data directory (scripts, rendered prompts, usage)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except UserFacingError as exc:
        print(f"circlebox: {exc}", file=sys.stderr)
        return 2

__all__ = ["UserFacingError", "build_parser", "main"]


if __name__ == "__main__":
    sys.exit(main())
