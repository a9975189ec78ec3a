"""The settings page saves through the config's own section models: saving works again and
again, each problem is said next to its field in plain words, and the box is told."""

from __future__ import annotations

import html as html_text
import json

import pytest
import yaml
from test_admin_support import make_app, ready_client, token

from device.config import load_config
from device.control import ControlServer, socket_path
from local_admin.applies import Change, applies_sentence, tell_box
from local_admin.backends import BoxNotRunning, Control

NOT_A_CODE = "is not a DHIS2 code: codes are 11 letters and digits, starting with a letter"


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def page(data_dir):
    app = make_app(data_dir)
    return app, ready_client(app, data_dir)


def dhis2_form(tok: str, **codes: str) -> dict[str, str]:
    return {"csrf_token": tok, "section": "dhis2", "org_unit": "ImspTQPwCqd",
            "period_type": "monthly", "category_option_combo": "", "data_set": "", **codes}


def listening_form(tok: str, phrases: str) -> dict[str, str]:
    return {"csrf_token": tok, "section": "listening", "listen_enabled": "on",
            "listen_noise_margin_db": "6", "listen_speech_start_s": "0.3",
            "listen_speech_end_hangover_s": "0.6", "listen_min_speech_db": "-60",
            "vad_aggressiveness": "2", "commands_enabled": "on", "commands_language": "en",
            "phrases": phrases}


def saved_layer(data_dir) -> dict:
    return yaml.safe_load((data_dir / "admin-config.yaml").read_text())


def said(html: str, field: str) -> str:
    """The message shown next to `field` ("" when there is none), as the reader sees it."""
    parts = html.split(f'id="err-{field}"')
    return html_text.unescape(parts[1].split("</span>")[0]) if len(parts) > 1 else ""


def box_config(data_dir):
    return load_config(etc_path=None, overrides={"paths": {"data_dir": str(data_dir)}}, environ={})


def test_a_second_data_element_can_be_added_after_the_first_save(page, data_dir):
    app, client = page
    tok = token(client, "/settings/")
    assert client.post("/settings/", data=dhis2_form(tok, de_sessions="CbxSess0001")).status_code == 302
    second = client.post("/settings/", data=dhis2_form(tok, de_sessions="CbxSess0001",
                                                       de_attendance="CbxAtt00001"))
    assert second.status_code == 302, second.get_data(as_text=True)
    both = {"sessions": "CbxSess0001", "attendance": "CbxAtt00001"}
    assert saved_layer(data_dir)["dhis2"]["data_elements"] == both
    assert app.extensions["circlebox"].config.dhis2.data_elements == both
    assert box_config(data_dir).dhis2.data_elements == both  # what the box loads
    # emptying a field takes that code out, on the page and in what the box loads
    assert client.post("/settings/", data=dhis2_form(tok, de_attendance="CbxAtt00001")).status_code == 302
    assert box_config(data_dir).dhis2.data_elements == {"attendance": "CbxAtt00001"}
    assert app.extensions["circlebox"].config.dhis2.data_elements == {"attendance": "CbxAtt00001"}


def test_a_second_phrase_can_be_added_after_the_first_save(page, data_dir):
    _, client = page
    tok = token(client, "/settings/")
    assert client.post("/settings/", data=listening_form(tok, "next step = next")).status_code == 302
    second = client.post("/settings/", data=listening_form(tok, "next step = next\nplease move on = next"))
    assert second.status_code == 302, second.get_data(as_text=True)
    assert box_config(data_dir).listening.commands.phrases == {"next step": "next", "please move on": "next"}
    html = client.get("/settings/").get_data(as_text=True)
    assert "please move on = next" in html  # the form shows what the box now has


def test_codes_that_are_not_dhis2_codes_are_refused_next_to_their_field(page, data_dir):
    _, client = page
    tok = token(client, "/settings/")
    assert client.post("/settings/", data=dhis2_form(tok, de_sessions="CbxSess0001")).status_code == 302
    before = (data_dir / "admin-config.yaml").read_text()
    for form, field in (
        (dhis2_form(tok, org_unit="abc", de_sessions="CbxSess0001"), "org_unit"),
        (dhis2_form(tok, de_sessions="CbxSess0001", de_attendance="abc"), "de_attendance"),
        (dhis2_form(tok, de_sessions="CbxSess0001", data_set="CBX_SESSIONS"), "data_set"),
    ):
        bad = client.post("/settings/", data=form)
        html = bad.get_data(as_text=True)
        error = said(html, field)
        assert bad.status_code == 400 and NOT_A_CODE in error and "maintenance app" in error, field
        assert "unknown key" not in html and "dhis2: " not in html
    assert (data_dir / "admin-config.yaml").read_text() == before  # nothing saved
    client.post("/settings/", data=dhis2_form(tok, de_sessions="CbxSess0001"))
    body = json.loads(client.get("/usage/dhis2.json").get_data(as_text=True))
    assert "abc" not in json.dumps(body)


def test_phrase_problems_are_said_next_to_the_phrases(page):
    _, client = page
    tok = token(client, "/settings/")
    for phrases, words in (
        ("next = next", "'next': use two words or more"),
        ("jump now = fly", "'jump now': unknown action 'fly'"),
        ("next step", "line 1: write it as: phrase = action"),
    ):
        bad = client.post("/settings/", data=listening_form(tok, phrases))
        html = bad.get_data(as_text=True)
        assert bad.status_code == 400 and words in said(html, "phrases")
        assert "unknown key" not in html


