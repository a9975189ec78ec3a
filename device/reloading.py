"""What a reloaded config or a changed file means for a running box.

The runtime re-reads its settings without a restart (the admin page asks over the control
socket after each save; the runtime also notices changed files itself, since a USB stick or a
technician can change them too). This module answers the questions that decision needs, with
no state of its own: which files to watch, what changed between two configs and when each
change can be applied (volume at once; the rest between circles; a few only at a restart),
and whether a time sent from a phone is plausible.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from device.config import ETC_CONFIG, Config, load_config
from device.datafolder import DataFolder

ConfigLoader = Callable[[], Config]

# A phone's time is refused outside these bounds: no box ran before 2020, and a date ten years
# past the box's own reading is a typo or a broken phone, not a clock battery that ran out.
EARLIEST_PHONE_TIME = datetime(2020, 1, 1, tzinfo=UTC).timestamp()
MAX_AHEAD_S = 10 * 365.25 * 24 * 3600


@dataclass(frozen=True)
class ConfigSource:
    """How the box's config was built, so a reload reads the same layers as the start did."""

    load: ConfigLoader
    files: tuple[Path, ...]  # config files besides <data>/admin-config.yaml (the /etc layer)


def standard_source(data_dir: Path, etc_path: Path | None = ETC_CONFIG) -> ConfigSource:
    """The box's usual layers (package defaults, /etc, the admin file, the environment), with
    the data folder it was started with."""
    overrides = {"paths": {"data_dir": str(data_dir)}}
    return ConfigSource(lambda: load_config(etc_path=etc_path, overrides=overrides),
                        () if etc_path is None else (etc_path,))


def file_signature(paths: Iterable[Path]) -> tuple:
    """(path, mtime, inode) of each path, None for a missing one: cheap to take every 2 s, and
    different after any atomic save (a new inode) or an in-place edit."""
    sig = []
    for path in paths:
        try:
            st = os.stat(path)
            sig.append((str(path), st.st_mtime_ns, st.st_ino, st.st_size))
        except OSError:
            sig.append((str(path), None))
    return tuple(sig)


def circle_files(name: str, script_id: str, folder: DataFolder) -> list[Path]:
    """Every file the circle `name` is made of: its script candidates, a waiting draft, its
    rendered sets and the box's own prompts, in the box's cache and the installed release."""
    from device.content import manifest_path, script_candidates
    from device.system_prompts import system_manifest_path

    ids = dict.fromkeys((script_id, Path(name).stem))
    paths = [path for path, _origin in script_candidates(name, folder)]
    for sid in ids:
        paths.append(folder.draft(sid))
        for cache in (folder.cache, folder.installed_cache):
            paths.append(manifest_path(cache, sid))
    paths += [system_manifest_path(folder.cache), system_manifest_path(folder.installed_cache)]
    return paths


def installed_release(folder: DataFolder) -> str:
    """Which release `current/content` points at (the updater swaps the link)."""
    try:
        return os.readlink(folder.installed_content)
    except OSError:
        return ""


# -- what changed ------------------------------------------------------------------------------


def changes_between_circles(old: Config, new: Config) -> list[str]:
    """What the new config changes that waits for the running circle to end, in plain words."""
    items = []
    if new.session.script != old.session.script:
        items.append(f"circle {Path(new.session.script).stem}")
    if new.listening != old.listening:
        items.append("listening settings")
    if (new.buttons.map, new.buttons.hold_s, new.buttons.bounce_s) != (
            old.buttons.map, old.buttons.hold_s, old.buttons.bounce_s):
        items.append("button map")
    if new.leds != old.leds:
        items.append("status lights")
    if new.box != old.box:
        items.append("box name")
    return items


def changes_at_once(old: Config, new: Config) -> bool:
    """Volume, its cap and its step apply at once, even mid-circle."""
    a, b = old.audio, new.audio
    return (a.volume, a.volume_cap, a.volume_step) != (b.volume, b.volume_cap, b.volume_step)


def changes_needing_restart(old: Config, new: Config) -> list[str]:
    """Keys the running box cannot change (its sound output and GPIO are opened once)."""
    keys = []
    for section, key in (("audio", "sample_rate"), ("audio", "buffer_samples"), ("audio", "driver"),
                         ("buttons", "pin_factory"), ("paths", "data_dir")):
        if getattr(getattr(old, section), key) != getattr(getattr(new, section), key):
            keys.append(f"{section}.{key}")
    return keys


# -- the clock -----------------------------------------------------------------------------------


def check_phone_time(value: object, box_now: float) -> float:
    """The time a phone sent, as unix seconds; ValueError (in words) when it cannot be right."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("time must be a number of seconds since 1970 (unix time)")
    seconds = float(value)
    if not math.isfinite(seconds):
        raise ValueError("time must be a real number of seconds")
    if seconds < EARLIEST_PHONE_TIME:
        raise ValueError("that time is before 2020; check the phone's date")
    if seconds > box_now + MAX_AHEAD_S:
        raise ValueError("that time is more than 10 years ahead of the box's clock; check the phone's date")
    return seconds


__all__ = ["ConfigLoader", "ConfigSource", "changes_at_once", "changes_between_circles",
           "changes_needing_restart", "check_phone_time", "circle_files", "file_signature",
           "installed_release", "standard_source"]
