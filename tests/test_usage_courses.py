"""Course data in the usage store: the course columns (and the migration of older stores),
rehearsals kept out, per-course summaries, the CSV and DHIS2 exports, and the usage page."""

from __future__ import annotations

import csv
import io
import re
import sqlite3
from datetime import UTC, datetime

import pytest

from device.config import ConfigError, load_config
from device.training_log import TrainingLog, TrainingTally
from device.usage import (
    SessionTally,
    UsageStore,
    course_summaries,
    dhis2_data_value_set,
    export_course_csv,
    export_csv,
    report_rows,
)

COURSE = "grief-group"
# The plan: session 1, 2, the bus stop after 2, session 3, the bus stop after 3, session 4.
COURSE_YAML = """\
course: grief-group
title: Grief support group
version: 2
language: en
sessions:
  - circle: three-step-circle
    repeat: 2
    bus_stop_after: true
  - circle: three-step-circle
    bus_stop_after: true
  - circle: three-step-circle
"""


def course_fields(position: int, session: int | None, total: int = 4, course: str = COURSE) -> dict:
    """What the engine adds to session_started for a meeting of a course (device.course_play)."""
    return {"course": course, "course_version": 2, "course_position": position, "session": session,
            "sessions_total": total, "bus_stop": session is None}


def hold(store: UsageStore, day: int, fields: dict | None = None, *, minutes: float = 40,
         core_delivered: int = 2, turns: int = 6, rehearsal: bool | None = None,
         training: TrainingLog | None = None) -> None:
    """One circle as the engine logs it: two core steps, a round of `turns` turns (one pass).
    Both sinks of the runtime hear it: the usage tally, and the training log's when given."""
    when = datetime(2026, 3, day, 9, 0, tzinfo=UTC)
    sinks = [SessionTally(store, box="clinic-north", wall_now=lambda: (when, True))]
    if training is not None:
        sinks.append(TrainingTally(training, box="clinic-north", wall_now=lambda: (when, True)))

    def log(event: str, fields: dict, t: float) -> None:
        for sink in sinks:
            sink.on_log(event, fields, t)

    started = {"script": "three-step-circle", "version": 1, "steps": 3, "core_steps": 2, **(fields or {})}
    if rehearsal is not None:
        started["rehearsal"] = rehearsal
    log("session_started", started, 0.0)
    for n, step in enumerate(("welcome", "share"), 1):
        log("step_started", {"step": step, "core": True}, n)
        if step == "share":
            log("round_started", {"step": step}, n)
            for turn in range(turns):
                log("turn_ended", {"n": turn, "reason": "pass" if turn == 0 else "silence"}, n + turn)
        log("step_finished", {"step": step, "delivered": n <= core_delivered}, n + 10)
        if rehearsal:
            log("step_practised", {"step": step, "note_heard": step == "share"}, n + 10)
    log("help", {}, 30)
    log("session_finished", {"completed": True, "rehearsal": bool(rehearsal)}, minutes * 60)


def course_store(tmp_path) -> UsageStore:
    """Sessions 1 and 2, the bus stop after 2, session 2 held again; a 1-minute test run of
    session 3; a circle outside any course; a rehearsal."""
    store = UsageStore(tmp_path / "usage.sqlite")
    hold(store, 2, course_fields(0, 1), rehearsal=False)
    hold(store, 9, course_fields(1, 2), turns=9)
    hold(store, 16, course_fields(2, None), core_delivered=1)
    hold(store, 17, course_fields(1, 2), turns=8)  # the facilitator chose session 2 again
    hold(store, 23, course_fields(3, 3), minutes=1)  # Start and Stop: a test run
    hold(store, 24)  # not in a course
    hold(store, 25, rehearsal=True)
    return store


# -- the store -----------------------------------------------------------------------------------


def test_a_rehearsal_is_never_recorded_as_a_circle(tmp_path):
    store = UsageStore(tmp_path / "usage.sqlite")
    hold(store, 3, rehearsal=True)
    hold(store, 3, course_fields(0, 1), rehearsal=True)
    assert store.sessions() == []
    hold(store, 4, rehearsal=False)  # the next real circle is recorded as always
    [row] = store.sessions()
    assert row["started_at"].startswith("2026-03-04") and row["core_delivered"] == 2


