"""What the updater needs to know about a box, its seams, and what it reports back."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from device.update import messages as M
from device.update.announce import Announcer, Narrator, SilentAnnouncer
from device.update.manifest import DEFAULT_COMPATIBLE, Limits
from device.update.seams import free_bytes

COMPATIBLE_FILE = Path("/etc/circlebox/compatible")


def box_compatible(path: Path = COMPATIBLE_FILE) -> str:
    """The image's compatible string (baked in /etc, read-only), else the default."""
    try:
        return path.read_text(encoding="utf-8").strip() or DEFAULT_COMPATIBLE
    except OSError:
        return DEFAULT_COMPATIBLE


@dataclass
class Seams:
    """Everything the updater does to the world outside its root; fakes in tests."""

    announcer: Announcer = field(default_factory=SilentAnnouncer)
    on_progress: Callable[[float], None] = lambda fraction: None
    circle_running: Callable[[], bool] = lambda: False
    restart: Callable[[str], None] = lambda kind: None
    health: Callable[[], bool] = lambda: True
    free_bytes: Callable[[Path], int] = free_bytes
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


@dataclass
class Box:
    root: Path
    trusted_keys: dict[str, Ed25519PublicKey]
    compatible: str = DEFAULT_COMPATIBLE
    limits: Limits = field(default_factory=Limits)
    seams: Seams = field(default_factory=Seams)
    ready_timeout_s: float = 30.0  # the release must report ready within this
    stay_up_s: float = 15.0  # ...and stay up this long: rollback well within a minute
    poll_s: float = 1.0
    self_test_timeout_s: float = 120.0

    def narrator(self) -> Narrator:
        return Narrator(self.seams.announcer, self.seams.on_progress, self.seams.clock)


@dataclass(frozen=True)
class Result:
    """The outcome of one bundle: what the box said, and the versions around it."""

    code: str
    bundle: str = ""
    kind: str | None = None
    version: int | None = None
    before: int | None = None
    after: int | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.code in M.NOT_FAILURES

    @property
    def message(self) -> str:
        return M.text(self.code, version=self.version if self.version is not None else "?")

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "message": self.message, "ok": self.ok}
