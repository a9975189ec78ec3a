"""The real Runtime running a course: which meeting it plays, what it says first, how it moves on.

A tiny course (tests/course_fixtures.py): sessions 1 and 2 of tiny-circle, a bus stop (tiny-stop),
session 3. The box is reached over its control socket, as the admin page reaches it.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from conftest import make_config
from course_fixtures import COURSE_ID
from gpiozero.pins.mock import MockFactory

from audio.cache import read_wav_pcm
from audio.silent import SilentSpeaker
from device.control import ControlClient, socket_path
from device.course_play import announcement_prompt, announcement_set
from device.datafolder import DataFolder
from device.reloading import ConfigSource
from device.runtime import Runtime


class CourseBox:
    """A Runtime with session.course set, its loop on a thread, and its log events kept."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.events: list[tuple[str, dict]] = []
        source = ConfigSource(lambda: make_config(data, session={"course": COURSE_ID}), ())
        self.runtime = Runtime(source.load(), pin_factory=MockFactory(), speaker=SilentSpeaker(time.monotonic),
                               config_source=source, listening=False,
                               log_sinks=[lambda event, fields, t: self.events.append((event, dict(fields)))])
        self.runtime.start()
        self.loop = threading.Thread(target=self.runtime.run, daemon=True)
        self.loop.start()
        self.client = ControlClient(socket_path(data))

    def wait(self, predicate, what: str, timeout: float = 20.0) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            status = self.client.status()
            if predicate(status):
                return status
            time.sleep(0.02)
        raise AssertionError(f"the box never got to: {what}; status: {self.client.status()}")

    def press(self, action: str) -> None:
        assert self.client.dispatch(action)["ok"]

    def finished(self) -> int:
        return sum(event == "session_finished" for event, _ in list(self.events))

    def hold_a_session(self) -> None:
        """Start the meeting and skip through its steps to the end (completed)."""
        done = self.finished()
        self.press("next")
        self.wait(lambda s: s["state"] != "idle", "a circle running")
        while self.finished() == done:
            step = self.client.status().get("step")
            self.press("skip")
            self.wait(lambda s, was=step: s.get("step") != was or self.finished() > done, "the next step")
        self.wait(lambda s: s["state"] in ("idle", "finished") and not s.get("playing"), "between circles")

    def close(self) -> None:
        self.runtime.stop()
        self.loop.join(5)
        self.runtime.close()


@pytest.fixture
def box(course_data):
    running = CourseBox(course_data)
    yield running
    running.close()


def stored(data: Path) -> dict:
    return json.loads(DataFolder(data).course_position(COURSE_ID).read_text())


def rendered_announcement(data: Path, index: int) -> bytes:
    manifest = json.loads((data / "cache" / "sets" / f"{announcement_set(COURSE_ID)}.json").read_text())
    return read_wav_pcm(data / "cache" / manifest["prompts"][announcement_prompt(index)]["file"])


def test_the_first_session_is_announced_before_step_1(box):
    status = box.client.status()
    course = status["course"]
    assert (course["id"], course["position"], course["label"], course["sessions_total"], course["finished"]) == (
        COURSE_ID, 0, "Session 1 of 3", 3, False)
    assert [(m["label"], m["circle"], m["bus_stop"], m["held"]) for m in course["plan"]] == [
        ("Session 1 of 3", "tiny-circle", False, False), ("Session 2 of 3", "tiny-circle", False, False),
        ("Bus stop after session 2", "tiny-stop", True, False), ("Session 3 of 3", "tiny-circle", False, False)]
    assert status["script"] == "tiny-circle"
    box.press("next")
    box.wait(lambda s: any(e == "step_started" for e, _ in box.events) and s["state"] == "speaking", "step 1")
    started = next(f for e, f in box.events if e == "session_started")
    assert (started["course"], started["course_position"], started["session"], started["bus_stop"]) == (
        COURSE_ID, 0, 1, False)
    box.wait(lambda s: sum(e == "prompt_started" for e, _ in box.events) >= 2, "step 1's own prompt")
    prompts = [f["prompt"] for e, f in box.events if e == "prompt_started"]
    assert prompts[:2] == ["course:session", "step:hello"]
    # what played is the rendered "This is session 1 of 3", not another meeting's words
    assert box.runtime.box.sounds.pcm("course:session") == rendered_announcement(box.data, 0)
    assert rendered_announcement(box.data, 0) != rendered_announcement(box.data, 1)


