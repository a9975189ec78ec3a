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
STORE_NAME = "usage.sqlite"


def store_path(data_dir: Path) -> Path:
    """Where the box keeps its usage store (the runtime, the admin page and the USB export agree)."""
    return Path(data_dir) / STORE_NAME


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
        if event == "session_started":
            self._start(fields, t)
            return
        rec = self.record
        if rec is None:
            return
        if event == "step_started" and fields.get("core"):
            self._core.add(fields["step"])
        elif event == "step_finished" and fields.get("delivered"):
            rec["steps_delivered"] += 1
            if fields["step"] in self._core:
                rec["core_delivered"] += 1
        elif event == "turn_ended":
            step = rec.setdefault("_current_round", None)
            counts = self._rounds.setdefault(step or "?", {"turns": 0, "passes": 0})
            counts["turns"] += 1
            counts["passes"] += fields.get("reason") == "pass"
        elif event == "round_started":
            rec["_current_round"] = fields["step"]
            self._rounds.setdefault(fields["step"], {"turns": 0, "passes": 0})
        elif event == "repeat":
            rec["repeats"] += 1
        elif event == "paused" and fields.get("why") != "help":
            rec["pauses"] += 1
        elif event == "help":
            rec["help_count"] += 1
        elif event == "fault":
            rec["faults"] += 1
        elif event == "session_finished":
            rec["completed"] = bool(fields.get("completed"))
            rec["ended_at"] = self._wall()
        else:
            return
        rec["duration_s"] = round(t - rec["_t0"], 1)
        self._save()
        if event == "session_finished":
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


# -- exports ----------------------------------------------------------------------------------

CSV_FIELDS = (
    "id", "box", "script", "script_version", "started_at", "ended_at", "duration_s", "completed",
    "steps_planned", "steps_delivered", "core_planned", "core_delivered", "repeats", "pauses",
    "help_count", "attendance", "attendance_estimated", "clock_trusted", "turns", "passes",
)


def export_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """One line per circle; rounds folded into total turns and passes."""
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


def dhis2_settings(section: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the `dhis2` config section: org_unit and data element codes (11-char UIDs or codes)."""
    org_unit = section.get("org_unit")
    if not org_unit or not isinstance(org_unit, str):
        raise Dhis2ConfigError("dhis2.org_unit: set the facility's organisation unit code")
    elements = section.get("data_elements") or {}
    if not isinstance(elements, Mapping) or not elements:
        raise Dhis2ConfigError(f"dhis2.data_elements: map at least one of {', '.join(DHIS2_MEASURES)} to a code")
    unknown = sorted(set(elements) - set(DHIS2_MEASURES))
    if unknown:
        raise Dhis2ConfigError(f"dhis2.data_elements: unknown measure {', '.join(unknown)}")
    period_type = section.get("period_type", "monthly")
    if period_type not in ("monthly", "weekly"):
        raise Dhis2ConfigError("dhis2.period_type: monthly or weekly")
    return {
        "org_unit": org_unit, "data_elements": dict(elements), "period_type": period_type,
        "data_set": section.get("data_set"),
        "category_option_combo": section.get("category_option_combo"),
        "attribute_option_combo": section.get("attribute_option_combo"),
    }


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
    rows = store.sessions(unexported_only=True)
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
