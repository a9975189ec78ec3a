"""The usage store: one anonymous record per circle, in SQLite (WAL), and its exports.

What is kept is what a programme manager reports: counts and durations. Never names, never
audio, never per-person speaking times. The record is written at the start of a circle and
updated as it goes, so a power cut loses at most the last step, and an ended circle is never lost.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from device import signals

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    box TEXT NOT NULL,
    script TEXT NOT NULL,
    script_version INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    duration_s REAL NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0,
    steps_planned INTEGER NOT NULL,
    steps_delivered INTEGER NOT NULL DEFAULT 0,
    core_planned INTEGER NOT NULL,
    core_delivered INTEGER NOT NULL DEFAULT 0,
    repeats INTEGER NOT NULL DEFAULT 0,
    pauses INTEGER NOT NULL DEFAULT 0,
    help_count INTEGER NOT NULL DEFAULT 0,
    attendance INTEGER,
    attendance_estimated INTEGER NOT NULL DEFAULT 0,
    faults INTEGER NOT NULL DEFAULT 0,
    clock_trusted INTEGER NOT NULL DEFAULT 1,
    rounds TEXT NOT NULL DEFAULT '[]',
    exported_at TEXT
);
CREATE INDEX IF NOT EXISTS sessions_started ON sessions (started_at);
"""
# Where a circle stands in a course (device.course): added after the first stores were made, so
# `UsageStore` adds any that an older store lacks (ALTER TABLE ADD COLUMN keeps every row).
# Null for a circle played outside a course.
COURSE_COLUMNS: dict[str, str] = {
    "course": "TEXT",
    "course_version": "INTEGER",
    "course_position": "INTEGER",  # index into the course's plan (0-based)
    "session_number": "INTEGER",  # 1-based; null for a bus-stop meeting
    "sessions_total": "INTEGER",
    "bus_stop": "INTEGER NOT NULL DEFAULT 0",
}
COLUMNS = (
    "id", "box", "script", "script_version", "started_at", "ended_at", "duration_s", "completed",
    "steps_planned", "steps_delivered", "core_planned", "core_delivered", "repeats", "pauses",
    "help_count", "attendance", "attendance_estimated", "faults", "clock_trusted", "rounds",
    "exported_at", *COURSE_COLUMNS,
)
WallNow = Callable[[], tuple[datetime, bool]]


def store_path(data_dir: Path) -> Path:
    """Where the box keeps its usage store (`DataFolder.usage`: the runtime, the admin page and
    the USB export agree)."""
    from device.datafolder import DataFolder

    return DataFolder(data_dir).usage


def system_wall_now() -> tuple[datetime, bool]:
    return datetime.now(UTC), True


class UsageStore:
    """SQLite with WAL and full sync: cheap here (a few writes per step) and power-cut safe."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            self.path.parent.mkdir(parents=True)
        self._db = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """Bring a store made by an older version up to date, in one transaction (the runtime and
        the admin page may open it at the same moment: the second one finds nothing to add)."""
        if set(COURSE_COLUMNS) <= self._columns():
            return  # the usual case: no write lock taken just to look
        self._db.execute("BEGIN IMMEDIATE")
        try:
            have = self._columns()
            for name, kind in COURSE_COLUMNS.items():
                if name not in have:
                    self._db.execute(f"ALTER TABLE sessions ADD COLUMN {name} {kind}")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _columns(self) -> set[str]:
        return {row[1] for row in self._db.execute("PRAGMA table_info(sessions)")}

    def close(self) -> None:
        self._db.close()

    def upsert(self, record: Mapping[str, Any]) -> None:
        row = {k: record.get(k) for k in COLUMNS if k in record}
        row["rounds"] = json.dumps(record.get("rounds", []))
        names = ", ".join(row)
        marks = ", ".join(f":{k}" for k in row)
        updates = ", ".join(f"{k}=excluded.{k}" for k in row if k != "id")
        self._db.execute(
            f"INSERT INTO sessions ({names}) VALUES ({marks}) ON CONFLICT(id) DO UPDATE SET {updates}",
            row,
        )

    def set_attendance(self, session_id: str, count: int) -> None:
        if not 0 <= count <= 500:
            raise ValueError("attendance must be between 0 and 500")
        cur = self._db.execute("UPDATE sessions SET attendance=? WHERE id=?", (count, session_id))
        if cur.rowcount == 0:
            raise KeyError(session_id)

    def delete(self, session_id: str) -> None:
        """Remove one circle's record (a test run, a mistake); KeyError when it is not there."""
        cur = self._db.execute("DELETE FROM sessions WHERE id=?", (session_id,))
        if cur.rowcount == 0:
            raise KeyError(session_id)

    def sessions(self, since: str | None = None, limit: int | None = None,
                 unexported_only: bool = False) -> list[dict[str, Any]]:
        """Newest first. `since` is an ISO date(time); rows are plain dicts with `rounds` a list."""
        where, args = [], []
        if since:
            where.append("started_at >= ?")
            args.append(since)
        if unexported_only:
            where.append("exported_at IS NULL")
        sql = "SELECT * FROM sessions" + (f" WHERE {' AND '.join(where)}" if where else "")
        sql += " ORDER BY started_at DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [_row_dict(r) for r in self._db.execute(sql, args)]

    def mark_exported(self, ids: Iterable[str], when: str | None = None) -> int:
        when = when or datetime.now(UTC).isoformat(timespec="seconds")
        ids = list(ids)
        self._db.execute("BEGIN")
        for sid in ids:
            self._db.execute("UPDATE sessions SET exported_at=? WHERE id=?", (when, sid))
        self._db.execute("COMMIT")
        return len(ids)


