"""Where a course stands: which meeting of its plan the box plays next, safe across power cuts.

One small JSON file per course (`DataFolder.course_position`), written only by the runtime
(atomically, fsync'd: a cut leaves the old position or the new one, never half of either) and
read by the admin page, the doctor and `simulate`. A missing or unreadable file means "the
start of the course", with a fault line that says so; it never stops the box.

The advance rule lives here once (`CourseAdvance`, a sink on the engine's log events): a
session of the course that ends completed, or stopped after all its core steps were delivered,
moves the position to the meeting after it. A Start/Stop to test the box does not, and a
rehearsal never does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from device import signals
from device.datafolder import DataFolder, data_folder
from device.fsutil import atomic_write_text

log = logging.getLogger("circlebox.course")
WallNow = Callable[[], tuple[datetime, bool]]
MAX_HELD = 500  # a course of 16 meetings run many times over still fits; older entries drop


def _system_now() -> tuple[datetime, bool]:
    return datetime.now(UTC), True


@dataclass
class CoursePosition:
    """The stored position of one course: `position` is the index into its plan of the
    meeting played next (== len(plan) once the course is finished)."""

    course: str
    course_version: int
    position: int = 0
    held: list[dict[str, Any]] = field(default_factory=list)  # {index, started_at, completed}
    updated_at: str | None = None

    def to_json(self) -> str:
        return json.dumps({"course": self.course, "course_version": self.course_version,
                           "position": self.position, "held": self.held, "updated_at": self.updated_at},
                          indent=1) + "\n"

    def held_indexes(self) -> set[int]:
        return {int(h["index"]) for h in self.held}


@dataclass(frozen=True)
class PositionReading:
    """A position as read, with what a person must know about it (plain words, or None)."""

    position: CoursePosition
    fault: str | None = None
    note: str | None = None  # not a fault: e.g. the course changed and the position was kept


def read_position(data: Path | DataFolder, course: Any) -> PositionReading:
    """The stored position of `course` (a device.course.Course), checked against its plan.

    Missing: the start (no fault: the course has not begun). Unreadable: the start, and a fault.
    Written for another version of the course: kept if still inside the new plan, else moved to
    its end (finished), and a note says which.
    """
    path = data_folder(data).course_position(course.course)
    plan_length = len(course.plan())
    fresh = CoursePosition(course.course, course.version)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return PositionReading(fresh)
    except OSError as exc:
        return PositionReading(fresh, f"cannot read where course '{course.course}' stands ({path}: "
                                      f"{exc.strerror}); starting again at session 1")
    try:
        stored = _parse(raw, course.course)
    except ValueError as exc:
        return PositionReading(fresh, f"the file saying where course '{course.course}' stands is damaged "
                                      f"({path}: {exc}); starting again at session 1")
    note = None
    if stored.course_version != course.version:
        if stored.position > plan_length:
            note = (f"course '{course.course}' changed from version {stored.course_version} to "
                    f"{course.version} and now has {plan_length} meetings; it was at meeting "
                    f"{stored.position + 1}, so it now stands at its end (finished)")
            stored.position = plan_length
        else:
            note = (f"course '{course.course}' changed from version {stored.course_version} to "
                    f"{course.version}; it stays at meeting {stored.position + 1} of {plan_length}")
        stored.course_version = course.version
    elif stored.position > plan_length:
        stored.position = plan_length
    return PositionReading(stored, None, note)


def _parse(raw: str, course_id: str) -> CoursePosition:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    position, version = data.get("position"), data.get("course_version")
    if not isinstance(position, int) or isinstance(position, bool) or position < 0:
        raise ValueError("position is not a whole number >= 0")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError("course_version is not a whole number")
    if data.get("course") != course_id:
        raise ValueError(f"it is for course {data.get('course')!r}")
    held = data.get("held", [])
    if not isinstance(held, list) or not all(
            isinstance(h, dict) and isinstance(h.get("index"), int) for h in held):
        raise ValueError("held is not a list of meetings")
    updated = data.get("updated_at")
    return CoursePosition(course_id, version, position, held[-MAX_HELD:],
                          updated if isinstance(updated, str) else None)


def write_position(data: Path | DataFolder, position: CoursePosition) -> None:
    """Atomic, fsync'd (device.fsutil): a power cut keeps the old file or the new one."""
    atomic_write_text(data_folder(data).course_position(position.course), position.to_json())