def test_an_empty_phrase_list_means_the_languages_own_phrases(page, data_dir):
    _, client = page
    tok = token(client, "/settings/")
    form = {**listening_form(tok, ""), "commands_language": "ko"}
    assert client.post("/settings/", data=form).status_code == 302
    assert "넘어가 주세요" in box_config(data_dir).listening.commands.phrases


def test_a_bad_setting_the_page_does_not_show_is_said_on_the_form_saved(page, data_dir):
    _, client = page
    tok = token(client, "/settings/")
    (data_dir / "admin-config.yaml").write_text("dhis2: {attribute_option_combo: abc}\n")  # by hand
    bad = client.post("/settings/", data=dhis2_form(tok, de_sessions="CbxSess0001"))
    html = bad.get_data(as_text=True)
    shown = said(html, "form_dhis2")
    assert bad.status_code == 400 and "dhis2.attribute_option_combo" in shown and NOT_A_CODE in shown


# -- telling the box ------------------------------------------------------------------------------


@pytest.mark.parametrize("outcome, change, sentence", [
    (BoxNotRunning("no socket"), Change("them"), "The box is off: it will use them when it starts."),
    ({"ok": True, "when": "now"}, Change("them"), "The box is using them now."),
    ({"ok": True, "when": "after_circle"}, Change("them", at_once="volume"),
     "A circle is running: volume changes now, the rest when this circle ends."),
    ({"ok": True, "when": "after_circle"}, Change("friday-circle"),
     "A circle is running: the box will use friday-circle when this circle ends."),
    (BoxNotRunning("no socket"), Change("friday-circle"),
     "The box is off: it will use friday-circle when it starts."),
    ({"ok": False, "error": "the circle file is missing"}, Change("them"),
     "The box could not take them now (the circle file is missing); it will use them when it next starts."),
])
def test_the_sentence_says_when_the_box_uses_a_change(outcome, change, sentence):
    assert applies_sentence(outcome, change) == sentence


needs_reload = pytest.mark.skipif(not hasattr(Control, "reload"),
                                  reason="local_admin.backends.Control.reload has not landed yet")


@needs_reload
def test_tell_box_asks_the_runtime_over_the_control_socket(data_dir):
    asked = []
    server = ControlServer(socket_path(data_dir), dict, lambda action, source: None,
                           handlers={"reload": lambda request: asked.append(request) or
                                     {"ok": True, "when": "after_circle"}}).start()
    try:
        said = tell_box(Control(socket_path(data_dir)), Change("them", at_once="volume"))
    finally:
        server.close()
    assert len(asked) == 1
    assert said == "A circle is running: volume changes now, the rest when this circle ends."
    assert tell_box(Control(socket_path(data_dir))) == "The box is off: it will use them when it starts."


@needs_reload
def test_saving_settings_tells_the_box_and_says_when_it_uses_them(page, data_dir):
    _, client = page
    tok = token(client, "/settings/")
    off = client.post("/settings/", data=listening_form(tok, "next step = next"), follow_redirects=True)
    assert "Saved. The box is off: it will use them when it starts." in off.get_data(as_text=True)
    asked = []
    server = ControlServer(socket_path(data_dir), dict, lambda action, source: None,
                           handlers={"reload": lambda request: asked.append(request) or
                                     {"ok": True, "when": "now"}}).start()
    try:
        idle = client.post("/settings/", data=dhis2_form(tok, de_sessions="CbxSess0001"),
                           follow_redirects=True)
    finally:
        server.close()
    assert len(asked) == 1 and "Saved. The box is using them now." in idle.get_data(as_text=True)


def test_course_codes_are_saved_from_their_field_and_checked_there(page, data_dir):
    _app, client = page
    tok = token(client, "/settings/")
    both = {"support-group": "AbCdEfGhIj1", "teens": "BcDeFgHiJk2"}
    courses = "support-group = AbCdEfGhIj1\n\nteens = BcDeFgHiJk2"
    saved = client.post("/settings/", data=dhis2_form(tok, de_sessions="CbxSess0001", courses=courses))
    assert saved.status_code == 302
    assert box_config(data_dir).dhis2.courses == both  # what the box loads
    assert "teens = BcDeFgHiJk2</textarea>" in client.get("/settings/").get_data(as_text=True)
    for text, words in (("teens = abc", ["teens:", NOT_A_CODE]), ("Teens Group = BcDeFgHiJk2", ["not a course id"]),
                        ("teens BcDeFgHiJk2", ["line 1", "course = code"])):
        refused = client.post("/settings/", data=dhis2_form(tok, de_sessions="CbxSess0001", courses=text))
        shown = said(refused.get_data(as_text=True), "courses")
        assert refused.status_code == 400 and all(w in shown for w in words), shown
        assert box_config(data_dir).dhis2.courses == both  # a refused save changes nothing
    # an older form without the field keeps the codes; an empty field removes them
    assert client.post("/settings/", data=dhis2_form(tok, de_sessions="CbxSess0001")).status_code == 302
    assert box_config(data_dir).dhis2.courses == both
    assert client.post("/settings/", data=dhis2_form(tok, de_sessions="CbxSess0001", courses="")).status_code == 302
    assert box_config(data_dir).dhis2.courses == {}
