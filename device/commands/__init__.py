"""Subcommands of `circlebox`; see device/cli.py."""

from __future__ import annotations

import argparse
from pathlib import Path

from device.config import Config, ConfigError, load_config


def load_cli_config(args: argparse.Namespace, **overrides: object) -> Config:
    """The config for a command: layers, plus --config and --data from the command line."""
    from device.errors import UserFacingError

    extra: dict[str, object] = {}
    if getattr(args, "data", None):
        extra["paths"] = {"data_dir": str(Path(args.data).resolve())}
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        extra.setdefault(section, {})[key] = value  # type: ignore[index]
    etc = Path(args.config) if getattr(args, "config", None) else None
    try:
        if etc is not None:
            return load_config(etc_path=etc, overrides=extra or None)
        return load_config(overrides=extra or None)
    except ConfigError as exc:
        raise UserFacingError(str(exc)) from exc
