"""Settings, live panel, usage exports and the system page (Flask test client)."""

from __future__ import annotations

import csv
import io
import json

import pytest
import yaml
from test_admin_support import FakeBox, make_app, ready_client, serve_fake_box, token

from device.config import load_config
from device.usage import UsageStore


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


def box_form(tok, **values):
    data = {
        "csrf_token": tok,
        "section": "box",
        "box_name": "clinic-north",
        "box_site": "Room 2",
        "volume": "60",
        "volume_cap": "90",
    }
    data.update(values)
    return data


# -- settings


def test_settings_are_validated_at_the_field_and_saved_atomically(data_dir):
    app = make_app(data_dir)
    client = ready_client(app, data_dir)
    tok = token(client, "/settings/")
    ok = client.post("/settings/", data=box_form(tok))
    assert ok.status_code == 302
    layer = yaml.safe_load((data_dir / "admin-config.yaml").read_text())
    assert layer["audio"]["volume"] == 0.6 and layer["box"]["site"] == "Room 2"
    config = load_config(
        etc_path=None, overrides={"paths": {"data_dir": str(data_dir)}}, environ={}
    )
    assert config.audio.volume == 0.6  # the box's own config loader reads what was saved
    before = (data_dir / "admin-config.yaml").read_text()
    for values, field, message in (
        ({"volume": "95"}, "volume", "above the loudest"),
        ({"volume": "loud"}, "volume", "enter a number"),
        ({"volume_cap": "5"}, "volume_cap", "between 10 and 100"),
        ({"box_name": ""}, "box_name", "give the box a name"),
    ):
        bad = client.post("/settings/", data=box_form(tok, **values))
        html = bad.get_data(as_text=True)
        assert bad.status_code == 400 and f'id="err-{field}"' in html and message in html, values
    assert (data_dir / "admin-config.yaml").read_text() == before  # nothing saved


def test_button_listening_dhis2_and_access_settings(data_dir):
    app = make_app(data_dir)
    client = ready_client(app, data_dir)
    tok = token(client, "/settings/")
    buttons = {
        "csrf_token": tok,
        "section": "buttons",
        "btn0_press": "next",
        "btn0_hold": "skip",
        "btn1_press": "repeat",
        "btn1_hold": "",
        "btn2_press": "goto:share",
        "btn2_hold": "volume_down",
        "btn3_press": "help",
        "btn3_hold": "explain",
    }
    assert client.post("/settings/", data=buttons).status_code == 302
    assert app.extensions["circlebox"].config.buttons.map[2].press == "goto:share"
    assert app.extensions["circlebox"].config.buttons.map[1].hold is None
    bad = client.post("/settings/", data={**buttons, "btn0_press": "dance"})
    assert bad.status_code == 400 and 'id="err-btn0_press"' in bad.get_data(as_text=True)

    listening = {
        "csrf_token": tok,
        "section": "listening",
        "listen_enabled": "on",
        "listen_noise_margin_db": "12",
        "listen_speech_start_s": "0.3",
        "listen_speech_end_hangover_s": "0.6",
        "listen_min_speech_db": "-60",
        "vad_aggressiveness": "3",
        "commands_enabled": "on",
        "commands_language": "en",
        "phrases": "next step = next\nsay that again = repeat",
    }
    assert client.post("/settings/", data=listening).status_code == 302
    saved = yaml.safe_load((data_dir / "admin-config.yaml").read_text())["listening"]
    assert (
        saved["vad_aggressiveness"] == 3
        and saved["commands"]["phrases"]["say that again"] == "repeat"
        and "detector" not in saved  # a form without the choice keeps the saved detector
    )
    assert client.post("/settings/", data={**listening, "detector": "webrtc"}).status_code == 302
    saved = yaml.safe_load((data_dir / "admin-config.yaml").read_text())["listening"]
    assert saved["detector"] == "webrtc"
    page = client.get("/settings/").get_data(as_text=True)
    assert '<option value="webrtc" selected>' in page
    # the settings only WebRTC uses are under their own heading, saying Silero ignores them
    webrtc_only = page.split('id="webrtc-only"')[1].split("</fieldset>")[0]
    assert 'name="vad_aggressiveness"' in webrtc_only and 'name="listen_noise_margin_db"' in webrtc_only
    assert "these two change nothing" in webrtc_only and "listen_speech_start_s" not in webrtc_only
    for key, value, field in (
        ("detector", "loudest", "detector"),
        ("listen_noise_margin_db", "99", "listen_noise_margin_db"),
        ("phrases", "next = next", "phrases"),
        ("phrases", "jump now = fly", "phrases"),
    ):
        bad = client.post("/settings/", data={**listening, key: value})
        assert bad.status_code == 400 and f'id="err-{field}"' in bad.get_data(as_text=True)

    dhis2 = {
        "csrf_token": tok,
        "section": "dhis2",
        "org_unit": "ImspTQPwCqd",
        "period_type": "monthly",
        "category_option_combo": "",
        "data_set": "",
        "de_sessions": "CbxSess0001",
        "de_attendance": "CbxAtt00001",
    }
    assert client.post("/settings/", data=dhis2).status_code == 302
    bad = client.post("/settings/", data={**dhis2, "org_unit": "not a code!"})
    assert bad.status_code == 400 and 'id="err-org_unit"' in bad.get_data(as_text=True)

    access = {"csrf_token": tok, "section": "access", "allowed_hosts": "box.clinic.lan, 10.1.2.3"}
    assert client.post("/settings/", data=access).status_code == 302
    assert client.get("/login", headers={"Host": "box.clinic.lan"}).status_code == 200
    bad = client.post("/settings/", data={**access, "allowed_hosts": "bad_host!"})
    assert bad.status_code == 400 and 'id="err-allowed_hosts"' in bad.get_data(as_text=True)