def _round_counts() -> dict[str, int]:
    """A round's counts: its turns, the passes among them, the turns the box paced by listening
    and, of those, the ones whose voice it did not hear clearly (it left their end to the
    facilitator's NEXT: the box was too far from that seat or the room too noisy). Counts only:
    never which turn or who."""
    return {"turns": 0, "passes": 0, "listened": 0, "left_to_facilitator": 0}


@dataclass(frozen=True)
class Hearing:
    """How well the box heard a circle's speakers, from its rounds' counts: the usage page and
    the CSV export read it here."""

    listened: int  # turns the box paced by listening
    left_to_facilitator: int  # of those, turns whose voice it did not hear clearly
    counted: bool = True  # False: no round, or recorded before the box counted these

    @property
    def heard_clearly(self) -> int:
        return self.listened - self.left_to_facilitator


def hearing_of(row: Mapping[str, Any]) -> Hearing:
    """The circle's hearing counts: zero turns listened for a circle paced by the buttons, and
    not `counted` for one without a round or recorded before the box counted them."""
    rounds = [r for r in row.get("rounds") or [] if isinstance(r, Mapping)]
    return Hearing(listened=sum(_whole_or_none(r.get("listened")) or 0 for r in rounds),
                   left_to_facilitator=sum(_whole_or_none(r.get("left_to_facilitator")) or 0
                                           for r in rounds),
                   counted=any("listened" in r for r in rounds))


