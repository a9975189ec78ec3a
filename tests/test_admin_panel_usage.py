"""The live panel, /system/ and usage as facilitators and managers meet them (Flask test client).

The box behind the page is a fake runtime on the real control socket (test_admin_support);
the browser side of the same behaviour is in test_admin_browser.py.
"""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from test_admin_support import FakeBox, make_app, ready_client, serve_fake_box, token

from device.usage import UsageStore

ARECORD = ("mic: microphone default failed to start (exit 1): arecord: main:831: audio open "
           "error: No such file or directory; retrying, buttons still work")


class PanelBox(FakeBox):
    """The fake runtime, plus what the panel now shows: a countdown, faults, the clock, the
    volume slider's action and Stop."""

    def __init__(self, *, faults=(), countdown=None, clock=None, health=None, listening=None):
        super().__init__()
        self.faults = list(faults)
        self.countdown = countdown
        self.clock = clock
        self.health = health
        self.listening = listening

    def status(self) -> dict:
        status = super().status()
        status["faults"] = list(self.faults)
        status["countdown"] = self.countdown
        status["volume_cap"] = 0.9
        if self.clock is not None:
            status["clock"] = self.clock
        if self.health is not None:
            status["health"] = dict(self.health)
        if self.listening is not None:
            status["listening"] = dict(self.listening)
        return status

    def dispatch(self, action: str, source: str = "admin") -> None:
        super().dispatch(action, source)
        with self.lock:
            if action.startswith("volume:"):
                self.volume = min(0.9, int(action.split(":")[1]) / 100)
            elif action == "stop":
                self.state, self.index = "idle", None


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def panel(data_dir):
    """(client, box, csrf token) with a PanelBox serving the control socket."""
    app = make_app(data_dir)
    client = ready_client(app, data_dir)
    box, server = serve_fake_box(data_dir, PanelBox(faults=[ARECORD], countdown={
        "kind": "turn", "turn": 3, "elapsed_s": 78.0, "limit_s": 120.0, "remaining_s": 42.0}))
    try:
        yield client, box, token(client, "/panel/")
    finally:
        server.close()


# -- the live panel


def test_stop_asks_first_with_and_without_javascript(panel):
    client, box, tok = panel
    client.post("/panel/press", data={"csrf_token": tok, "action": "start"})
    # without JavaScript: a confirmation page, nothing sent yet
    ask = client.post("/panel/press", data={"csrf_token": tok, "action": "stop"})
    html = ask.get_data(as_text=True)
    assert ask.status_code == 200
    assert "End the circle now? It will be saved as ended early." in html
    assert 'name="confirm" value="yes"' in html and 'value="stop"' in html
    assert box.pressed == [("start", "admin")]
    yes = client.post("/panel/press", data={"csrf_token": tok, "action": "stop", "confirm": "yes"})
    assert yes.status_code == 303 and box.pressed[-1] == ("stop", "admin")
    # the page's script: a 409 with the question, then the confirmed press
    headers = {"X-CSRFToken": tok}
    asked = client.post("/panel/press", json={"action": "stop"}, headers=headers)
    assert asked.status_code == 409 and asked.get_json()["confirm"].startswith("End the circle now?")
    assert len(box.pressed) == 2
    done = client.post("/panel/press", json={"action": "stop", "confirm": True}, headers=headers)
    assert done.status_code == 200 and box.pressed[-1] == ("stop", "admin")
    # other buttons do not ask
    assert client.post("/panel/press", json={"action": "next"}, headers=headers).status_code == 200


def test_the_volume_slider_sets_the_live_volume(panel):
    client, box, tok = panel
    html = client.get("/panel/").get_data(as_text=True)
    slider = re.search(r'<input type="range" id="volume"[^>]*>', html)[0]
    assert 'max="90"' in slider and 'value="70"' in slider  # the cap, and the box's volume now
    moved = client.post("/panel/volume", data={"csrf_token": tok, "percent": "40"})
    assert moved.status_code == 303 and box.pressed[-1] == ("volume:40", "admin")
    reply = client.post("/panel/press", json={"action": "volume:55"}, headers={"X-CSRFToken": tok})
    assert reply.get_json()["status"]["volume_pct"] == 55 and box.pressed[-1] == ("volume:55", "admin")
    bad = client.post("/panel/volume", data={"csrf_token": tok, "percent": "loud"},
                      follow_redirects=True)
    assert "from 0 to 100 percent" in bad.get_data(as_text=True) and len(box.pressed) == 2


