"""The training log: one record per rehearsal, in SQLite (WAL), and its CSV export.

A trainer wants to know which circles and steps a facilitator has practised, and when. That is
all it keeps: the circle and its version, when the rehearsal started and ended, whether it was
walked to the end, the ids of the steps practised and how many facilitator notes were heard.
Never names, never audio. Rehearsals are never circles held: they live here, not in the usage
store (device.usage), so no report or export of circles held can count one.

The record is written when the rehearsal starts and updated at each step, like a usage record,
so a power cut loses at most the step under way.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device import signals
from device.usage import WallNow, system_wall_now

SCHEMA = """
CREATE TABLE IF NOT EXISTS rehearsals (
    id TEXT PRIMARY KEY,
    box TEXT NOT NULL,
    circle TEXT NOT NULL,
    circle_version INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    duration_s REAL NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0,
    steps_total INTEGER NOT NULL,
    steps_practised TEXT NOT NULL DEFAULT '[]',
    notes_heard INTEGER NOT NULL DEFAULT 0,
    clock_trusted INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS rehearsals_started ON rehearsals (started_at);
"""
COLUMNS = (
    "id", "box", "circle", "circle_version", "started_at", "ended_at", "duration_s", "completed",
    "steps_total", "steps_practised", "notes_heard", "clock_trusted",
)


class TrainingLog:
    """SQLite with WAL and full sync (a few writes per rehearsal step): power-cut safe."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def upsert(self, record: Mapping[str, Any]) -> None:
        row = {k: record[k] for k in COLUMNS if k in record}
        if "steps_practised" in row:
            row["steps_practised"] = json.dumps(list(row["steps_practised"]))
        names = ", ".join(row)
        marks = ", ".join(f":{k}" for k in row)
        updates = ", ".join(f"{k}=excluded.{k}" for k in row if k != "id")
        self._db.execute(
            f"INSERT INTO rehearsals ({names}) VALUES ({marks}) ON CONFLICT(id) DO UPDATE SET {updates}", row)

    def rehearsals(self, since: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Newest first. `since` is an ISO date(time); `steps_practised` is a list of step ids."""
        sql, args = "SELECT * FROM rehearsals", []
        if since:
            sql += " WHERE started_at >= ?"
            args.append(since)
        sql += " ORDER BY started_at DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [_row_dict(r) for r in self._db.execute(sql, args)]


def _row_dict(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    out["steps_practised"] = json.loads(out["steps_practised"] or "[]")
    out["completed"] = bool(out["completed"])
    out["clock_trusted"] = bool(out["clock_trusted"])
    return out


@dataclass
class TrainingTally:
    """Turns the engine's log events of a rehearsal into its training record, saved as it goes.

    A sink like device.usage.SessionTally (`on_log(event, fields, t)`); a circle held is not
    its business and leaves no trace here.
    """

    log: TrainingLog | None
    box: str
    wall_now: WallNow = system_wall_now
    record: dict[str, Any] | None = None

    def on_log(self, event: str, fields: Mapping[str, Any], t: float) -> None:
        if event == signals.SESSION_STARTED:
            self.record = self._new_record(fields, t) if fields.get("rehearsal") else None
            self._save()
            return
        rec = self.record
        if rec is None:
            return
        if event == signals.STEP_PRACTISED:
            rec["steps_practised"].append(fields["step"])
            rec["notes_heard"] += bool(fields.get("note_heard"))
        elif event == signals.SESSION_FINISHED:
            rec["completed"] = bool(fields.get("completed"))
            rec["ended_at"] = self._wall()
            # the engine's own account of the whole rehearsal is the one kept
            rec["steps_practised"] = list(fields.get("steps_practised", rec["steps_practised"]))
            rec["notes_heard"] = int(fields.get("notes_heard", rec["notes_heard"]))
        else:
            return
        rec["duration_s"] = round(t - rec["_t0"], 1)
        self._save()
        if event == signals.SESSION_FINISHED:
            self.record = None

    def _new_record(self, fields: Mapping[str, Any], t: float) -> dict[str, Any]:
        now, trusted = self.wall_now()
        return {
            "id": str(uuid.uuid4()), "box": self.box, "circle": fields["script"],
            "circle_version": fields["version"], "started_at": now.isoformat(timespec="seconds"),
            "ended_at": None, "duration_s": 0.0, "completed": False, "steps_total": fields["steps"],
            "steps_practised": [], "notes_heard": 0, "clock_trusted": trusted, "_t0": t,
        }

    def _wall(self) -> str:
        now, trusted = self.wall_now()
        if not trusted and self.record is not None:
            self.record["clock_trusted"] = False
        return now.isoformat(timespec="seconds")

    def _save(self) -> None:
        if self.record is not None and self.log is not None:
            self.log.upsert({k: v for k, v in self.record.items() if not k.startswith("_")})


# -- export -------------------------------------------------------------------------------------

CSV_FIELDS = (
    "id", "box", "circle", "circle_version", "started_at", "ended_at", "duration_s", "completed",
    "steps_total", "steps_practised_count", "steps_practised", "notes_heard", "clock_trusted",
)


def export_training_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """One line per rehearsal, for the trainer; the steps practised are ids separated by spaces."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        steps = list(row.get("steps_practised") or [])
        writer.writerow({
            **row,
            "completed": int(bool(row.get("completed"))),
            "clock_trusted": int(bool(row.get("clock_trusted", True))),
            "steps_practised_count": len(steps),
            "steps_practised": " ".join(steps),
        })
    return out.getvalue()