def test_protected_keys_cannot_be_changed(tmp_path, data_dir):
    etc = tmp_path / "etc.yaml"
    etc.write_text(
        yaml.safe_dump({"protected": ["audio.volume_cap"], "paths": {"data_dir": str(data_dir)}})
    )
    config = load_config(etc_path=etc, environ={})
    from test_admin_support import FakeRender

    from local_admin import create_app

    app = create_app(config, testing=True, render_script=FakeRender())
    client = ready_client(app, data_dir)
    html = client.get("/settings/").get_data(as_text=True)
    cap_input = html.split('id="volume_cap"')[1].split(">")[0]
    assert "disabled" in cap_input
    client.post("/settings/", data=box_form(token(client, "/settings/"), volume_cap="100"))
    layer = yaml.safe_load((data_dir / "admin-config.yaml").read_text())
    assert "volume_cap" not in layer.get("audio", {})
    assert load_config(etc_path=etc, environ={}).audio.volume_cap == 0.9


# -- live panel


def test_panel_shows_the_box_and_presses_its_buttons(data_dir):
    app = make_app(data_dir)
    client = ready_client(app, data_dir)
    box, server = serve_fake_box(data_dir)
    try:
        html = client.get("/panel/").get_data(as_text=True)
        assert "Ready, not started" in html and "The box is not running" in html  # (hidden banner)
        assert 'id="not-running" hidden' in html
        tok = token(client, "/panel/")
        response = client.post("/panel/press", data={"csrf_token": tok, "action": "start"})
        assert response.status_code == 303 and box.pressed == [("start", "admin")]
        html = client.get("/panel/").get_data(as_text=True)
        assert "Speaking" in html and "Welcome" in html and "1 of 3" in html
        reply = client.post("/panel/press", json={"action": "next"}, headers={"X-CSRFToken": tok})
        status = reply.get_json()["status"]
        assert status["step"] == "breathe" and status["elapsed"] == "2:10"
        assert (
            client.post(
                "/panel/press", json={"action": "dance"}, headers={"X-CSRFToken": tok}
            ).status_code
            == 400
        )
        assert len(box.pressed) == 2
        html = client.get("/panel/").get_data(as_text=True)
        assert 'value="goto:share"' in html  # "go to step" lists the running circle's steps
        client.post("/panel/press", data={"csrf_token": tok, "action": "goto:close-round"})
        assert box.pressed[-1] == ("goto:close-round", "admin")
        live = client.get("/panel/status.json").get_json()
        assert live["level_db"] == -42.5 and live["in_speech"] is True
    finally:
        server.close()
    gone = client.get("/panel/status.json").get_json()
    assert gone["running"] is False and "not running" in gone["message"]
    html = client.get("/panel/").get_data(as_text=True)
    assert 'id="not-running" hidden' not in html and "The box is not running" in html
    off = client.post(
        "/panel/press", data={"csrf_token": tok, "action": "next"}, follow_redirects=True
    )
    assert "not running" in off.get_data(as_text=True)


