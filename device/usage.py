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
from dataclasses import dataclass, field
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
COLUMNS = (
    "id", "box", "script", "script_version", "started_at", "ended_at", "duration_s", "completed",
    "steps_planned", "steps_delivered", "core_planned", "core_delivered", "repeats", "pauses",
    "help_count", "attendance", "attendance_estimated", "faults", "clock_trusted", "rounds",
    "exported_at",
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


def _row_dict(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    out["rounds"] = json.loads(out["rounds"] or "[]")
    out["completed"] = bool(out["completed"])
    out["clock_trusted"] = bool(out["clock_trusted"])
    return out


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
            counts = self._rounds.setdefault(step or "?", {"turns": 0, "passes": 0})
            counts["turns"] += 1
            counts["passes"] += fields.get("reason") == "pass"
        elif event == signals.ROUND_STARTED:
            rec["_current_round"] = fields["step"]
            self._rounds.setdefault(fields["step"], {"turns": 0, "passes": 0})
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


# -- exports ----------------------------------------------------------------------------------

CSV_FIELDS = (
    "id", "box", "script", "script_version", "started_at", "ended_at", "duration_s", "completed",
    "steps_planned", "steps_delivered", "core_planned", "core_delivered", "repeats", "pauses",
    "help_count", "attendance", "attendance_estimated", "clock_trusted", "turns", "passes", "test",
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
        })
    return out.getvalue()


# DHIS2: what each data element code counts, summed over the circles in a period.
DHIS2_MEASURES: dict[str, Callable[[Mapping[str, Any]], int]] = {
    "sessions": lambda r: 1,
    "sessions_completed": lambda r: int(bool(r.get("completed"))),
    "attendance": lambda r: int(r.get("attendance") if r.get("attendance") is not None
                                else r.get("attendance_estimated") or 0),
    "core_steps_planned": lambda r: int(r.get("core_planned") or 0),
    "core_steps_delivered": lambda r: int(r.get("core_delivered") or 0),
    "help_presses": lambda r: int(r.get("help_count") or 0),
    "minutes": lambda r: round((r.get("duration_s") or 0) / 60),
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


def dhis2_data_values(rows: Iterable[Mapping[str, Any]], settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        period = _period(row["started_at"], settings["period_type"])
        for measure, code in settings["data_elements"].items():
            totals[(period, code)] += DHIS2_MEASURES[measure](row)
    values = []
    for (period, code), value in sorted(totals.items()):
        item: dict[str, Any] = {"dataElement": code, "period": period, "orgUnit": settings["org_unit"],
                                "value": str(value)}
        if settings.get("category_option_combo"):
            item["categoryOptionCombo"] = settings["category_option_combo"]
        if settings.get("attribute_option_combo"):
            item["attributeOptionCombo"] = settings["attribute_option_combo"]
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
