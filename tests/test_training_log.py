"""device.training_log: rehearsals (and only rehearsals) are kept for the trainer, as they go,
with counts and step ids only, and exported as CSV."""

from __future__ import annotations

import csv
import io
import sqlite3
from datetime import UTC, datetime

from test_rehearsal import NOTED, Box

from device import engine as eng
from device.datafolder import DataFolder
from device.training_log import COLUMNS, TrainingLog, TrainingTally, export_training_csv

WHEN = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)


class Wired(Box):
    """A rehearsal engine whose log events go to a TrainingTally, as the runtime wires it."""

    def __init__(self, log: TrainingLog, **kwargs) -> None:
        super().__init__(text=NOTED, **kwargs)
        self.tally = TrainingTally(log, box="box-7", wall_now=lambda: (WHEN, True))

    def _feed(self, event: eng.Event, t: float) -> list[eng.Command]:
        out = super()._feed(event, t)
        for command in out:
            if isinstance(command, eng.Log):
                self.tally.on_log(command.event, command.fields, t)
        return out


def _walk(h: Box, until_step: str | None = None) -> None:
    """Hear each sound to its end and press NEXT when the box waits, until `until_step` begins
    (or the rehearsal is over)."""
    for _ in range(80):
        if h.engine.state == eng.State.FINISHED:
            return
        if until_step and h.engine.step is not None and h.engine.step.id == until_step:
            return
        h.at(h.t + 10)
        if h.engine.playing is not None:
            h.finish_audio()
        elif h.engine.state in (eng.State.WAITING, eng.State.IN_ROUND):
            h.press("next")


def test_the_training_log_lives_in_the_data_folder(tmp_path):
    assert DataFolder(tmp_path).training_log == tmp_path / "training.sqlite"


def test_a_whole_rehearsal_is_recorded_with_its_steps_and_notes(tmp_path):
    log = TrainingLog(DataFolder(tmp_path).training_log)
    h = Wired(log)
    h.press("rehearse")
    _walk(h)
    [row] = log.rehearsals()
    assert row["circle"] == "test-circle" and row["circle_version"] == 3 and row["box"] == "box-7"
    assert row["completed"] is True and row["steps_total"] == 5
    assert row["steps_practised"] == ["welcome", "breathe", "share", "talk", "gong"]
    assert row["notes_heard"] == 2
    assert row["started_at"] == row["ended_at"] == WHEN.isoformat(timespec="seconds")
    assert row["duration_s"] == h.t


def test_a_circle_held_is_never_in_the_training_log(tmp_path):
    log = TrainingLog(tmp_path / "training.sqlite")
    h = Wired(log)
    h.press("next")
    _walk(h)
    assert h.logs("session_finished")[0]["completed"] is True
    assert log.rehearsals() == []
    assert h.tally.record is None


def test_a_rehearsal_is_saved_as_it_goes_and_survives_a_power_cut(tmp_path):
    path = tmp_path / "training.sqlite"
    h = Wired(TrainingLog(path))
    h.press("rehearse")
    _walk(h, until_step="share")  # welcome and breathe walked; then the power goes
    again = TrainingLog(path)  # what a new process finds on the disk
    [row] = again.rehearsals()
    assert row["ended_at"] is None and row["completed"] is False
    assert row["steps_practised"] == ["welcome", "breathe"] and row["notes_heard"] == 1
    journal = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert journal == "wal"


def test_a_stopped_rehearsal_is_recorded_as_not_completed(tmp_path):
    log = TrainingLog(tmp_path / "training.sqlite")
    h = Wired(log)
    h.press("rehearse")
    _walk(h, until_step="share")
    h.at(h.t + 1).press("stop")
    [row] = log.rehearsals()
    assert row["completed"] is False and row["ended_at"] is not None
    assert row["steps_practised"] == ["welcome", "breathe"]


def test_the_record_holds_counts_and_ids_only(tmp_path):
    log = TrainingLog(tmp_path / "training.sqlite")
    h = Wired(log)
    h.press("rehearse")
    _walk(h)
    [row] = log.rehearsals()
    assert set(row) == set(COLUMNS)  # no free text, no names, no per-person data


def test_the_csv_export_has_one_line_per_rehearsal(tmp_path):
    log = TrainingLog(tmp_path / "training.sqlite")
    h = Wired(log)
    h.press("rehearse")
    _walk(h, until_step="share")
    h.at(h.t + 1).press("stop")
    h.at(h.t + 1).press("rehearse")
    _walk(h)
    lines = list(csv.DictReader(io.StringIO(export_training_csv(log.rehearsals()))))
    assert len(lines) == 2
    done = next(r for r in lines if r["completed"] == "1")
    stopped = next(r for r in lines if r["completed"] == "0")
    assert done["steps_practised"] == "welcome breathe share talk gong" and done["steps_practised_count"] == "5"
    assert stopped["steps_practised"] == "welcome breathe" and stopped["notes_heard"] == "1"
    assert done["circle"] == "test-circle" and done["circle_version"] == "3" and done["clock_trusted"] == "1"
    assert export_training_csv([]).splitlines() == [",".join(
        ["id", "box", "circle", "circle_version", "started_at", "ended_at", "duration_s", "completed",
         "steps_total", "steps_practised_count", "steps_practised", "notes_heard", "clock_trusted"])]


def test_an_untrusted_clock_is_marked():
    tally = TrainingTally(None, box="b", wall_now=lambda: (WHEN, False))
    tally.on_log("session_started", {"script": "c", "version": 1, "steps": 2, "rehearsal": True}, 0.0)
    assert tally.record is not None and tally.record["clock_trusted"] is False