def test_the_course_and_session_are_recorded(tmp_path):
    store = UsageStore(tmp_path / "usage.sqlite")
    hold(store, 2, course_fields(0, 1))
    hold(store, 16, course_fields(2, None))
    hold(store, 20)
    bus, first = [r for r in store.sessions() if r["course"]]
    assert (first["course"], first["course_version"], first["course_position"]) == (COURSE, 2, 0)
    assert (first["session_number"], first["sessions_total"], first["bus_stop"]) == (1, 4, False)
    assert (bus["course_position"], bus["session_number"], bus["bus_stop"]) == (2, None, True)
    plain = next(r for r in store.sessions() if not r["course"])
    assert plain["session_number"] is None and plain["bus_stop"] is False


OLD_SCHEMA = """
CREATE TABLE sessions (
    id TEXT PRIMARY KEY, box TEXT NOT NULL, script TEXT NOT NULL, script_version INTEGER NOT NULL,
    started_at TEXT NOT NULL, ended_at TEXT, duration_s REAL NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0, steps_planned INTEGER NOT NULL,
    steps_delivered INTEGER NOT NULL DEFAULT 0, core_planned INTEGER NOT NULL,
    core_delivered INTEGER NOT NULL DEFAULT 0, repeats INTEGER NOT NULL DEFAULT 0,
    pauses INTEGER NOT NULL DEFAULT 0, help_count INTEGER NOT NULL DEFAULT 0, attendance INTEGER,
    attendance_estimated INTEGER NOT NULL DEFAULT 0, faults INTEGER NOT NULL DEFAULT 0,
    clock_trusted INTEGER NOT NULL DEFAULT 1, rounds TEXT NOT NULL DEFAULT '[]', exported_at TEXT
);
INSERT INTO sessions (id, box, script, script_version, started_at, duration_s, completed,
    steps_planned, core_planned, core_delivered, attendance)
VALUES ('before', 'clinic-north', 'three-step-circle', 1, '2025-12-01T09:00:00+00:00', 2400, 1, 3, 2, 2, 11);
"""


def test_a_store_made_before_courses_gains_the_columns_and_keeps_its_records(tmp_path):
    path = tmp_path / "usage.sqlite"
    old = sqlite3.connect(path)
    old.executescript(OLD_SCHEMA)
    old.close()
    store = UsageStore(path)
    [before] = store.sessions()
    assert before["attendance"] == 11 and before["course"] is None and before["bus_stop"] is False
    hold(store, 2, course_fields(0, 1))
    store.close()
    again = UsageStore(path)  # opening an up-to-date store changes nothing
    assert {r["id"]: r["course"] for r in again.sessions()}["before"] is None
    assert [r["session_number"] for r in again.sessions() if r["course"]] == [1]


# -- summaries and exports ---------------------------------------------------------------------


def test_a_course_summary_counts_circles_held_in_plan_order(tmp_path):
    rows = report_rows(course_store(tmp_path).sessions(), 10)
    [summary] = course_summaries(rows)  # the circle outside a course is not a course
    assert (summary.course, summary.course_version, summary.sessions_total) == (COURSE, 2, 4)
    assert [(m.number, m.bus_stop) for m in summary.meetings] == [(1, False), (2, False), (None, True)]
    assert summary.sessions_held == 2 and summary.sessions_not_held == [3, 4]  # the test run is left out
    assert summary.bus_stops_passed == 1 and summary.meetings[2].after == 2
    assert summary.attendance_trend == [(1, 5), (2, 7)]  # estimates: turns minus passes; the latest of session 2
    assert summary.meetings[1].times_held == 2 and not summary.meetings[1].people_counted
    assert (summary.core_planned, summary.core_delivered) == (6, 5)
    assert summary.first_held.startswith("2026-03-02") and summary.last_held.startswith("2026-03-17")


def test_the_facilitators_count_wins_over_the_estimate(tmp_path):
    store = course_store(tmp_path)
    first = next(r for r in store.sessions() if r["session_number"] == 1)
    store.set_attendance(first["id"], 12)
    [summary] = course_summaries(report_rows(store.sessions(), 10))
    assert summary.attendance_trend[0] == (1, 12) and summary.meetings[0].people_counted