def test_holding_a_session_moves_on_and_a_start_stop_does_not(box):
    box.press("next")
    box.wait(lambda s: s["state"] != "idle", "a circle running")
    box.press("stop")  # a test run: nothing delivered
    box.wait(lambda s: s["state"] == "finished", "stopped")
    assert box.client.status()["course"]["position"] == 0
    assert not DataFolder(box.data).course_position(COURSE_ID).exists()
    box.press("next")  # after a stop NEXT says the circle has ended
    box.wait(lambda s: s["state"] == "idle" and not s.get("playing"), "idle again")
    box.hold_a_session()
    status = box.wait(lambda s: s["course"]["position"] == 1, "session 2 next")
    assert status["course"]["label"] == "Session 2 of 3" and status["course"]["plan"][0]["held"] is True
    on_disk = stored(box.data)
    assert on_disk["position"] == 1 and [h["index"] for h in on_disk["held"]] == [0]
    assert on_disk["held"][0]["completed"] is True
    assert box.runtime.box.sounds.pcm("course:session") == rendered_announcement(box.data, 1)


def test_choosing_another_meeting_between_circles_and_refused_mid_circle(box):
    reply = box.client.course_session(2)
    assert reply == {"ok": True, "position": 2, "label": "Bus stop after session 2"}
    status = box.client.status()
    assert status["script"] == "tiny-stop" and status["course"]["label"] == "Bus stop after session 2"
    assert stored(box.data)["position"] == 2
    box.press("next")
    box.wait(lambda s: s["state"] != "idle", "the bus stop running")
    reply = box.client.course_session(0)
    assert reply["ok"] is False and "a circle is running" in reply["error"]
    assert stored(box.data)["position"] == 2
    assert box.client.course_session(9)["ok"] is False  # there is no meeting 10
    prompts = [f["prompt"] for e, f in box.events if e == "prompt_started"]
    assert prompts[0] == "course:bus_stop"
    assert box.runtime.box.sounds.pcm("course:bus_stop") == rendered_announcement(box.data, 2)


def test_the_bus_stop_plays_its_own_circle_then_the_next_session(box):
    assert box.client.course_session(2)["ok"]
    box.hold_a_session()
    steps = [f["step"] for e, f in box.events if e == "step_started"]
    assert steps == ["farewell", "welcome"]
    status = box.wait(lambda s: s["course"]["position"] == 3, "session 3 next")
    assert status["script"] == "tiny-circle" and status["course"]["label"] == "Session 3 of 3"
    box.hold_a_session()
    status = box.wait(lambda s: s["course"]["finished"], "the course finished")
    assert status["course"]["label"] == "Finished" and status["script"] == "tiny-circle"
    assert [h["index"] for h in stored(box.data)["held"]] == [2, 3]


def test_an_announcement_rendered_after_the_box_started_is_said_at_the_next_circle(course_data):
    """The admin page renders a saved course's announcements in the background: a box that
    loaded the meeting before they were ready picks them up between circles."""
    sets = course_data / "cache" / "sets"
    manifest = sets / f"{announcement_set(COURSE_ID)}.json"
    kept = manifest.read_bytes()
    manifest.unlink()
    running = CourseBox(course_data)
    try:
        assert any("announcement" in f for f in running.client.status()["faults"])
        assert "course:session" not in running.runtime.box.sounds
        manifest.write_bytes(kept)  # the render finished
        assert running.client.reload()["ok"]
        running.wait(lambda s: not any("announcement" in f for f in s["faults"]), "the announcement loaded")
        running.press("next")
        running.wait(lambda s: any(e == "prompt_started" for e, _ in running.events), "the first prompt")
        first = next(f["prompt"] for e, f in running.events if e == "prompt_started")
        assert first == "course:session"
    finally:
        running.close()