def test_a_fault_is_in_plain_words_with_the_detail_behind_a_toggle(panel):
    client, _box, _tok = panel
    live = client.get("/panel/status.json").get_json()
    [problem] = live["problems"]
    assert problem["summary"] == "The microphone is not working."
    assert "Check its cable; the buttons still work" in problem["advice"]
    assert "arecord: main:831" in problem["detail"]
    html = client.get("/panel/").get_data(as_text=True)
    assert "The microphone is not working." in html
    raw_at = html.index("arecord: main:831")
    toggle = html.rfind("<details>", 0, raw_at)
    assert toggle != -1 and html.find("</details>", toggle) > raw_at  # only inside the toggle
    assert html.count("arecord: main:831") == 1


def test_the_countdown_of_a_turn_is_on_the_panel(panel):
    client, box, _tok = panel
    live = client.get("/panel/status.json").get_json()
    assert live["countdown"]["label"] == "Turn 3"
    assert live["countdown"]["text"] == "0:42 left of 2:00" and live["countdown"]["pct"] == 65
    html = client.get("/panel/").get_data(as_text=True)
    assert 'id="countdown-remaining">0:42<' in html and 'id="countdown" hidden' not in html
    assert live["countdown"]["note"] == "" and 'id="countdown-note" hidden' in html
    # a voice the box did not hear clearly: the end of the turn is the facilitator's
    box.countdown = {**box.countdown, "left_to_facilitator": True}
    left = client.get("/panel/status.json").get_json()["countdown"]
    assert left["note"] == ("The box did not hear this voice clearly, so it will not end this turn "
                            "by itself: press NEXT when the person has finished.")
    html = client.get("/panel/").get_data(as_text=True)
    assert 'id="countdown-note" hidden' not in html and left["note"] in html
    # a room too noisy to tell a silent turn from a soft voice: the same, and why
    box.countdown = {**box.countdown, "left_to_facilitator": True, "room_too_noisy": True}
    noisy = client.get("/panel/status.json").get_json()["countdown"]
    assert noisy["note"] == ("The room is too noisy for the box to tell whether someone is "
                             "speaking softly, so it will not end this turn by itself: press NEXT "
                             "when the person has finished or passes.")
    box.countdown = {"kind": "timer", "turn": None, "elapsed_s": 310.0, "limit_s": 300.0,
                     "remaining_s": -10.0}
    over = client.get("/panel/status.json").get_json()["countdown"]
    assert over["label"] == "Timer" and over["text"] == "time is up (5:00)" and over["over"]
    box.countdown = None
    assert client.get("/panel/status.json").get_json()["countdown"] is None
    assert 'id="countdown" hidden' in client.get("/panel/").get_data(as_text=True)


def test_system_reads_the_same_live_status_as_the_panel(data_dir):
    """The box speaks with listening off: no microphone health. /system/ once said the box was
    not running."""
    app = make_app(data_dir)
    client = ready_client(app, data_dir)
    box = PanelBox(health={"speaker": "ok", "buttons": "ok"},
                   listening={"commands": "off: listening is not enabled in config"})
    box, server = serve_fake_box(data_dir, box)
    try:
        client.post("/panel/press", data={"csrf_token": token(client, "/panel/"), "action": "start"})
        panel_parts = client.get("/panel/status.json").get_json()["parts"]
        system = client.get("/system/").get_data(as_text=True)
    finally:
        server.close()
    assert "not running" not in system
    mic = next(p for p in panel_parts if p["part"] == "mic")
    assert mic["state"] == "off" and mic["text"] in system
    assert '<li class="off" data-part="mic"><strong>Microphone</strong>: Not in use' in system
    speaker = next(p for p in panel_parts if p["part"] == "speaker")
    assert speaker["state"] == "ok" and '<li class="ok" data-part="speaker">' in system
    off = client.get("/system/").get_data(as_text=True)
    assert "Not known: the box is not running." in off