def test_the_csv_exports_carry_the_course(tmp_path):
    rows = report_rows(course_store(tmp_path).sessions(), 10)
    lines = list(csv.DictReader(io.StringIO(export_csv(rows))))
    assert len(lines) == 5  # four meetings of the course, one circle outside it; no rehearsal
    by_day = {line["started_at"][:10]: line for line in lines}
    bus, second = by_day["2026-03-16"], by_day["2026-03-09"]
    assert (second["course"], second["course_version"], second["session_number"], second["sessions_total"],
            second["bus_stop"]) == (COURSE, "2", "2", "4", "0")
    assert (bus["session_number"], bus["bus_stop"]) == ("", "1")
    assert (by_day["2026-03-24"]["course"], by_day["2026-03-24"]["bus_stop"]) == ("", "")

    [line] = csv.DictReader(io.StringIO(export_course_csv(course_summaries(rows))))
    assert line == {
        "course": COURSE, "course_version": "2", "sessions_planned": "4", "sessions_held": "2",
        "sessions_not_held": "3 4", "bus_stops_passed": "1", "first_held": "2026-03-02T09:00:00+00:00",
        "last_held": "2026-03-17T09:00:00+00:00", "core_steps_planned": "6", "core_steps_delivered": "5",
        "attendance_first": "5", "attendance_latest": "7", "attendance_by_session": "1:5 2:7",
    }


DHIS2 = {"org_unit": "ImspTQPwCqd", "attribute_option_combo": "CbxDefault1",
         "courses": {COURSE: "CbxSupport1"},
         "data_elements": {"sessions": "CbxSess0001", "course_sessions": "CbxCrsSes01",
                           "bus_stops": "CbxBusStop1", "courses_finished": "CbxCrsDone1"}}


def test_dhis2_puts_each_course_under_its_attribute_option_combo(tmp_path):
    store = course_store(tmp_path)
    hold(store, 26, course_fields(5, 4))  # the last session, held: the course is finished
    hold(store, 27, course_fields(0, 1, course="another-group"))  # a course with no code of its own
    body = dhis2_data_value_set(report_rows(store.sessions(), 10), DHIS2)
    values = {(v["dataElement"], v["attributeOptionCombo"]): v["value"] for v in body["dataValues"]}
    assert {v["period"] for v in body["dataValues"]} == {"202603"}
    assert values[("CbxSess0001", "CbxSupport1")] == "5"  # sessions 1, 2, 2 again, 4 and the bus stop
    assert values[("CbxCrsSes01", "CbxSupport1")] == "4"
    assert values[("CbxBusStop1", "CbxSupport1")] == "1"
    assert values[("CbxCrsDone1", "CbxSupport1")] == "1"
    # the circle outside a course and the unmapped course count under the default combo
    assert values[("CbxSess0001", "CbxDefault1")] == "2"
    assert values[("CbxCrsSes01", "CbxDefault1")] == "1" and values[("CbxCrsDone1", "CbxDefault1")] == "0"


def test_the_course_codes_are_checked_like_every_dhis2_code(tmp_path):
    def dhis2(**codes):
        return load_config(etc_path=None, overrides={"dhis2": codes}, environ={}).dhis2

    assert dhis2().courses == {}
    assert dhis2(courses={COURSE: "CbxSupport1", "other": ""}).courses == {COURSE: "CbxSupport1"}
    with pytest.raises(ConfigError, match=r"dhis2\.courses\.grief-group: 'support' is not a DHIS2 code"):
        dhis2(courses={COURSE: "support"})
    with pytest.raises(ConfigError, match=r"'Support Group' is not a course id"):
        dhis2(courses={"Support Group": "CbxSupport1"})
    with pytest.raises(ConfigError, match=r"'session_number' is not something the box counts"):
        dhis2(data_elements={"session_number": "CbxSessNo01"})


# -- the usage page --------------------------------------------------------------------------------


@pytest.fixture
def page(tmp_path):
    """(test client, data folder) with the course on the box and `course_store`'s records."""
    from test_admin_support import make_app, ready_client

    from device.datafolder import DataFolder

    data_dir = tmp_path / "data"
    client = ready_client(make_app(data_dir), data_dir)
    folder = DataFolder(data_dir)
    folder.courses.mkdir(parents=True, exist_ok=True)
    folder.course(COURSE).write_text(COURSE_YAML)
    store = course_store(data_dir)
    training = TrainingLog(folder.training_log)
    hold(store, 26, rehearsal=True, training=training)  # as the runtime: both sinks hear it
    store.close()
    training.close()
    return client, data_dir


