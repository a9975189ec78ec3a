"""The usage store and its exports: counts and durations only, DHIS2-ready."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import UTC, datetime

import pytest

from device.usage import (
    Dhis2ConfigError,
    SessionTally,
    UsageStore,
    dhis2_csv,
    dhis2_data_value_set,
    export_csv,
    export_since_last,
)

DHIS2 = {"org_unit": "DiszpKrYNg8", "data_elements": {"sessions": "CbxSess0001", "attendance": "CbxAtt00001",
                                                      "help_presses": "CbxHelp0001"}}


def run_session(tally: SessionTally, t0: float = 0.0, completed: bool = True) -> None:
    tally.on_log("session_started", {"script": "c", "version": 2, "steps": 3, "core_steps": 1}, t0)
    tally.on_log("step_started", {"step": "share", "core": True}, t0 + 1)
    tally.on_log("round_started", {"step": "share"}, t0 + 1)
    for n, reason in enumerate(["silence", "pass", "button", "silence"], 1):
        tally.on_log("turn_ended", {"n": n, "reason": reason}, t0 + 10 * n)
    tally.on_log("help", {}, t0 + 50)
    tally.on_log("paused", {"why": "help"}, t0 + 50)
    tally.on_log("paused", {"why": "button"}, t0 + 60)
    tally.on_log("repeat", {}, t0 + 70)
    tally.on_log("step_finished", {"step": "share", "delivered": True}, t0 + 80)
    if completed:
        tally.on_log("session_finished", {"completed": True}, t0 + 90)


def test_a_session_is_recorded_with_counts_only(tmp_path):
    store = UsageStore(tmp_path / "usage.db")
    run_session(SessionTally(store, box="box-1"))
    [row] = store.sessions()
    assert row["completed"] and row["duration_s"] == 90
    assert (row["help_count"], row["pauses"], row["repeats"]) == (1, 1, 1)
    assert row["core_delivered"] == 1 and row["steps_delivered"] == 1
    assert row["rounds"] == [{"step": "share", "turns": 4, "passes": 1}]
    assert row["attendance_estimated"] == 3
    columns = {r[1] for r in sqlite3.connect(tmp_path / "usage.db").execute("PRAGMA table_info(sessions)")}
    assert not columns & {"name", "names", "transcript", "audio", "speaker", "person"}


def test_an_unfinished_session_is_already_in_the_store(tmp_path):
    store = UsageStore(tmp_path / "usage.db")
    run_session(SessionTally(store, box="box-1"), completed=False)
    [row] = UsageStore(tmp_path / "usage.db").sessions()  # a second connection, as after a crash
    assert not row["completed"] and row["ended_at"] is None and row["rounds"][0]["turns"] == 4


def test_untrusted_clock_is_recorded(tmp_path):
    store = UsageStore(tmp_path / "usage.db")
    run_session(SessionTally(store, box="b", wall_now=lambda: (datetime(2020, 1, 1, tzinfo=UTC), False)))
    assert store.sessions()[0]["clock_trusted"] is False


def test_csv_and_dhis2_exports(tmp_path):
    store = UsageStore(tmp_path / "usage.db")
    for i in range(3):
        run_session(SessionTally(store, box="b"), t0=i * 100)
    rows = store.sessions()
    store.set_attendance(rows[0]["id"], 12)
    rows = store.sessions()
    parsed = list(csv.DictReader(io.StringIO(export_csv(rows))))
    assert len(parsed) == 3 and parsed[0]["turns"] == "4" and parsed[0]["passes"] == "1"
    body = dhis2_data_value_set(rows, DHIS2)
    period = datetime.now(UTC).strftime("%Y%m")
    values = {v["dataElement"]: v["value"] for v in body["dataValues"]}
    assert values == {"CbxSess0001": "3", "CbxAtt00001": str(12 + 3 + 3), "CbxHelp0001": "3"}
    assert all(v["period"] == period and v["orgUnit"] == "DiszpKrYNg8" for v in body["dataValues"])
    lines = dhis2_csv(rows, DHIS2).splitlines()
    assert lines[0].startswith("dataelement,period,orgunit") and len(lines) == 4
    with pytest.raises(Dhis2ConfigError, match=r"dhis2\.org_unit"):
        dhis2_data_value_set(rows, {"data_elements": {"sessions": "x"}})


def test_export_since_last_and_mark_exported(tmp_path):
    store = UsageStore(tmp_path / "usage.db")
    run_session(SessionTally(store, box="b"))
    files, ids = export_since_last(store, tmp_path / "stick", DHIS2, "b")
    assert len(files) == 2 and len(ids) == 1
    assert json.loads(files[1].read_text())["dataValues"]
    store.mark_exported(ids)
    files, ids = export_since_last(store, tmp_path / "stick2", DHIS2, "b")
    assert ids == []