class PositionStore:
    """One course's position as the runtime (or `simulate`) keeps it: read once, written on each
    change. `data` None keeps it in memory only (a simulation of a course from its start)."""

    def __init__(self, course: Any, data: Path | DataFolder | None, wall_now: WallNow = _system_now) -> None:
        self.course = course
        self.data = data_folder(data) if data is not None else None
        self.wall_now = wall_now
        if self.data is not None:
            reading = read_position(self.data, course)
        else:
            reading = PositionReading(CoursePosition(course.course, course.version))
        self.current = reading.position
        self.fault = reading.fault
        self.note = reading.note
        if reading.note is not None and self.data is not None:
            self._save()  # the version the note speaks of is now the one on file

    @property
    def position(self) -> int:
        return self.current.position

    @property
    def finished(self) -> bool:
        return self.current.position >= len(self.course.plan())

    def _stamp(self) -> str:
        now, _trusted = self.wall_now()
        return now.isoformat(timespec="seconds")

    def _save(self) -> None:
        self.current.updated_at = self._stamp()
        if self.data is not None:
            write_position(self.data, self.current)
        self.fault = None

    def choose(self, index: int) -> None:
        """The facilitator chose another meeting (between circles)."""
        length = len(self.course.plan())
        if not 0 <= index < length:
            raise ValueError(f"there is no meeting {index + 1}: course '{self.course.course}' has "
                             f"{length} meetings (1 to {length})")
        self.current.position = index
        self._save()

    def held(self, index: int, started_at: str | None, completed: bool) -> None:
        """A session of meeting `index` counted as held: the course moves to the one after it."""
        self.current.held = [*self.current.held, {"index": index, "started_at": started_at,
                                                  "completed": completed}][-MAX_HELD:]
        self.current.position = min(index + 1, len(self.course.plan()))
        self._save()


class CourseAdvance:
    """A log sink: moves the course on when one of its sessions counts as held.

    Counts: a non-rehearsal session whose `session_started` names this course and a plan index,
    ending completed, or stopped once every core step was delivered (a circle with no core
    step counts only when completed, so a Start/Stop never moves the course).
    `on_advance(position)` runs after the new position is on disk.
    """

    def __init__(self, store: PositionStore, on_advance: Callable[[int], None] | None = None) -> None:
        self.store = store
        self.on_advance = on_advance
        self._session: dict[str, Any] | None = None
        self._core: set[str] = set()
        self._core_delivered: set[str] = set()

    def on_log(self, event: str, fields: Mapping[str, Any], t: float) -> None:
        if event == signals.SESSION_STARTED:
            ours = (not fields.get("rehearsal") and fields.get("course") == self.store.course.course
                    and isinstance(fields.get("course_position"), int))
            self._session = dict(fields, started_at=self.store._stamp()) if ours else None
            self._core, self._core_delivered = set(), set()
            return
        session = self._session
        if session is None:
            return
        if event == signals.STEP_STARTED and fields.get("core"):
            self._core.add(str(fields.get("step")))
        elif event == signals.STEP_FINISHED and fields.get("delivered") and fields.get("step") in self._core:
            self._core_delivered.add(str(fields["step"]))
        elif event == signals.SESSION_FINISHED:
            self._session = None
            if fields.get("rehearsal"):
                return
            completed = bool(fields.get("completed"))
            core_steps = int(session.get("core_steps") or 0)
            if not completed and not (core_steps and len(self._core_delivered) >= core_steps):
                log.info("course %s: meeting %s not counted as held (stopped before its core steps)",
                         self.store.course.course, session["course_position"] + 1)
                return
            self.store.held(session["course_position"], session.get("started_at"), completed)
            log.info("course %s: now at meeting %s", self.store.course.course, self.store.position + 1)
            if self.on_advance is not None:
                self.on_advance(self.store.position)


__all__ = ["CourseAdvance", "CoursePosition", "PositionReading", "PositionStore", "read_position",
           "write_position"]