def test_system_shows_a_broken_part_in_plain_words(data_dir):
    app = make_app(data_dir)
    client = ready_client(app, data_dir)
    box = PanelBox(faults=["speaker: mixer: unable to open audio device 'hw:1' (ALSA error -2)"],
                   health={"speaker": "mixer: unable to open audio device 'hw:1' (ALSA error -2)"})
    box, server = serve_fake_box(data_dir, box)
    try:
        html = client.get("/system/").get_data(as_text=True)
    finally:
        server.close()
    assert '<li class="bad" data-part="speaker"><strong>Speaker</strong>: The speaker is not working' in html
    assert "<pre>mixer: unable to open audio device &#39;hw:1&#39; (ALSA error -2)</pre>" in html


def test_the_box_clock_is_set_from_the_phone(data_dir):
    from device.control import ControlServer, socket_path

    app = make_app(data_dir)
    client = ready_client(app, data_dir)
    box = PanelBox(clock={"time": "2026-11-01T00:05:00+00:00", "trusted": False})
    asked = []

    def set_clock(request):
        asked.append(request["time"])
        if request["time"] < 1.6e9:
            return {"ok": False, "error": "clock not set: that time is before 2020"}
        box.clock = {"time": "2027-03-04T10:00:00+00:00", "trusted": True}
        return {"ok": True, "time": box.clock["time"], "trusted": True}

    server = ControlServer(socket_path(data_dir), box.status, box.dispatch,
                           handlers={"set_clock": set_clock}).start()
    try:
        tok = token(client, "/panel/")
        headers = {"X-CSRFToken": tok}
        before = client.get("/panel/status.json").get_json()["clock"]
        assert before["trusted"] is False and before["text"] == "2026-11-01 00:05 UTC"
        html = client.get("/panel/").get_data(as_text=True)
        assert "Set the box clock to this phone's time" in html
        done = client.post("/panel/clock", json={"epoch_ms": 1_804_154_400_000}, headers=headers)
        assert done.status_code == 200 and asked == [1_804_154_400.0]
        assert done.get_json()["status"]["clock"]["trusted"] is True
        refused = client.post("/panel/clock", json={"epoch_ms": 1_000}, headers=headers)
        assert refused.status_code == 400 and "before 2020" in refused.get_json()["error"]
        for bad in ({"epoch_ms": "now"}, {"epoch_ms": True}, {}):
            assert client.post("/panel/clock", json=bad, headers=headers).status_code == 400
        assert len(asked) == 2
        assert client.post("/panel/clock", json={"epoch_ms": 1}).status_code == 400  # CSRF
    finally:
        server.close()
    off = client.post("/panel/clock", json={"epoch_ms": 1_804_154_400_000}, headers=headers)
    assert off.status_code == 503 and "not running" in off.get_json()["error"]


# -- usage


def add_circles(data_dir):
    """A real circle, a 2-second Start/Stop, a long one with no core step, one with no clock."""
    store = UsageStore(data_dir / "usage.sqlite")
    base = {"box": "clinic-north", "script": "friday-circle", "script_version": 2,
            "steps_planned": 5, "core_planned": 2, "repeats": 0, "pauses": 0, "help_count": 0,
            "clock_trusted": True, "rounds": [{"step": "share", "turns": 8, "passes": 1}]}
    rows = [
        {"id": "real", "started_at": "2026-03-02T09:00:00+00:00", "duration_s": 2700.0,
         "completed": True, "steps_delivered": 5, "core_delivered": 2, "attendance": 9},
        {"id": "tryout", "started_at": "2026-03-02T08:50:00+00:00", "duration_s": 2.0,
         "completed": False, "steps_delivered": 0, "core_delivered": 0},
        {"id": "nocore", "started_at": "2026-03-03T09:00:00+00:00", "duration_s": 1500.0,
         "completed": False, "steps_delivered": 1, "core_delivered": 0},
        {"id": "noclock", "started_at": "2026-11-01T00:03:00+00:00", "duration_s": 1800.0,
         "completed": True, "steps_delivered": 5, "core_delivered": 2, "attendance": 7,
         "clock_trusted": False},
    ]
    for row in rows:
        store.upsert({**base, **row})
    store.close()


