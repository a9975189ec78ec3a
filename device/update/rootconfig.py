"""The configuration root's update commands use: package defaults and the /etc layer only.

`update-inbox`, `usb-import` and `bundle finish-pending --system` run as root. The admin layer
(<data>/admin-config.yaml) is written by the admin service and the environment layer is not
root's to trust either, so neither is read here: a compromised admin page cannot point the
updater at another data folder (the review set `paths.data_dir` there). The /etc file must
itself be root's and not writable by anyone else.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pydantic import ValidationError

from device.config import ETC_CONFIG, Config, ConfigError, merge, package_defaults, read_layer
from device.update.safefs import UnsafePath, check_ancestors


def load_root_config(etc_path: Path | None = ETC_CONFIG, data_dir: Path | None = None) -> Config:
    """Defaults + the /etc layer (+ root's own `--data`), validated; ConfigError or UnsafePath."""
    data = package_defaults()
    if etc_path is not None and Path(etc_path).exists():
        check_root_file(Path(etc_path))
        data = merge(data, read_layer(Path(etc_path)), str(etc_path))
    if data_dir is not None:
        data = merge(data, {"paths": {"data_dir": str(data_dir)}}, "command line")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{etc_path}: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from exc


def check_root_file(path: Path) -> None:
    """A config file root may read: a regular file of root's (or ours), writable by no one else."""
    check_ancestors(path.parent)
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePath(f"{path} is not a regular file (a symbolic link?)")
    if st.st_uid not in {0, os.geteuid()} or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafePath(f"{path} can be changed by a user other than root (uid {st.st_uid}, "
                         f"mode {stat.S_IMODE(st.st_mode):o})")
