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
    Hearing,
    SessionTally,
    UsageStore,
    dhis2_csv,
    dhis2_data_value_set,
    export_csv,
    export_since_last,
    hearing_of,
    min_circle_minutes,
    report_rows,
)

DHIS2 = {"org_unit": "DiszpKrYNg8", "data_elements": {"sessions": "CbxSess0001", "attendance": "CbxAtt00001",
                                                      "help_presses": "CbxHelp0001"}}


def run_session(tally: SessionTally, t0: float = 0.0, completed: bool = True,
                length_s: float = 1800.0) -> None:
    """A half-hour circle (long enough to count as held) with a round, HELP, pause, repeat."""
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
        tally.on_log("session_finished", {"completed": True}, t0 + length_s)


def test_a_session_is_recorded_with_counts_only(tmp_path):
    store = UsageStore(tmp_path / "usage.db")
    run_session(SessionTally(store, box="box-1"))
    [row] = store.sessions()
    assert row["completed"] and row["duration_s"] == 1800
    assert (row["help_count"], row["pauses"], row["repeats"]) == (1, 1, 1)
    assert row["core_delivered"] == 1 and row["steps_delivered"] == 1
    assert row["rounds"] == [{"step": "share", "turns": 4, "passes": 1, "listened": 0,
                              "left_to_facilitator": 0}]
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
        run_session(SessionTally(store, box="b"), t0=i * 10_000)
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
        dhis2_data_value_set(rows, {"data_elements": {"sessions": "CbxSess0001"}})


def test_export_since_last_and_mark_exported(tmp_path):
    store = UsageStore(tmp_path / "usage.db")
    run_session(SessionTally(store, box="b"))
    files, ids = export_since_last(store, tmp_path / "stick", DHIS2, "b")
    assert len(files) == 2 and len(ids) == 1
    assert json.loads(files[1].read_text())["dataValues"]
    store.mark_exported(ids)
    files, ids = export_since_last(store, tmp_path / "stick2", DHIS2, "b")
    assert ids == []


def try_the_box(tally: SessionTally, seconds: float) -> None:
    """Start, then Stop after a few seconds: what people do to check the box works."""
    tally.on_log("session_started", {"script": "c", "version": 2, "steps": 3, "core_steps": 1}, 0.0)
    tally.on_log("step_started", {"step": "welcome", "core": False}, 0.5)
    tally.on_log("session_finished", {"completed": False}, seconds)


def test_test_runs_are_kept_but_left_out_of_totals_and_exports(tmp_path):
    store = UsageStore(tmp_path / "usage.db")
    run_session(SessionTally(store, box="b"))  # a real circle
    try_the_box(SessionTally(store, box="b"), 2.0)  # a 2-second Start/Stop
    no_core = SessionTally(store, box="b")  # long, but no core step ever delivered
    no_core.on_log("session_started", {"script": "c", "version": 2, "steps": 3, "core_steps": 1}, 0)
    no_core.on_log("session_finished", {"completed": False}, 20 * 60)
    rows = store.sessions()
    assert len(rows) == 3  # all kept

    held = report_rows(rows, min_circle_minutes(DHIS2))
    assert len(held) == 1 and held[0]["duration_s"] == 1800
    everything = report_rows(rows, 10, include_tests=True)
    reasons = sorted(str(r["test_reason"]) for r in everything)
    assert reasons == ["None", "no core step delivered", "shorter than 10 minutes"]

    values = {v["dataElement"]: v["value"] for v in dhis2_data_value_set(held, DHIS2)["dataValues"]}
    assert values["CbxSess0001"] == "1"  # the DHIS2 count is of circles held
    parsed = list(csv.DictReader(io.StringIO(export_csv(everything))))
    assert sorted(r["test"] for r in parsed) == ["0", "1", "1"]

    files, ids = export_since_last(store, tmp_path / "stick", DHIS2, "b")
    assert ids == [held[0]["id"]]
    assert len(list(csv.DictReader(io.StringIO(files[0].read_text())))) == 1
    sent = {v["dataElement"]: v["value"] for v in json.loads(files[1].read_text())["dataValues"]}
    assert sent["CbxSess0001"] == "1"


def test_the_minimum_length_comes_from_the_dhis2_settings(tmp_path):
    assert min_circle_minutes({}) == 10
    assert min_circle_minutes({"min_circle_minutes": 1}) == 1
    assert min_circle_minutes({"min_circle_minutes": "nonsense"}) == 10
    store = UsageStore(tmp_path / "usage.db")
    try_the_box(SessionTally(store, box="b"), 3 * 60.0)
    rows = store.sessions()
    assert report_rows(rows, min_circle_minutes({"min_circle_minutes": 2})) == []
    # three minutes is long enough for a 2-minute minimum, but no core step was delivered
    assert report_rows(rows, 2, include_tests=True)[0]["test_reason"] == "no core step delivered"
    assert report_rows(rows, 5, include_tests=True)[0]["test_reason"] == "shorter than 5 minutes"


def test_a_record_can_be_deleted(tmp_path):
    store = UsageStore(tmp_path / "usage.db")
    try_the_box(SessionTally(store, box="b"), 2.0)
    run_session(SessionTally(store, box="b"))
    short = next(r["id"] for r in store.sessions() if r["duration_s"] < 60)
    store.delete(short)
    assert [r["duration_s"] for r in UsageStore(tmp_path / "usage.db").sessions()] == [1800]
    with pytest.raises(KeyError):
        store.delete(short)


def test_a_round_counts_the_turns_the_box_did_not_hear_clearly(tmp_path):
    """The engine's turn_ended says whether the box paced the turn by listening and whether it
    left its end to the facilitator; the record keeps the counts per round, never which turn."""
    store = UsageStore(tmp_path / "usage.db")
    tally = SessionTally(store, box="box-1")
    tally.on_log("session_started", {"script": "c", "version": 1, "steps": 2, "core_steps": 1}, 0)
    tally.on_log("round_started", {"step": "share", "listening": True}, 1)
    for n, left in enumerate([False, True, True, False], 1):
        tally.on_log("turn_ended", {"n": n, "reason": "button" if left else "silence",
                                    "listened": True, "left_to_facilitator": left}, 10 * n)
    tally.on_log("round_started", {"step": "close", "listening": False}, 60)
    tally.on_log("turn_ended", {"n": 1, "reason": "button", "listened": False,
                                "left_to_facilitator": False}, 70)
    [row] = store.sessions()
    assert row["rounds"] == [
        {"step": "share", "turns": 4, "passes": 0, "listened": 4, "left_to_facilitator": 2},
        {"step": "close", "turns": 1, "passes": 0, "listened": 0, "left_to_facilitator": 0}]
    assert hearing_of(row) == Hearing(listened=4, left_to_facilitator=2)
    assert hearing_of(row).heard_clearly == 2
    [line] = csv.DictReader(io.StringIO(export_csv([row])))
    assert (line["turns_listened"], line["turns_left_to_facilitator"]) == ("4", "2")


def test_a_record_from_before_the_box_counted_hearing_says_nothing_about_it():
    older = {"rounds": [{"step": "share", "turns": 6, "passes": 1}]}
    assert not hearing_of(older).counted and not hearing_of({"rounds": []}).counted
    damaged = {"rounds": [{"listened": "8", "left_to_facilitator": None}, "x"]}
    assert hearing_of(damaged) == Hearing(listened=0, left_to_facilitator=0)  # no crash
    [line] = csv.DictReader(io.StringIO(export_csv([older])))
    assert (line["turns_listened"], line["turns_left_to_facilitator"]) == ("", "")