DHIS2 = {"org_unit": "ImspTQPwCqd", "period_type": "monthly",
         "data_elements": {"sessions": "CbxSess0001", "attendance": "CbxAtt00001"}}


def test_test_circles_are_marked_and_left_out_of_totals_and_exports(data_dir):
    app = make_app(data_dir, dhis2=DHIS2)
    client = ready_client(app, data_dir)
    add_circles(data_dir)
    html = client.get("/usage/").get_data(as_text=True)
    assert 'id="total-sessions">2<' in html  # the real one and the one without a clock
    assert html.count('class="badge warn test-badge">test<') == 2
    assert "shorter than 10 minutes" in html and "no core step delivered" in html
    assert "2 test circles are left out of these totals" in html
    csv_ids = {r["id"] for r in csv.DictReader(io.StringIO(
        client.get("/usage/export.csv").get_data(as_text=True)))}
    assert csv_ids == {"real", "noclock"}
    body = json.loads(client.get("/usage/dhis2.json").get_data(as_text=True))
    sessions = {v["period"]: v["value"] for v in body["dataValues"] if v["dataElement"] == "CbxSess0001"}
    assert sessions == {"202603": "1", "202611": "1"}

    # "include test circles": everything counts, and the downloads carry the choice
    html = client.get("/usage/?tests=1").get_data(as_text=True)
    assert 'id="total-sessions">4<' in html and 'id="tests" name="tests" value="1" checked' in html
    assert "/usage/export.csv?tests=1" in html
    rows = list(csv.DictReader(io.StringIO(client.get("/usage/export.csv?tests=1").get_data(as_text=True))))
    assert {r["id"]: r["test"] for r in rows} == {"real": "0", "tryout": "1", "nocore": "1", "noclock": "0"}
    body = json.loads(client.get("/usage/dhis2.json?tests=1").get_data(as_text=True))
    sessions = {v["period"]: v["value"] for v in body["dataValues"] if v["dataElement"] == "CbxSess0001"}
    assert sessions["202603"] == "3"


def test_the_minimum_length_of_a_circle_is_a_setting(data_dir):
    app = make_app(data_dir, dhis2={**DHIS2, "min_circle_minutes": 40})
    client = ready_client(app, data_dir)
    add_circles(data_dir)
    html = client.get("/usage/").get_data(as_text=True)
    assert 'id="total-sessions">1<' in html and "shorter than 40 minutes" in html


def test_an_uncertain_date_is_explained_in_words(data_dir):
    app = make_app(data_dir)
    client = ready_client(app, data_dir)
    add_circles(data_dir)
    html = client.get("/usage/").get_data(as_text=True)
    note = "date uncertain: the box's clock had not been set when this circle ran"
    assert html.count(note) == 1
    row = html[html.index('id="row-noclock"'):]
    assert row.index(note) < row.index("</tr>")  # on that circle's row, not in a tooltip


def test_a_record_is_deleted_only_after_confirmation(data_dir):
    app = make_app(data_dir)
    client = ready_client(app, data_dir)
    add_circles(data_dir)
    tok = token(client, "/usage/")
    ask = client.post("/usage/tryout/delete", data={"csrf_token": tok, "tests": "1"})
    html = ask.get_data(as_text=True)
    assert ask.status_code == 200 and "Delete the record of the circle" in html
    assert "friday-circle" in html and "2026-03-02 at 08:50" in html
    assert 'href="/usage/?tests=1#sessions"' in html  # "No" goes back to the same view

    def ids():
        store = UsageStore(data_dir / "usage.sqlite")
        try:
            return {r["id"] for r in store.sessions()}
        finally:
            store.close()

    assert "tryout" in ids()
    done = client.post("/usage/tryout/delete", data={"csrf_token": tok, "tests": "1", "confirm": "yes"},
                       follow_redirects=True)
    assert "Deleted the record" in done.get_data(as_text=True)
    assert ids() == {"real", "nocore", "noclock"}
    again = client.post("/usage/tryout/delete", data={"csrf_token": tok, "confirm": "yes"},
                        follow_redirects=True)
    assert "not in the records" in again.get_data(as_text=True)
    assert client.post("/usage/real/delete", data={"confirm": "yes"}).status_code == 400  # CSRF
    assert "real" in ids()


