"""Wall-clock time on a box without a real-time clock.

A Raspberry Pi has no battery clock: after a power cut it boots at the last time
fake-hwclock saved (or at the image build date) and jumps forward when NTP, if any, syncs.
So:

- durations always use `monotonic()`, never differences of wall-clock readings;
- `now()` never goes backwards by itself, not even across restarts: a high-water mark is persisted
  (atomically, at most once a minute, or on demand with `checkpoint()`) and a reading below it
  is replaced by it;
- `now()` also says whether the time can be trusted: it is not when the system clock is before
  the build date or the high-water mark, or when NTP synchronisation is unknown. Records store
  that flag so reports can tell real dates from guesses.
- `set_now(epoch, source)` takes the time from someone who knows it (the admin panel sends the
  facilitator's phone time). From then on, in this boot, readings follow that time at the
  monotonic rate and are trusted, even after the runtime restarts, until NTP synchronises
  (then the system clock is right and wins). The set is kept in the same `clock.json`.
  A set may move time back: the high-water mark restarts from the set time. Keeping the old
  mark instead would pin every later record to a time that was only ever a guess (a clock
  that booted weeks ahead would never come right), and what the mark protects against, a
  clock jumping back by itself, is not what happens when a person sets the real time.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from device.fsutil import atomic_write_text

# The earliest plausible time for this software: a clock reading before it is certainly wrong.
# The image build may overwrite it with the real build time (see `build_epoch_from_env`).
BUILD_EPOCH = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
# systemd-timesyncd creates this file once the clock has been synchronised since boot.
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")
# Changes at every boot: a set time is only valid while the monotonic clock it was tied to lives.
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
CHECKPOINT_EVERY_S = 60.0
SLACK_S = 1.0  # readings this close below the mark are rounding, not a clock jump


def ntp_synchronized(flag: Path = TIMESYNC_FLAG) -> bool:
    """True when systemd-timesyncd says the clock was synchronised in this boot."""
    return flag.exists()


def current_boot_id(path: Path = BOOT_ID) -> str:
    """The kernel's id of this boot; empty when unknown (a set then lasts only in this process)."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""


class ClockSetRefused(ValueError):
    """A time that cannot be right (before this software was built, or not a number)."""


def build_epoch_from_env(default: float = BUILD_EPOCH) -> float:
    """SOURCE_DATE_EPOCH (set by the image build) when present, else the compiled-in date."""
    raw = os.environ.get("SOURCE_DATE_EPOCH", "")
    try:
        return max(default, float(raw)) if raw else default
    except ValueError:
        return default


@dataclass(frozen=True)
class ClockReading:
    time: datetime
    trusted: bool
    reason: str  # empty when trusted; otherwise why not, for logs and the doctor