def test_the_usage_page_shows_each_course_as_a_chart_with_a_table(page):
    client, _data_dir = page
    html = client.get("/usage/").get_data(as_text=True)
    assert 'id="total-sessions">5<' in html  # 4 meetings of the course and 1 circle: no test run, no rehearsal
    box = html[html.index('id="course-grief-group"'):html.index("</table>", html.index('id="course-grief-group"'))]
    assert "Grief support group" in box and "2 of 4 sessions held" in box and "1 bus stop passed" in box
    assert "Sessions not held yet: 3, 4" in box and "core steps: 5 of 6 delivered" in box

    chart = re.search(r'<svg class="chart course-chart"[^>]*>.*?</svg>', box, re.S)[0]
    root = chart[:chart.index(">") + 1]
    # it scales to the page (viewBox, no fixed size) and names the table that says it in words
    assert 'viewBox="0 0 380 180"' in root and " width=" not in root and 'role="img"' in root
    assert 'aria-describedby="course-table-0"' in root and 'id="course-table-0"' in box
    assert chart.count('class="planned"') == 4 and chart.count('class="held"') == 2
    assert "Session 2 of 4: about 7 people (the box&#39;s estimate)" in chart
    passed = re.findall(r'<g class="bus-stop passed"><title>([^<]+)</title>', chart)
    planned = re.findall(r'<g class="bus-stop"><title>([^<]+)</title>', chart)
    assert passed == ["Bus stop after session 2"] and planned == ["Bus stop after session 3"]
    assert box.count("<svg class=\"chart\"") == 1  # the core steps chart

    rows = re.findall(r"<tr class=\"[^\"]*\">\s*<td[^>]*>(.*?)</td>", box, re.S)
    assert [" ".join(re.sub(r"<[^>]+>", " ", r).split()) for r in rows] == [
        "Session 1 of 4", "Session 2 of 4 held 2 times; the latest is shown", "Bus stop after session 2"]


def test_the_course_summary_downloads_as_csv(page):
    client, _data_dir = page
    html = client.get("/usage/?since=2026-03-09").get_data(as_text=True)
    assert 'href="/usage/courses.csv?since=2026-03-09"' in html
    reply = client.get("/usage/courses.csv?since=2026-03-09")
    assert 'filename="circlebox-clinic-north-courses-' in reply.headers["Content-Disposition"]
    [line] = csv.DictReader(io.StringIO(reply.get_data(as_text=True)))
    assert (line["course"], line["sessions_held"], line["attendance_by_session"]) == (COURSE, "1", "2:7")
    every = list(csv.DictReader(io.StringIO(client.get("/usage/courses.csv?tests=1").get_data(as_text=True))))
    assert every[0]["sessions_held"] == "3"  # the test run of session 3 counts when asked


def test_rehearsals_are_in_the_training_log_not_in_usage(page, tmp_path):
    from test_admin_support import make_app, ready_client

    client, data_dir = page
    assert all(r["started_at"][:10] not in ("2026-03-25", "2026-03-26") for r in UsageStore(
        data_dir / "usage.sqlite").sessions())
    html = client.get("/usage/?tests=1").get_data(as_text=True)
    assert 'id="total-sessions">6<' in html  # every circle, the test run too; never a rehearsal
    training = html[html.index('id="training"'):]
    [row] = re.findall(r"<tbody>(.*?)</tbody>", training, re.S)
    cells = [" ".join(re.sub(r"<[^>]+>", " ", c).split()) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
    assert cells[1:] == ["three-step-circle v1", "2 of 3 welcome, share", "1", "yes"]
    assert 'href="/usage/training.csv"' in training
    reply = client.get("/usage/training.csv")
    assert 'filename="circlebox-clinic-north-training-' in reply.headers["Content-Disposition"]
    [line] = csv.DictReader(io.StringIO(reply.get_data(as_text=True)))
    assert (line["circle"], line["steps_practised"], line["notes_heard"]) == ("three-step-circle", "welcome share", "1")

    empty_dir = tmp_path / "empty"
    fresh = ready_client(make_app(empty_dir), empty_dir).get("/usage/").get_data(as_text=True)
    assert "No rehearsals yet." in fresh and "training.csv" not in fresh and 'id="courses"' not in fresh


def test_the_course_section_is_in_the_readers_language(page):
    client, _data_dir = page
    html = client.get("/usage/", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert "Parcours" in html and "2 séances tenues sur 4" in html and "1 arrêt de bus passé" in html
    assert "Séance 2 sur 4" in html and "Arrêt de bus après la séance 2" in html
    assert "Journal de formation" in html