def test_the_last_press_is_said_in_a_facilitators_words():
    from local_admin.panel import last_input_words

    assert last_input_words({"source": "button:help", "action": "explain"}) == "Explain, from the box's help button"
    assert last_input_words({"source": "admin", "action": "start"}) == "Start, from this page"
    assert last_input_words({"source": "voice", "action": "next"}) == "Next, from a spoken command"
    assert last_input_words({"source": "admin", "action": "goto:share"}) == "Go to step share, from this page"
    assert last_input_words(None) == "nothing yet"


def test_a_room_too_noisy_to_be_sure_of_silence_is_said_next_to_the_level_meter(data_dir):
    from local_admin.panel import status_view

    app = make_app(data_dir)
    app.app_context().push()
    too_noisy = {"too_noisy": True, "room_noise": "too_noisy", "noise_floor_db": -27.6,
                 "too_noisy_db": -31.0}
    view = status_view({"state": "in_round", "listening": too_noisy}, None)
    assert view["too_noisy"] is True
    assert view["noise_note"].startswith("The room is too noisy to be sure when someone has finished "
                                         "(background -28 dB, above -31 dB)")
    loud = {"too_noisy": False, "room_noise": "loud", "noise_floor_db": -36.2}
    note = status_view({"state": "idle", "listening": loud}, None)["noise_note"]
    assert note.startswith("The room is loud (background -36 dB): the box may not hear a soft voice")
    assert "closer" in note
    quiet = {"too_noisy": False, "room_noise": "quiet", "noise_floor_db": -52.0}
    assert status_view({"state": "idle", "listening": quiet}, None)["noise_note"] == ""
    assert status_view({"state": "idle", "listening": {}}, None)["noise_note"] == ""
    with app.test_request_context(headers={"Accept-Language": "sw"}):
        from local_admin.i18n import force_locale

        with force_locale("sw"):
            swahili = status_view({"state": "idle", "listening": loud}, None)["noise_note"]
    assert swahili and "The room" not in swahili and "-36" in swahili  # in the reader's language


def test_every_light_pattern_has_words_on_the_panel(data_dir):
    """The panel's "Light" line: the facilitator reads what the box's light says, never a
    pattern's code name (a turn left to her blinks `waiting`, then `turn_warn`)."""
    from device.leds import PATTERNS
    from local_admin.panel import LED_WORDS, status_view

    app = make_app(data_dir)
    with app.test_request_context():
        assert set(PATTERNS) - {"off"} <= set(LED_WORDS)
        assert status_view({"state": "in_round", "led": "turn_warn"}, None)["led"] == "time nearly up"
        assert status_view({"state": "in_round", "led": "waiting"}, None)["led"] == "waiting"


def test_the_voice_check_next_to_the_meter_says_how_well_the_box_heard_the_last_voice(data_dir):
    from local_admin.panel import VOICE_NOTE_FOR_S, status_view

    app = make_app(data_dir)
    app.app_context().push()

    def note(voice, age, **extra):
        listening = {"last_voice_db": voice, "last_voice_age_s": age, "clear_voice_db": 15.0,
                     **extra}
        return status_view({"state": "idle", "listening": listening}, None)["voice_note"]

    assert note(20.4, 4.0) == ("The last voice the box heard (4 s ago) stood 20 dB above the "
                               "room's noise: the box hears a voice like that well.")
    soft = note(8.2, 12.4)
    assert soft.startswith("The last voice the box heard (12 s ago) stood only 8 dB above the "
                           "room's noise (15 dB or more is clear)")
    assert "Move the box nearer to that seat" in soft
    assert "it leaves that person's turn for the facilitator to end with NEXT" in soft
    assert "stood only 14 dB" in note(14.6, 4.0)  # never "only 15 dB (15 dB or more is clear)"
    assert "stood 15 dB above the room's noise: the box hears" in note(15.0, 4.0)
    assert note(8.2, VOICE_NOTE_FOR_S + 1) == ""  # a voice minutes ago says nothing of the room now
    assert note(None, None) == ""
    assert status_view({"state": "idle", "listening": {}}, None)["voice_note"] == ""
    with app.test_request_context(headers={"Accept-Language": "fr"}):
        from local_admin.i18n import force_locale

        for lang in ("fr", "sw"):
            with force_locale(lang):
                said = note(8.2, 4.0)
            assert said and "The last voice" not in said and "8" in said and "15" in said