# -- usage


def add_sessions(data_dir, count=6):
    store = UsageStore(data_dir / "usage.sqlite")
    for i in range(count):
        store.upsert(
            {
                "id": f"s{i}",
                "box": "clinic-north",
                "script": "three-step-circle",
                "script_version": 1,
                "started_at": f"2026-0{1 + i // 3}-{10 + i:02d}T09:00:00+00:00",
                "ended_at": f"2026-0{1 + i // 3}-{10 + i:02d}T10:00:00+00:00",
                "duration_s": 3600.0,
                "completed": i != 2,
                "steps_planned": 6,
                "steps_delivered": 6 if i != 2 else 3,
                "core_planned": 4,
                "core_delivered": 4 if i != 2 else 2,
                "repeats": 1,
                "pauses": 0,
                "help_count": i % 2,
                "attendance": 10 + i,
                "clock_trusted": True,
                # paced by listening; the box did not hear two voices clearly in the last one
                "rounds": [{"step": "share", "turns": 10, "passes": 1, "listened": 10,
                            "left_to_facilitator": 2 if i == count - 1 else 0}],
            }
        )
    store.close()


def test_usage_table_charts_and_exports(data_dir):
    app = make_app(data_dir)
    client = ready_client(app, data_dir)
    assert "No circles recorded yet" in client.get("/usage/").get_data(as_text=True)
    add_sessions(data_dir)
    html = client.get("/usage/").get_data(as_text=True)
    assert html.count('<svg class="chart"') == 4 and 'id="total-sessions">6<' in html
    assert "enter the codes" in html  # no DHIS2 codes yet
    exported = client.get("/usage/export.csv")
    assert exported.status_code == 200 and "attachment" in exported.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert len(rows) == 6 and {r["id"] for r in rows} == {f"s{i}" for i in range(6)}
    since = list(
        csv.DictReader(
            io.StringIO(client.get("/usage/export.csv?since=2026-02-01").get_data(as_text=True))
        )
    )
    assert len(since) == 3
    assert client.get("/usage/?since=31-01-2026").status_code == 400
    assert client.get("/usage/dhis2.json").status_code == 400  # codes not set: says so
    tok = token(client, "/settings/")
    client.post(
        "/settings/",
        data={
            "csrf_token": tok,
            "section": "dhis2",
            "org_unit": "ImspTQPwCqd",
            "period_type": "monthly",
            "de_sessions": "CbxSess0001",
            "de_attendance": "CbxAtt00001",
        },
    )
    body = json.loads(client.get("/usage/dhis2.json").get_data(as_text=True))
    values = {(v["dataElement"], v["period"]): v["value"] for v in body["dataValues"]}
    assert values[("CbxSess0001", "202601")] == "3" and values[("CbxAtt00001", "202602")] == str(
        13 + 14 + 15
    )
    assert all(v["orgUnit"] == "ImspTQPwCqd" for v in body["dataValues"])
    dhis2_csv = client.get("/usage/dhis2.csv").get_data(as_text=True).splitlines()
    assert dhis2_csv[0].startswith("dataelement,period,orgunit") and len(dhis2_csv) == 5


