"""The Courses page, the panel's course block and rehearsal button, the editor's facilitator note.

The running box is faked by the real `device.control.ControlServer` on a Unix socket (as in
test_admin_pages), its course block made by the runtime's own `device.course_play.course_status`.
"""

from __future__ import annotations

import json

import pytest
import yaml
from test_admin_editor import VOICE, form, step, three_steps
from test_admin_support import FakeBox, make_app, ready_client, token

from device.content import manifest_path
from device.control import ControlServer, socket_path
from device.course import load_course, resolve_course
from device.course_play import announcement_fingerprint, announcement_set, course_status, play_for
from device.course_position import CoursePosition, write_position
from device.datafolder import DataFolder
from device.script import load_script

SAMPLE = "support-group"  # the packaged course: 8 sessions, a bus stop, 8 more


class FakeAnnouncer:
    """Stands in for device.course_play.render_announcements: writes the set's manifest (what the
    page and the runtime check), records the course."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, course, config, data) -> None:
        self.calls.append(course.course)
        path = manifest_path(DataFolder(data.root).cache, announcement_set(course.course))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"prompts": {}, "meta": {"prompts_sha256": announcement_fingerprint(course)}}))


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def announcer():
    return FakeAnnouncer()


@pytest.fixture
def app(data_dir, announcer):
    the_app = make_app(data_dir)
    the_app.extensions["circlebox"].render_course = announcer
    return the_app


@pytest.fixture
def client(app, data_dir):
    return ready_client(app, data_dir)


def course_form(tok, rows, op="save", course="tuesday-group", title="Tuesday group", bus_stop_circle="bus-stop",
                **extra):
    data = {"csrf_token": tok, "op": op, "course": course, "title": title, "language": "en",
            "bus_stop_circle": bus_stop_circle, "nsessions": str(len(rows))}
    for i, (circle, repeat, bus_stop) in enumerate(rows):
        data[f"c{i}_circle"] = circle
        data[f"c{i}_repeat"] = repeat
        if bus_stop:
            data[f"c{i}_bus_stop"] = "on"
    data.update(extra)
    return data


def text_of(html: str) -> str:
    import html as entities
    import re

    return " ".join(entities.unescape(re.sub(r"<[^>]+>", " ", html)).split())


class CourseBox(FakeBox):
    """A running box playing a course: its status carries the runtime's course block; it
    records `course_session` requests and refuses them while a circle runs."""

    def __init__(self, data_dir, position: int = 2) -> None:
        super().__init__()
        self.source = resolve_course(SAMPLE, DataFolder(data_dir))
        self.position = position
        self.chosen: list[object] = []

    def status(self) -> dict:
        status = super().status()
        status["course"] = course_status(play_for(self.source, self.position), held={0, 1})
        return status

    def course_session(self, request: dict) -> dict:
        self.chosen.append(request.get("index"))
        if self.state not in ("idle", "finished"):
            return {"ok": False, "error": "a circle is running: choose another session after it ends"}
        self.position = int(request["index"])
        return {"ok": True, "position": self.position, "label": "whatever"}


@pytest.fixture
def course_box(data_dir):
    box = CourseBox(data_dir)
    server = ControlServer(socket_path(data_dir), box.status, box.dispatch,
                           handlers={"course_session": box.course_session}).start()
    yield box
    server.close()


# -- the list -------------------------------------------------------------------------------------


def test_the_list_says_where_each_course_stands_from_its_position_file(client, data_dir):
    page = text_of(client.get("/courses/").get_data(as_text=True))
    assert "Therapists' support group" in page and "16 sessions · 1 bus stop" in page
    assert "Not started: session 1 of 16 comes first" in page
    course = resolve_course(SAMPLE, data_dir).course
    write_position(data_dir, CoursePosition(SAMPLE, course.version, position=3))
    assert "Next: session 4 of 16" in text_of(client.get("/courses/").get_data(as_text=True))
    write_position(data_dir, CoursePosition(SAMPLE, course.version, position=8))  # after session 8
    assert "Next: bus stop after session 8" in text_of(client.get("/courses/").get_data(as_text=True))
    write_position(data_dir, CoursePosition(SAMPLE, course.version, position=17))
    assert "Finished: all 16 sessions held" in text_of(client.get("/courses/").get_data(as_text=True))


def test_the_list_asks_the_running_box_where_its_course_stands(client, course_box):
    page = text_of(client.get("/courses/").get_data(as_text=True))
    assert "Next: session 3 of 16" in page  # the box's position (2), not the file's (none)


# -- the editor -----------------------------------------------------------------------------------


def test_write_reorder_and_save_a_course_without_javascript(app, client, data_dir, announcer):
    tok = token(client, "/courses/new")
    rows = [("three-step-circle", "4", True)]
    added = client.post("/courses/new", data=course_form(tok, rows, op="add", new_circle="bus-stop"))
    html = added.get_data(as_text=True)
    assert added.status_code == 200 and 'name="c1_circle"' in html
    assert '<option value="bus-stop" selected>' in html.split('id="c1_circle"')[1].split("</select>")[0]
    assert "Sessions 1 to 4" in text_of(html) and "Session 5" in text_of(html)
    rows.append(("bus-stop", "1", False))
    moved = client.post("/courses/new", data=course_form(tok, rows, op="up:1")).get_data(as_text=True)
    first = moved.split('id="c0_circle"')[1].split("</select>")[0]
    assert '<option value="bus-stop" selected>' in first  # the second row is now first
    rows = [("bus-stop", "1", False), ("three-step-circle", "4", False)]
    checked = client.post("/courses/new", data=course_form(tok, rows, op="check"))
    assert checked.status_code == 200 and "No problems found" in checked.get_data(as_text=True)
    assert not DataFolder(data_dir).course("tuesday-group").exists()  # Check saves nothing
    rows = [("three-step-circle", "2", True), ("three-step-circle", "3", False)]
    saved = client.post("/courses/new", data=course_form(tok, rows))
    assert saved.status_code == 302 and saved.location.endswith("/courses/")
    loaded = load_course(DataFolder(data_dir).course("tuesday-group")).course
    assert [m.label for m in loaded.plan()] == [
        "Session 1 of 5", "Session 2 of 5", "Bus stop after session 2", "Session 3 of 5", "Session 4 of 5",
        "Session 5 of 5"]
    assert loaded.bus_stop_circle == "bus-stop" and loaded.version == 1 and loaded.title == "Tuesday group"
    assert app.extensions["circlebox"].renders.wait_idle(10) and announcer.calls == ["tuesday-group"]
    page = text_of(client.get("/courses/").get_data(as_text=True))
    assert "Tuesday group" in page and "Its announcements are ready" in page
    edit_token = token(client, "/courses/tuesday-group/edit")
    six = [("three-step-circle", "6", False)]
    again = client.post("/courses/tuesday-group/edit", data=course_form(edit_token, six))
    assert again.status_code == 302
    assert load_course(DataFolder(data_dir).course("tuesday-group")).course.version == 2


def test_problems_are_shown_next_to_their_field_and_nothing_is_saved(client, data_dir):
    tok = token(client, "/courses/new")
    cases = [
        ([("three-step-circle", "eight", False)], {}, "c0_repeat", "whole number"),
        ([("three-step-circle", "0", False)], {}, "c0_repeat", "must be at least 1"),
        ([("three-step-circle", "2", False), ("three-step-circle", "2", True)], {}, "c1_bus_stop",
         "a bus stop after the last session has nobody to welcome"),
        ([("three-step-circle", "2", False), ("no-such-circle", "3", False)], {}, "c1_circle",
         "Sessions 3 to 5 use the circle 'no-such-circle', which this box does not have"),
        ([("three-step-circle", "2", True), ("three-step-circle", "1", False)], {"bus_stop_circle": "missing-stop"},
         "bus_stop_circle", "The bus stop after session 2 uses the circle 'missing-stop'"),
        ([("three-step-circle", "1", False)], {"course": "Bad Name"}, "course", "lower-case letters"),
        ([("three-step-circle", "1", False)], {"course": ""}, "course", "give the course a short name"),
        ([("three-step-circle", "1", False)], {"course": SAMPLE}, "course", "already a course called support-group"),
    ]
    for rows, extra, field, words in cases:
        response = client.post("/courses/new", data=course_form(tok, rows, **extra))
        html = response.get_data(as_text=True)
        assert response.status_code == 400, (field, text_of(html)[:500])
        assert f'id="err-{field}"' in html, (field, text_of(html)[:800])
        message = text_of(html.split(f'id="err-{field}"')[1].split("</span>")[0])
        assert words in message, (field, message)
    assert not DataFolder(data_dir).courses.exists() or not any(DataFolder(data_dir).courses.iterdir())


def test_add_a_session_offers_the_last_sessions_circle_not_the_bus_stop(client, data_dir):
    html = client.get("/courses/new").get_data(as_text=True)
    chooser = html.split('id="new_circle"')[1].split("</select>")[0]
    assert 'value="bus-stop" selected' not in chooser
    assert " selected" in chooser  # some ordinary circle is offered first
    tok = token(client, "/courses/new")
    added = client.post("/courses/new", data=course_form(tok, [("three-step-circle", "2", False)], op="add",
                                                         new_circle="three-step-circle"))
    chooser = added.get_data(as_text=True).split('id="new_circle"')[1].split("</select>")[0]
    assert 'value="three-step-circle" selected' in chooser


def test_a_packaged_course_is_copied_to_be_edited(client, data_dir):
    refused = client.get(f"/courses/{SAMPLE}/edit")
    assert refused.status_code == 302  # built in: copy it first
    tok = token(client, "/courses/")
    copied = client.post(f"/courses/{SAMPLE}/copy", data={"csrf_token": tok, "new_id": "our-group"})
    html = copied.get_data(as_text=True)
    assert copied.status_code == 200 and 'value="our-group"' in html and "This is a copy of support-group" in html
    saved = client.post("/courses/new", data=course_form(tok, [("three-step-circle", "8", True),
                                                                ("three-step-circle", "8", False)],
                                                         course="our-group", copy_of=SAMPLE))
    assert saved.status_code == 302
    raw = yaml.safe_load(DataFolder(data_dir).course("our-group").read_text())
    assert raw["messages"]["session"] == "This is session {n} of {total}."  # kept from the copied course
    taken = client.post(f"/courses/{SAMPLE}/copy", data={"csrf_token": tok, "new_id": "our-group"})
    assert taken.status_code == 400 and 'id="err-new_id"' in taken.get_data(as_text=True)


def test_use_on_the_box_makes_the_announcements_then_writes_the_admin_layer(app, client, data_dir, announcer):
    tok = token(client, "/courses/")
    first = client.post(f"/courses/{SAMPLE}/use", data={"csrf_token": tok})
    assert first.status_code == 302
    assert app.extensions["circlebox"].renders.wait_idle(10) and announcer.calls == [SAMPLE]
    layer = yaml.safe_load((data_dir / "admin-config.yaml").read_text())
    assert layer["session"]["course"] == SAMPLE
    assert app.extensions["circlebox"].config.session.course == SAMPLE
    page = text_of(client.get("/courses/").get_data(as_text=True))
    assert "on the box" in page and "The box plays the course “Therapists' support group”" in page
    stopped = client.post("/courses/stop-using", data={"csrf_token": tok})
    assert stopped.status_code == 302
    assert yaml.safe_load((data_dir / "admin-config.yaml").read_text())["session"]["course"] is None
    again = client.post(f"/courses/{SAMPLE}/use", data={"csrf_token": tok})  # announcements ready: at once
    assert "The box is off: it will use support-group when it starts." in text_of(
        client.get(again.location).get_data(as_text=True))
    assert yaml.safe_load((data_dir / "admin-config.yaml").read_text())["session"]["course"] == SAMPLE
    assert announcer.calls == [SAMPLE]
    assert client.post("/courses/no-such-course/use", data={"csrf_token": tok}).status_code == 404


def test_forms_need_the_csrf_token(client, data_dir):
    refused = client.post(f"/courses/{SAMPLE}/use", data={})
    assert refused.status_code == 400 and not (data_dir / "admin-config.yaml").exists()


# -- the panel ------------------------------------------------------------------------------------


def test_the_panel_shows_the_session_and_lets_the_facilitator_choose_another(client, course_box):
    page = text_of(client.get("/panel/").get_data(as_text=True))
    assert "Session 3 of 16: Three-step circle" in page and "Choose another session" in page
    assert "Bus stop after session 8: Bus stop" in page and "Session 1 of 16: Three-step circle (held)" in page
    tok = token(client, "/panel/")
    chosen = client.post("/panel/course-session", data={"csrf_token": tok, "index": "8"})
    assert chosen.status_code == 303 and course_box.chosen == [8]
    assert "Next on the box: Bus stop after session 8: Bus stop." in text_of(
        client.get("/panel/").get_data(as_text=True))
    assert client.get("/panel/status.json").get_json()["course_label"] == "Bus stop after session 8: Bus stop"
    course_box.dispatch("start", "button:next")  # a circle runs: the box refuses
    refused = client.post("/panel/course-session", data={"csrf_token": tok, "index": "3"})
    assert refused.status_code == 303 and course_box.position == 8
    assert ("The box did not change the session: a circle is running: choose another session after it ends"
            in text_of(client.get("/panel/").get_data(as_text=True)))


def test_rehearse_on_the_panel_sends_the_rehearse_action(client, course_box):
    page = client.get("/panel/").get_data(as_text=True)
    assert 'value="rehearse"' in page and "never counted as a circle held" in page
    response = client.post("/panel/press", json={"action": "rehearse"},
                           headers={"X-CSRFToken": token(client, "/panel/")})
    assert response.status_code == 200, response.get_json()
    assert course_box.pressed[-1] == ("rehearse", "admin")


def test_no_course_block_without_a_course(client, data_dir):
    from test_admin_support import serve_fake_box

    _box, server = serve_fake_box(data_dir)
    try:
        page = client.get("/panel/").get_data(as_text=True)
    finally:
        server.close()
    assert 'id="course"' not in page and 'value="rehearse"' in page


# -- the circle editor's facilitator note ----------------------------------------------------------


def test_a_facilitator_note_is_saved_into_the_circle_and_shown_again(app, client, data_dir):
    steps = three_steps()
    steps[1]["s1_notes"] = "Watch for anyone who goes quiet. [pause 1] If someone is distressed, pause the round."
    response = client.post("/circles/new", data=form(token(client, "/circles/new"), steps))
    assert response.status_code == 302, text_of(response.get_data(as_text=True))[:800]
    assert app.extensions["circlebox"].renders.wait_idle(30)
    saved = load_script(data_dir / "scripts" / "new-circle.yaml").script
    assert saved.steps[1].notes[0] == "Watch for anyone who goes quiet."
    assert saved.steps[1].notes[1].pause == 1 and saved.steps[0].notes is None
    assert "step:share:notes" in saved.prompts()  # rendered with the circle, for rehearsals
    html = client.get("/circles/new-circle/edit").get_data(as_text=True)
    assert "Facilitator note (spoken only in rehearsal)" in html
    assert "If someone is distressed, pause the round." in html.split('id="s1_notes"')[1].split("</textarea>")[0]


def test_a_note_that_is_too_long_is_refused_at_its_field(client, data_dir):
    steps = [step(0, "welcome", text="Welcome.", notes="x" * 20_001)]
    response = client.post("/circles/new", data=form(token(client, "/circles/new"), steps, voice=VOICE))
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and 'id="err-s0_notes"' in html and "a note can be at most" in html
    assert not (data_dir / "scripts" / "new-circle.yaml").exists()


def test_a_course_no_voice_can_say_is_used_and_the_list_says_why_it_is_unannounced(app, client, data_dir):
    """A French course on a box whose voices speak English: Use on the box still puts it on the
    box; its sessions are not announced (never French read by an English voice), and the list
    says why."""
    from device.course_play import render_announcements

    app.extensions["circlebox"].render_course = render_announcements  # the real one: it refuses before Piper
    DataFolder(data_dir).courses.mkdir(parents=True, exist_ok=True)
    DataFolder(data_dir).course("groupe-du-mardi").write_text(
        "course: groupe-du-mardi\ntitle: Groupe du mardi\nversion: 1\nlanguage: fr\n"
        "sessions:\n  - circle: three-step-circle\n    repeat: 4\n", encoding="utf-8")
    tok = token(client, "/courses/")
    assert client.post("/courses/groupe-du-mardi/use", data={"csrf_token": tok}).status_code == 302
    assert app.extensions["circlebox"].renders.wait_idle(10)
    assert yaml.safe_load((data_dir / "admin-config.yaml").read_text())["session"]["course"] == "groupe-du-mardi"
    page = text_of(client.get("/courses/").get_data(as_text=True))
    assert ("The box cannot say which session it is: no voice on this box speaks French (the language of "
            "course 'groupe-du-mardi': en_US-joe-medium speaks English)") in page