def _row_dict(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    out["rounds"] = json.loads(out["rounds"] or "[]")
    out["completed"] = bool(out["completed"])
    out["clock_trusted"] = bool(out["clock_trusted"])
    out["bus_stop"] = bool(out.get("bus_stop"))
    return out


def course_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The course columns from a `session_started` event (device.engine: `course`,
    `course_version`, `course_position`, `session`, `sessions_total`, `bus_stop`); all empty
    for a circle played outside a course."""
    course = fields.get("course")
    if not course:
        return {"course": None, "course_version": None, "course_position": None,
                "session_number": None, "sessions_total": None, "bus_stop": False}
    bus_stop = bool(fields.get("bus_stop"))
    return {
        "course": str(course),
        "course_version": _whole_or_none(fields.get("course_version")),
        "course_position": _whole_or_none(fields.get("course_position")),
        "session_number": None if bus_stop else _whole_or_none(fields.get("session")),
        "sessions_total": _whole_or_none(fields.get("sessions_total")),
        "bus_stop": bus_stop,
    }


def _whole_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass
class SessionTally:
    """Turns the engine's log events into the session record, and saves it as it changes."""

    store: UsageStore | None
    box: str
    wall_now: WallNow = system_wall_now
    record: dict[str, Any] | None = None
    _rounds: dict[str, dict[str, int]] = field(default_factory=dict)
    _core: set[str] = field(default_factory=set)

    def on_log(self, event: str, fields: Mapping[str, Any], t: float) -> None:
        if event == signals.SESSION_STARTED:
            if fields.get("rehearsal"):
                # practice is not a circle held: nothing is recorded until the next real circle
                # (device.training_log keeps rehearsals, counts only)
                self.record = None
                return
            self._start(fields, t)
            return
        rec = self.record
        if rec is None:
            return
        if event == signals.STEP_STARTED and fields.get("core"):
            self._core.add(fields["step"])
        elif event == signals.STEP_FINISHED and fields.get("delivered"):
            rec["steps_delivered"] += 1
            if fields["step"] in self._core:
                rec["core_delivered"] += 1
        elif event == signals.TURN_ENDED:
            step = rec.setdefault("_current_round", None)
            counts = self._rounds.setdefault(step or "?", _round_counts())
            counts["turns"] += 1
            counts["passes"] += fields.get("reason") == "pass"
            counts["listened"] += bool(fields.get("listened"))
            counts["left_to_facilitator"] += bool(fields.get("left_to_facilitator"))
        elif event == signals.ROUND_STARTED:
            rec["_current_round"] = fields["step"]
            self._rounds.setdefault(fields["step"], _round_counts())
        elif event == signals.REPEAT:
            rec["repeats"] += 1
        elif event == signals.PAUSED and fields.get("why") != "help":
            rec["pauses"] += 1
        elif event == signals.HELP:
            rec["help_count"] += 1
        elif event == signals.FAULT:
            rec["faults"] += 1
        elif event == signals.SESSION_FINISHED:
            rec["completed"] = bool(fields.get("completed"))
            rec["ended_at"] = self._wall()
        else:
            return
        rec["duration_s"] = round(t - rec["_t0"], 1)
        self._save()
        if event == signals.SESSION_FINISHED:
            self.record = None

    def _start(self, fields: Mapping[str, Any], t: float) -> None:
        self._rounds = {}
        self._core = set()
        self.record = {
            "id": str(uuid.uuid4()), "box": self.box, "script": fields["script"],
            "script_version": fields["version"], "started_at": self._wall(), "ended_at": None,
            "duration_s": 0.0, "completed": False, "steps_planned": fields["steps"],
            "steps_delivered": 0, "core_planned": fields["core_steps"], "core_delivered": 0,
            "repeats": 0, "pauses": 0, "help_count": 0, "faults": 0, "_t0": t,
            **course_fields(fields),
        }
        self._save()

    def _wall(self) -> str:
        now, trusted = self.wall_now()
        if not trusted and self.record is not None:
            self.record["clock_trusted"] = False
        self._trusted = trusted
        return now.isoformat(timespec="seconds")

    def _save(self) -> None:
        rec = self.record
        if rec is None or self.store is None:
            return
        rounds = [{"step": s, **c} for s, c in self._rounds.items()]
        out = {k: v for k, v in rec.items() if not k.startswith("_")}
        out["rounds"] = rounds
        out["attendance_estimated"] = max((r["turns"] - r["passes"] for r in rounds), default=0)
        out["clock_trusted"] = rec.get("clock_trusted", getattr(self, "_trusted", True))
        self.store.upsert(out)


# -- test runs ----------------------------------------------------------------------------------

# A Start/Stop to try the box is not a circle held: records shorter than this many minutes
# (config `dhis2.min_circle_minutes`), or with no core step delivered, are kept but marked
# "test" and left out of totals and exports unless someone asks for them.
def default_min_circle_minutes() -> float:
    """The package default (device/defaults.yaml, dhis2.min_circle_minutes): its one home."""
    from device.config import package_defaults

    return float(package_defaults()["dhis2"]["min_circle_minutes"])


def min_circle_minutes(section: Any) -> float:
    """The configured minimum from the dhis2 section (a mapping or a model), else the default."""
    raw = (section.get("min_circle_minutes") if isinstance(section, Mapping)
           else getattr(section, "min_circle_minutes", None))
    try:
        value = float(raw) if raw is not None else default_min_circle_minutes()
    except (TypeError, ValueError):
        return default_min_circle_minutes()
    return value if value >= 0 else default_min_circle_minutes()


def why_a_test_run(row: Mapping[str, Any], min_minutes: float) -> str | None:
    """Why a record looks like a test run rather than a circle held; None for a real circle."""
    if float(row.get("duration_s") or 0) < min_minutes * 60:
        return f"shorter than {min_minutes:g} minutes"
    if int(row.get("core_planned") or 0) > 0:
        if not int(row.get("core_delivered") or 0):
            return "no core step delivered"
    elif not int(row.get("steps_delivered") or 0):
        return "no step delivered"
    return None


def report_rows(rows: Iterable[Mapping[str, Any]], min_minutes: float,
                include_tests: bool = False) -> list[dict[str, Any]]:
    """The records a report counts: each marked with `test_reason`; test runs dropped unless
    `include_tests`. Every total and export (page, CSV, DHIS2, USB) goes through this."""
    out = []
    for row in rows:
        marked = {**row, "test_reason": why_a_test_run(row, min_minutes)}
        if include_tests or marked["test_reason"] is None:
            out.append(marked)
    return out


def attendance_of(row: Mapping[str, Any]) -> int:
    """People at a circle: the facilitator's count, else the box's estimate from the turns.
    The one rule for the page, the course summaries and DHIS2."""
    if row.get("attendance") is not None:
        return int(row["attendance"])
    return int(row.get("attendance_estimated") or 0)


# -- courses ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CourseMeeting:
    """One meeting of a course's plan that was held (its latest record when held again)."""

    position: int | None  # index into the plan; None in a record that did not say
    number: int | None  # the session number; None for a bus stop
    bus_stop: bool
    after: int | None  # a bus stop: the session before it, as far as the records tell
    times_held: int
    started_at: str
    people: int
    people_counted: bool  # True: the facilitator's count; False: the box's estimate
    core_planned: int
    core_delivered: int
    completed: bool


@dataclass(frozen=True)
class CourseSummary:
    """Where one course stands, from the usage records alone (the page, the course CSV)."""

    course: str
    course_version: int | None  # of its latest record
    sessions_total: int  # sessions planned (bus stops not counted), as its latest record says
    meetings: tuple[CourseMeeting, ...]  # held, in plan order
    first_held: str
    last_held: str

    @property
    def sessions(self) -> tuple[CourseMeeting, ...]:
        return tuple(m for m in self.meetings if not m.bus_stop)

    @property
    def sessions_held(self) -> int:
        return len(self.sessions)

    @property
    def bus_stops_passed(self) -> int:
        return sum(1 for m in self.meetings if m.bus_stop)

    @property
    def sessions_not_held(self) -> list[int]:
        held = {m.number for m in self.sessions}
        return [n for n in range(1, self.sessions_total + 1) if n not in held]

    @property
    def core_planned(self) -> int:
        return sum(m.core_planned for m in self.meetings)

    @property
    def core_delivered(self) -> int:
        return sum(m.core_delivered for m in self.meetings)

    @property
    def attendance_trend(self) -> list[tuple[int, int]]:
        """(session number, people) for each session held, in order."""
        return [(m.number, m.people) for m in self.sessions if m.number is not None]


def course_summaries(rows: Iterable[Mapping[str, Any]]) -> list[CourseSummary]:
    """Per course: sessions held against planned, core steps per session, attendance across
    sessions, bus stops passed. Give it `report_rows` (test runs left out, as every total).
    A session held twice counts once (its latest record shows); the latest course first."""
    by_course: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        if row.get("course"):
            by_course[str(row["course"])].append(row)
    summaries = []
    for course, records in by_course.items():
        records.sort(key=lambda r: str(r.get("started_at") or ""))
        latest = records[-1]
        held: dict[tuple[str, int | None], list[Mapping[str, Any]]] = defaultdict(list)
        for row in records:
            key = ("bus", row.get("course_position")) if row.get("bus_stop") else ("session", row.get("session_number"))
            held[key].append(row)
        meetings = sorted((_meeting(group) for group in held.values()), key=_plan_order)
        meetings = [_with_after(m, meetings) for m in meetings]
        summaries.append(CourseSummary(
            course=course,
            course_version=latest.get("course_version"),
            sessions_total=int(latest.get("sessions_total") or 0),
            meetings=tuple(meetings),
            first_held=str(records[0].get("started_at") or ""),
            last_held=str(latest.get("started_at") or ""),
        ))
    summaries.sort(key=lambda c: c.last_held, reverse=True)
    return summaries


def _meeting(group: list[Mapping[str, Any]]) -> CourseMeeting:
    row = group[-1]  # the latest time this meeting was held
    return CourseMeeting(
        position=row.get("course_position"),
        number=row.get("session_number"),
        bus_stop=bool(row.get("bus_stop")),
        after=None,
        times_held=len(group),
        started_at=str(row.get("started_at") or ""),
        people=attendance_of(row),
        people_counted=row.get("attendance") is not None,
        core_planned=int(row.get("core_planned") or 0),
        core_delivered=int(row.get("core_delivered") or 0),
        completed=bool(row.get("completed")),
    )


def _plan_order(meeting: CourseMeeting) -> tuple[int, int]:
    if meeting.position is not None:
        return (meeting.position, 0)
    return (10_000 + (meeting.number or 0), 0)


def _with_after(meeting: CourseMeeting, meetings: list[CourseMeeting]) -> CourseMeeting:
    if not meeting.bus_stop or meeting.position is None:
        return meeting
    before = [m.number for m in meetings
              if m.number is not None and m.position is not None and m.position < meeting.position]
    return replace(meeting, after=max(before, default=None))


COURSE_CSV_FIELDS = (
    "course", "course_version", "sessions_planned", "sessions_held", "sessions_not_held",
    "bus_stops_passed", "first_held", "last_held", "core_steps_planned", "core_steps_delivered",
    "attendance_first", "attendance_latest", "attendance_by_session",
)


def export_course_csv(summaries: Iterable[CourseSummary]) -> str:
    """One line per course. `attendance_by_session` is "session:people" pairs ("1:12 2:11");
    `sessions_not_held` the planned session numbers with no record ("4 5")."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COURSE_CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for c in summaries:
        trend = c.attendance_trend
        writer.writerow({
            "course": c.course, "course_version": c.course_version,
            "sessions_planned": c.sessions_total, "sessions_held": c.sessions_held,
            "sessions_not_held": " ".join(str(n) for n in c.sessions_not_held),
            "bus_stops_passed": c.bus_stops_passed, "first_held": c.first_held,
            "last_held": c.last_held, "core_steps_planned": c.core_planned,
            "core_steps_delivered": c.core_delivered,
            "attendance_first": trend[0][1] if trend else "",
            "attendance_latest": trend[-1][1] if trend else "",
            "attendance_by_session": " ".join(f"{n}:{people}" for n, people in trend),
        })
    return out.getvalue()


# -- exports ----------------------------------------------------------------------------------

CSV_FIELDS = (
    "id", "box", "script", "script_version", "started_at", "ended_at", "duration_s", "completed",
    "steps_planned", "steps_delivered", "core_planned", "core_delivered", "repeats", "pauses",
    "help_count", "attendance", "attendance_estimated", "clock_trusted", "turns", "passes", "test",
    "course", "course_version", "session_number", "sessions_total", "bus_stop",
    "turns_listened", "turns_left_to_facilitator",
)


def export_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """One line per circle; rounds folded into total turns and passes. `test` is 1 for a test
    run (only there when the caller asked `report_rows` to include them)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        rounds = row.get("rounds") or []
        writer.writerow({
            **row,
            "completed": int(bool(row.get("completed"))),
            "clock_trusted": int(bool(row.get("clock_trusted"))),
            "turns": sum(r.get("turns", 0) for r in rounds),
            "passes": sum(r.get("passes", 0) for r in rounds),
            "test": int(bool(row.get("test_reason"))),
            "bus_stop": int(bool(row.get("bus_stop"))) if row.get("course") else "",
            **_hearing_columns(hearing_of(row)),
        })
    return out.getvalue()


def _hearing_columns(hearing: Hearing) -> dict[str, int | str]:
    """Blank for a circle recorded before the box counted how well it heard."""
    if not hearing.counted:
        return {"turns_listened": "", "turns_left_to_facilitator": ""}
    return {"turns_listened": hearing.listened,
            "turns_left_to_facilitator": hearing.left_to_facilitator}


def _course_session(row: Mapping[str, Any]) -> bool:
    return bool(row.get("course")) and not row.get("bus_stop")


# DHIS2: what each data element code counts, summed over the circles in a period. The course
# measures are counts too (aggregate data is summed per period and org unit): a session number
# is not a measure (a sum of session numbers means nothing); which course a circle belongs to is
# its attribute option combo (`dhis2.courses`), so every measure splits by course in DHIS2.
DHIS2_MEASURES: dict[str, Callable[[Mapping[str, Any]], int]] = {
    "sessions": lambda r: 1,
    "sessions_completed": lambda r: int(bool(r.get("completed"))),
    "attendance": attendance_of,
    "core_steps_planned": lambda r: int(r.get("core_planned") or 0),
    "core_steps_delivered": lambda r: int(r.get("core_delivered") or 0),
    "help_presses": lambda r: int(r.get("help_count") or 0),
    "minutes": lambda r: round((r.get("duration_s") or 0) / 60),
    "course_sessions": lambda r: int(_course_session(r)),
    "bus_stops": lambda r: int(bool(r.get("course")) and bool(r.get("bus_stop"))),
    "courses_finished": lambda r: int(_course_session(r) and r.get("session_number") is not None
                                      and r.get("session_number") == r.get("sessions_total")),
}


class Dhis2ConfigError(ValueError):
    """The DHIS2 codes are missing or malformed; the message names the key."""


def _period(started_at: str, period_type: str) -> str:
    when = datetime.fromisoformat(started_at)
    if period_type == "weekly":
        year, week, _ = when.isocalendar()
        return f"{year}W{week}"
    return when.strftime("%Y%m")


def dhis2_settings(section: Any) -> dict[str, Any]:
    """The `dhis2` section (`config.dhis2`, or a mapping over the defaults) checked by its model,
    `device.config_sections.Dhis2Section`, and complete enough to export."""
    from device.config import ConfigError, section_model
    from device.config_sections import Dhis2Section

    try:
        codes = section if isinstance(section, Dhis2Section) else section_model("dhis2", section)
    except ConfigError as exc:
        raise Dhis2ConfigError("; ".join(f"{k}: {m}" for k, m in exc.problems) or str(exc)) from exc
    missing = codes.missing_for_export()
    if missing:
        raise Dhis2ConfigError(missing)
    return codes.model_dump()


def dhis2_attribute_option_combo(row: Mapping[str, Any], settings: Mapping[str, Any]) -> str:
    """The attribute option combo of a circle: its course's (`dhis2.courses`), else the default
    one (`dhis2.attribute_option_combo`), else "" (DHIS2's default)."""
    courses = settings.get("courses") or {}
    return courses.get(row.get("course") or "") or settings.get("attribute_option_combo") or ""


def dhis2_data_values(rows: Iterable[Mapping[str, Any]], settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    totals: dict[tuple[str, str, str], int] = defaultdict(int)
    for row in rows:
        period = _period(row["started_at"], settings["period_type"])
        combo = dhis2_attribute_option_combo(row, settings)
        for measure, code in settings["data_elements"].items():
            totals[(period, code, combo)] += DHIS2_MEASURES[measure](row)
    values = []
    for (period, code, combo), value in sorted(totals.items()):
        item: dict[str, Any] = {"dataElement": code, "period": period, "orgUnit": settings["org_unit"],
                                "value": str(value)}
        if settings.get("category_option_combo"):
            item["categoryOptionCombo"] = settings["category_option_combo"]
        if combo:
            item["attributeOptionCombo"] = combo
        values.append(item)
    return values


def dhis2_data_value_set(rows: Iterable[Mapping[str, Any]], section: Mapping[str, Any]) -> dict[str, Any]:
    """A DHIS2 dataValueSets JSON payload (POST /api/dataValueSets, or import in the web app)."""
    settings = dhis2_settings(section)
    body: dict[str, Any] = {"dataValues": dhis2_data_values(rows, settings)}
    if settings.get("data_set"):
        body = {"dataSet": settings["data_set"], **body}
    return body


def dhis2_csv(rows: Iterable[Mapping[str, Any]], section: Mapping[str, Any]) -> str:
    """DHIS2's CSV data value format (dataelement, period, orgunit, catoptcombo, attroptcombo, value)."""
    settings = dhis2_settings(section)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["dataelement", "period", "orgunit", "categoryoptioncombo", "attributeoptioncombo", "value"])
    for v in dhis2_data_values(rows, settings):
        writer.writerow([v["dataElement"], v["period"], v["orgUnit"], v.get("categoryOptionCombo", ""),
                         v.get("attributeOptionCombo", ""), v["value"]])
    return out.getvalue()


def export_since_last(store: UsageStore, dest_dir: Path, dhis2_section: Mapping[str, Any],
                      box: str) -> tuple[list[Path], list[str]]:
    """Write the circles not yet exported as CSV (and DHIS2 JSON when codes are configured).

    Returns the files written and the session ids they hold. The caller marks the ids exported
    only after reading the copies back and checking them (a stick can lie about a write).
    """
    # test runs are left out (and so stay unexported: a later export judges them again)
    rows = report_rows(store.sessions(unexported_only=True), min_circle_minutes(dhis2_section))
    dest_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    files = [dest_dir / f"usage-{box}-{stamp}.csv"]
    files[0].write_text(export_csv(rows), encoding="utf-8")
    try:
        body = dhis2_data_value_set(rows, dhis2_section)
    except Dhis2ConfigError:
        body = None  # no codes configured: the CSV still carries everything
    if body is not None:
        files.append(dest_dir / f"dhis2-{box}-{stamp}.json")
        files[1].write_text(json.dumps(body, indent=2), encoding="utf-8")
    return files, [r["id"] for r in rows]