# -- system


def test_system_page_and_power_buttons_need_confirmation(data_dir):
    calls = []
    app = make_app(data_dir, run_system=lambda argv: (calls.append(argv) or True, ""))
    client = ready_client(app, data_dir)
    _box, server = serve_fake_box(data_dir, FakeBox())
    try:
        html = client.get("/system/").get_data(as_text=True)
    finally:
        server.close()
    assert "Software version" in html and "model missing" in html and "Free space" in html
    tok = token(client, "/system/")
    ask = client.post("/system/power", data={"csrf_token": tok, "what": "restart"})
    assert ask.status_code == 200 and "Are you sure" in ask.get_data(as_text=True) and calls == []
    client.post("/system/power", data={"csrf_token": tok, "what": "restart", "confirm": "yes"})
    assert calls == [["systemctl", "reboot"]]
    client.post("/system/power", data={"csrf_token": tok, "what": "format-disk", "confirm": "yes"})
    assert calls == [["systemctl", "reboot"]]
    assert "not running" in client.get("/system/").get_data(as_text=True)


def test_the_facilitator_count_of_people_can_be_entered(data_dir):
    app = make_app(data_dir)
    client = ready_client(app, data_dir)
    add_sessions(data_dir, count=2)
    tok = token(client, "/usage/")
    ok = client.post("/usage/s1/attendance", data={"csrf_token": tok, "attendance": "17"}, follow_redirects=True)
    assert "17 people attended" in ok.get_data(as_text=True)
    store = UsageStore(data_dir / "usage.sqlite")
    try:
        assert {r["id"]: r["attendance"] for r in store.sessions()}["s1"] == 17
    finally:
        store.close()
    for bad in ("-3", "lots", "9999", ""):
        page = client.post("/usage/s1/attendance", data={"csrf_token": tok, "attendance": bad}, follow_redirects=True)
        assert "whole number" in page.get_data(as_text=True), bad
    missing = client.post("/usage/nope/attendance", data={"csrf_token": tok, "attendance": "3"}, follow_redirects=True)
    assert "not in the records" in missing.get_data(as_text=True)
    assert client.post("/usage/s1/attendance", data={"attendance": "1"}).status_code == 400  # CSRF
    store = UsageStore(data_dir / "usage.sqlite")
    try:
        assert {r["id"]: r["attendance"] for r in store.sessions()}["s1"] == 17
    finally:
        store.close()


def test_system_page_takes_an_update_bundle_into_the_inbox(data_dir, tmp_path):
    from test_update_helpers import Keys, good_bundle

    from device.update.inbox import inbox_dir

    app = make_app(data_dir)
    client = ready_client(app, data_dir)
    tok = token(client, "/system/")
    bundle = good_bundle(tmp_path, Keys(), 3, name="content-3.cbx")
    big = bundle.read_bytes() + bytes(25 * 1024 * 1024)  # over the 20 MB recording limit: still fine here
    no_csrf = client.post("/system/update", data={"bundle": (io.BytesIO(big), "c.cbx")},
                          content_type="multipart/form-data")
    assert no_csrf.status_code == 400
    ok = client.post("/system/update", data={"csrf_token": tok, "bundle": (io.BytesIO(big), "c.cbx")},
                     content_type="multipart/form-data", follow_redirects=True)
    assert "The box is checking the update now" in ok.get_data(as_text=True)
    [landed] = inbox_dir(data_dir).glob("*.cbx")
    assert landed.read_bytes() == big
    junk = client.post("/system/update", data={"csrf_token": tok, "bundle": (io.BytesIO(b"hello" * 200), "x.cbx")},
                       content_type="multipart/form-data", follow_redirects=True)
    assert "not a Circlebox update file" in junk.get_data(as_text=True)
    assert len(list(inbox_dir(data_dir).glob("*.cbx"))) == 1