def test_a_damaged_position_file_starts_at_session_1_with_a_fault(course_data):
    state = course_data / "state"
    state.mkdir(parents=True, exist_ok=True)
    (state / f"course-{COURSE_ID}.json").write_text('{"course": "tiny-cou')  # a torn write by hand
    running = CourseBox(course_data)
    try:
        status = running.client.status()
        assert status["course"]["position"] == 0 and status["script"] == "tiny-circle"
        assert any(f.startswith(f"course: the file saying where course '{COURSE_ID}' stands is damaged")
                   for f in status["faults"])
    finally:
        running.close()


def test_the_doctor_names_the_course_and_where_it_stands(course_data):
    from gpiozero.pins.mock import MockFactory as Pins

    from device.course_position import PositionStore
    from device.doctor import FAIL, PASS, WARN, Doctor, DoctorSeams, ScriptedTechnician

    def doctor() -> Doctor:
        seams = DoctorSeams(simulate=True, open_speaker=None, pin_factory=Pins(), technician=ScriptedTechnician(),
                            open_mic=None, out=lambda text: None)
        doc = Doctor(make_config(course_data, session={"course": COURSE_ID}), seams)
        doc.check_course()
        doc.check_content()
        return doc

    from device.course import resolve_course

    PositionStore(resolve_course(COURSE_ID, course_data).course, course_data).choose(2)
    doc = doctor()
    course, circle = doc.checks[0], doc.checks[1]
    assert course.name == "course" and course.status == PASS
    assert course.detail.endswith("next is bus stop after session 2 (circle tiny-stop)")
    assert circle.name == "circle" and "'tiny-stop'" in circle.detail  # the meeting's circle is checked
    (course_data / "cache" / "sets" / f"{announcement_set(COURSE_ID)}.json").unlink()
    assert doctor().checks[0].status == WARN
    (course_data / "scripts" / "tiny-stop.yaml").unlink()
    check = doctor().checks[0]
    assert check.status == FAIL and "the circle 'tiny-stop', which this box does not have" in check.detail


def test_a_rehearsal_never_moves_the_course_and_is_in_the_training_log(box):
    from device.training_log import TrainingLog

    done = box.finished()
    box.press("rehearse")
    box.wait(lambda s: s["state"] != "idle", "a rehearsal running")
    while box.finished() == done:
        step = box.client.status().get("step")
        box.press("skip")
        box.wait(lambda s, was=step: s.get("step") != was or box.finished() > done, "the next step")
    started = [f for e, f in box.events if e == "session_started"]
    assert started[-1]["rehearsal"] is True
    assert not any(f.get("prompt", "").startswith("course:") for e, f in box.events if e == "prompt_started")
    assert box.client.status()["course"]["position"] == 0
    assert not DataFolder(box.data).course_position(COURSE_ID).exists()
    log = TrainingLog(DataFolder(box.data).training_log)
    try:
        assert [r["circle"] for r in log.rehearsals()] == ["tiny-circle"]
    finally:
        log.close()


def test_a_course_in_a_language_no_voice_speaks_plays_unannounced_and_says_why(course_data):
    """The box never reads Swahili with an English voice: a course in a language no voice on the
    box speaks has no announcement, and the fault line says why (not "run render")."""
    from device.course import resolve_course
    from device.course_play import AnnouncementMissing, render_announcements

    path = course_data / "courses" / f"{COURSE_ID}.yaml"
    path.write_text(path.read_text().replace("language: en", "language: sw"))
    course = resolve_course(COURSE_ID, course_data).course
    with pytest.raises(AnnouncementMissing) as refused:
        render_announcements(course, make_config(course_data), course_data)
    why = str(refused.value)
    assert why.startswith("no voice on this box speaks Swahili (the language of course 'tiny-course': "
                          "en_US-joe-medium speaks English)")
    running = CourseBox(course_data)
    try:
        assert any(why in f for f in running.client.status()["faults"])
        running.press("next")
        running.wait(lambda s: any(e == "prompt_started" for e, _ in running.events), "the first prompt")
        first = next(f["prompt"] for e, f in running.events if e == "prompt_started")
        assert first == "step:hello"  # the session plays, unannounced
    finally:
        running.close()