class WallClock:
    """UTC time that never goes backwards, with a trusted flag. Inject the sources in tests."""

    def __init__(
        self,
        state_path: Path,
        *,
        system_time: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        synced: Callable[[], bool] = ntp_synchronized,
        boot_id: Callable[[], str] = current_boot_id,
        build_epoch: float | None = None,
        checkpoint_every_s: float = CHECKPOINT_EVERY_S,
    ) -> None:
        self._path = Path(state_path)
        self._system_time = system_time
        self._monotonic = monotonic
        self._synced = synced
        self._build_epoch = build_epoch_from_env() if build_epoch is None else build_epoch
        self._every = checkpoint_every_s
        self._boot_id = boot_id() or f"process-{id(self)}"
        self._stored, self._set = self._load()  # the high-water mark on disk, a set time
        self._high = self._stored  # the highest time handed out (or stored)...
        self._high_mono = self._monotonic()  # ...and the monotonic time when it was reached
        self._last_save_mono: float | None = None

    def _load(self) -> tuple[float, dict | None]:
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
            high = float(data["high_water"])
        except (OSError, ValueError, KeyError, TypeError):
            # Missing or damaged state: start from nothing; the build date still bounds us.
            return 0.0, None
        mark = data.get("set") if isinstance(data, dict) else None
        try:
            mark = {"epoch": float(mark["epoch"]), "mono": float(mark["mono"]),
                    "boot_id": str(mark["boot_id"]), "source": str(mark.get("source", ""))}
        except (TypeError, KeyError, ValueError):
            return high, None
        # A set time is tied to this boot's monotonic clock; after a reboot it means nothing.
        return high, (mark if mark["boot_id"] == self._boot_id else None)

    def monotonic(self) -> float:
        """Seconds on a clock that only moves forward at a steady rate: use it for durations."""
        return self._monotonic()

    def read(self) -> ClockReading:
        system = self._system_time()
        mono = self._monotonic()
        if self._set is not None and not self._synced():
            return self._read_set(mono)
        # Below the high-water mark, time goes on at the monotonic rate from that mark, so a
        # clock that jumped back neither repeats nor freezes the times we hand out.
        floor = self._high + max(0.0, mono - self._high_mono) if self._high else 0.0
        reasons = []
        if system < self._build_epoch:
            reasons.append("system clock is before the software build date")
        if system < floor - SLACK_S:
            reasons.append("system clock is behind a time already handed out")
        if not self._synced():
            reasons.append("clock not synchronised by NTP")
        value = max(system, floor, self._build_epoch)
        self._high, self._high_mono = value, mono
        if self._last_save_mono is None or mono - self._last_save_mono >= self._every:
            self._save()
        return ClockReading(datetime.fromtimestamp(value, UTC), not reasons, "; ".join(reasons))

    def _read_set(self, mono: float) -> ClockReading:
        """The time a person set, carried on at the monotonic rate: trusted."""
        mark = self._set
        assert mark is not None
        value = mark["epoch"] + max(0.0, mono - mark["mono"])
        value = max(value, self._high + max(0.0, mono - self._high_mono))
        self._high, self._high_mono = value, mono
        if self._last_save_mono is None or mono - self._last_save_mono >= self._every:
            self._save()
        return ClockReading(datetime.fromtimestamp(value, UTC), True, "")

    def set_now(self, epoch: float, source: str) -> ClockReading:
        """Take the real time from a person (their phone): later readings follow it, trusted.

        The high-water mark restarts from `epoch`, even when that is earlier (see the module
        docstring for why). Persisted at once, so a runtime restart in this boot keeps it.
        Raises ClockSetRefused for a time before this software was built.
        """
        try:
            epoch = float(epoch)
        except (TypeError, ValueError):
            raise ClockSetRefused(f"not a time: {epoch!r}") from None
        if not math.isfinite(epoch):
            raise ClockSetRefused(f"not a time: {epoch!r}")
        if epoch < self._build_epoch:
            built = datetime.fromtimestamp(self._build_epoch, UTC).date().isoformat()
            raise ClockSetRefused(f"that time is before this software was built ({built}); "
                                  "check the phone's date")
        mono = self._monotonic()
        self._set = {"epoch": epoch, "mono": mono, "boot_id": self._boot_id, "source": str(source)[:80]}
        self._high, self._high_mono = epoch, mono
        self._save(force=True)
        return ClockReading(datetime.fromtimestamp(epoch, UTC), True, "")

    def now(self) -> tuple[datetime, bool]:
        """(UTC time, trusted?): never earlier than a time returned before, even across restarts
        (unless a person set an earlier time with `set_now`)."""
        reading = self.read()
        return reading.time, reading.trusted

    def checkpoint(self) -> None:
        """Read the clock and persist it as the high-water mark now (before a shutdown, after a
        session); `now()` does this by itself at most once a minute."""
        self.read()
        self._save()

    def _save(self, force: bool = False) -> None:
        self._last_save_mono = self._monotonic()
        if self._high <= self._stored and not force:
            return
        state: dict = {"high_water": self._high}
        if self._set is not None:
            state["set"] = self._set
        text = json.dumps(state) + "\n"
        try:
            atomic_write_text(self._path, text, mode=0o644)
        except OSError:
            # A read-only or full data partition must not stop a circle; the next
            # checkpoint tries again.
            return
        self._stored = self._high