def test_the_usage_page_says_how_many_turns_the_box_did_not_hear_clearly(data_dir):
    """Per circle: turns heard clearly of those the box paced by listening, and the ones the
    facilitator ended; above the table, what the programme manager can do about it. A circle
    paced by the buttons says so; one recorded before the box counted says nothing."""
    app = make_app(data_dir)
    client = ready_client(app, data_dir)
    store = UsageStore(data_dir / "usage.sqlite")
    base = {"box": "clinic-north", "script": "friday-circle", "script_version": 2,
            "steps_planned": 5, "core_planned": 2, "steps_delivered": 5, "core_delivered": 2,
            "duration_s": 2700.0, "completed": True, "clock_trusted": True}
    def share(turns, listened, left):
        return [{"step": "share", "turns": turns, "passes": 0, "listened": listened,
                 "left_to_facilitator": left}]
    store.upsert({**base, "id": "far", "started_at": "2026-03-02T09:00:00+00:00",
                  "rounds": share(8, 8, 5)})
    store.upsert({**base, "id": "near", "started_at": "2026-03-09T09:00:00+00:00",
                  "rounds": share(7, 7, 0)})
    store.upsert({**base, "id": "buttons", "started_at": "2026-03-16T09:00:00+00:00",
                  "rounds": share(6, 0, 0)})
    store.upsert({**base, "id": "older", "started_at": "2026-02-23T09:00:00+00:00",
                  "rounds": [{"step": "share", "turns": 6, "passes": 0}]})
    store.close()
    html = client.get("/usage/").get_data(as_text=True)

    def heard(row_id):
        row = html[html.index(f'id="row-{row_id}"'):]
        row = row[:row.index("</tr>")]
        cell = row[row.index('class="heard"'):]
        return re.sub(r"<[^>]+>", "", cell[cell.index(">") + 1:cell.index("</td>")]).strip()

    assert heard("far") == "3 of 8 turns 5 ended by the facilitator"
    assert heard("near") == "7 of 7 turns"
    assert heard("buttons") == "buttons only"
    assert heard("older") == "–"
    note = html[html.index('id="hearing-note"'):]
    note = re.sub(r"\s+", " ", note[:note.index("</p>")])
    assert ("In 1 circle the box did not hear every speaker clearly: the facilitator ended 5 of "
            "its 8 turns with NEXT") in note
    assert "put it nearer to where people sit" in note and 'href="/settings/#listening"' in note
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(
        client.get("/usage/export.csv").get_data(as_text=True)))}
    assert (rows["far"]["turns_listened"], rows["far"]["turns_left_to_facilitator"]) == ("8", "5")
    assert (rows["buttons"]["turns_listened"], rows["older"]["turns_listened"]) == ("0", "")


def test_no_hearing_note_when_the_box_heard_every_voice_clearly(data_dir):
    app = make_app(data_dir)
    client = ready_client(app, data_dir)
    add_circles(data_dir)
    store = UsageStore(data_dir / "usage.sqlite")
    store.upsert({"id": "clear", "box": "b", "script": "c", "script_version": 1,
                  "started_at": "2026-03-04T09:00:00+00:00", "duration_s": 2700.0,
                  "completed": True, "steps_planned": 3, "steps_delivered": 3, "core_planned": 1,
                  "core_delivered": 1, "clock_trusted": True,
                  "rounds": [{"step": "share", "turns": 5, "passes": 0, "listened": 5,
                              "left_to_facilitator": 0}]})
    store.close()
    html = client.get("/usage/").get_data(as_text=True)
    assert 'id="row-clear"' in html and 'id="hearing-note"' not in html
