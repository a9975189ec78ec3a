"""The updater's journal: installed, pending, trial and rejected versions per kind.

One JSON file written atomically before and after every step that changes what runs, so a
crash anywhere leaves a record that says how to converge. The last result lives in its own
file: writing it never touches the install.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from device.fsutil import atomic_write_text


class ReleaseRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str
    version: int
    release: str  # directory name under releases/
    bundle_sha256: str
    previous: str | None = None  # the release kept on disk to roll back to


class Trial(ReleaseRecord):
    """A release switched to but not yet confirmed healthy (or being rolled back)."""

    previous_version: int = 0
    phase: Literal["trial", "rolling_back"] = "trial"


class UpdateState(BaseModel):
    model_config = ConfigDict(extra="forbid")
    installed: dict[str, ReleaseRecord] = Field(default_factory=dict)
    rejected: dict[str, list[int]] = Field(default_factory=dict)
    pending: dict[str, ReleaseRecord] = Field(default_factory=dict)
    trial: Trial | None = None

    def installed_version(self, kind: str) -> int:
        record = self.installed.get(kind)
        return record.version if record else 0

    def versions(self) -> dict[str, int]:
        return {kind: rec.version for kind, rec in sorted(self.installed.items())}


def state_path(root: Path) -> Path:
    return Path(root) / "update" / "state.json"


def last_result_path(root: Path) -> Path:
    return Path(root) / "update" / "last-result.json"


def floor_path(root: Path) -> Path:
    """The highest version ever installed per kind: only raised, kept apart from the journal."""
    return Path(root) / "update" / "installed-floor.json"


def load_floor(root: Path) -> dict[str, int]:
    try:
        raw = json.loads(floor_path(root).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        raw = {}
    return {str(k): v for k, v in raw.items() if isinstance(v, int) and not isinstance(v, bool)} if isinstance(
        raw, dict) else {}


def raise_floor(root: Path, kind: str, version: int) -> None:
    """Record that `version` of `kind` was installed; the floor never goes down."""
    floor = load_floor(root)
    if floor.get(kind, 0) >= version:
        return
    floor[kind] = version
    atomic_write_text(floor_path(root), json.dumps(floor, indent=1, sort_keys=True) + "\n")


def installed_floor(root: Path, state: UpdateState, kind: str) -> int:
    """The lowest version the box may still take for `kind` is above this: the journal's
    installed version, the separate floor file, and the release `current/<kind>` points at.
    Losing the journal (deleted, damaged) therefore never lets an old signed bundle back in."""
    from device.update.release import current_release

    versions = [state.installed_version(kind), load_floor(root).get(kind, 0)]
    running = current_release(root, kind) or ""
    tail = running.rpartition("-")[2]
    if running.startswith(f"{kind}-") and tail.isdigit():
        versions.append(int(tail))
    return max(versions)


def load_state(root: Path) -> UpdateState:
    path = state_path(root)
    if not path.exists():
        return UpdateState()
    return UpdateState.model_validate_json(path.read_text(encoding="utf-8"))


def save_state(root: Path, state: UpdateState) -> None:
    atomic_write_text(state_path(root), state.model_dump_json(indent=1) + "\n")


def save_last_result(root: Path, result: dict[str, object]) -> None:
    atomic_write_text(last_result_path(root), json.dumps(result, indent=1, sort_keys=True) + "\n")


def load_last_result(root: Path) -> dict[str, object] | None:
    try:
        return json.loads(last_result_path(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
