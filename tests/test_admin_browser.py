"""The admin page in a real headless Chromium, against waitress on loopback, with real Piper.

One walk through what people do: first-time setup with the setup code, login, writing a new
three-step circle, a validation error at its field, listening to a step (a real WAV from the
real voice), saving with the progress bar to 100 % and the new version live, pressing an
on-screen button and seeing the panel change (a fake runtime behind the real control socket),
and exporting usage (CSV and DHIS2 JSON). Screenshots of the main pages go to docs/screenshots.
"""

from __future__ import annotations

import io
import json
import shutil
import threading
import wave
from pathlib import Path

import pytest
from test_admin_pages import add_sessions
from test_admin_support import PASSWORD, make_config, serve_fake_box, setup_code

from device.script import load_script

SHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1280, "height": 800}

@pytest.fixture
def server(tmp_path):
    from waitress import create_server

    from local_admin import create_app

    data_dir = tmp_path / "data"
    config = make_config(
        data_dir,
        dhis2={
            "org_unit": "ImspTQPwCqd",
            "period_type": "monthly",
            "data_elements": {"sessions": "CbxSess0001", "attendance": "CbxAtt00001"},
        },
    )
    app = create_app(config, run_system=lambda argv: (True, ""))
    add_sessions(data_dir)
    box, control = serve_fake_box(data_dir)
    srv = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        yield {
            "url": f"http://127.0.0.1:{srv.effective_port}",
            "data_dir": data_dir,
            "box": box,
            "app": app,
        }
    finally:
        srv.close()
        control.close()
        thread.join(5)


def shot(page, name, full_page=True):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def test_walk_through_the_admin_page(server, tmp_path, chromium):
    from playwright.sync_api import expect

    browser = chromium

    url, data_dir, box = server["url"], server["data_dir"], server["box"]
    context = browser.new_context(viewport=PHONE, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)

    # -- first-time setup with the setup code --------------------------------------------
    page.goto(url + "/")
    expect(page).to_have_url(url + "/setup")
    shot(page, "setup")
    page.fill("#code", "000000" if setup_code(data_dir) != "000000" else "111111")
    page.fill("#password", PASSWORD)
    page.fill("#confirm", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("#err-code")).to_contain_text("not the box's setup code")
    page.fill("#code", setup_code(data_dir))
    page.fill("#password", PASSWORD)
    page.fill("#confirm", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(url + "/panel/")

    # -- login ---------------------------------------------------------------------------
    page.click("text=Log out")
    expect(page).to_have_url(url + "/login")
    shot(page, "login")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Live panel")

    # -- the live panel: press an on-screen button and see the state change ---------------
    expect(page.locator("#state")).to_have_text("Ready, not started")
    page.click("button[data-action=next]")
    expect(page.locator("#state")).to_have_text("Speaking")
    expect(page.locator("#step")).to_have_text("Welcome")
    assert box.pressed[-1] == ("next", "admin")
    page.click("button[data-action=next]")
    expect(page.locator("#step")).to_have_text("Step one: grounding breath")
    shot(page, "panel")

    # -- writing a new three-step circle -------------------------------------------------
    page.click("nav >> text=Circles")
    shot(page, "circles")
    page.click("text=Write a new circle")
    page.fill("#script", "evening-circle")
    page.fill("#title", "Evening circle")
    page.fill("#s0_id", "welcome")
    page.fill("#s0_text", "Good evening, everyone. Welcome to the circle.")
    page.check("input[name=s0_core]")
    page.select_option("#new_kind", "round")
    page.click("button[value=add]")
    page.fill("#s1_id", "share")
    page.fill("#s1_title", "Sharing round")
    page.fill("#s1_text", "Each person may share one thing from today.")
    page.fill("#s1_warn_s", "200")  # after the wrap-up: a mistake to show
    page.fill("#s1_max_s", "120")
    page.select_option("#new_kind", "say")
    page.click("button[value=add]")
    page.fill("#s2_id", "close")
    page.fill("#s2_text", "Thank you for coming. The circle is closed.")
    page.click(".toolbar >> button[value=check]")

    # -- a validation error, shown at the field ------------------------------------------
    expect(page.locator("#err-s1_warn_s")).to_contain_text("must be less than")
    expect(page.locator("#s1_warn_s")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#s1_warn_s")).to_have_value("200")  # nothing typed is lost
    shot(page, "editor-error", full_page=False)
    page.locator("#step-1").scroll_into_view_if_needed()
    shot(page, "editor", full_page=False)
    page.fill("#s1_warn_s", "90")

    # -- listening to a step: a real WAV from the real Piper voice ------------------------
    page.click("#step-0 button[data-listen]")
    audio = page.locator("#audio-0")
    audio.wait_for(state="attached", timeout=120_000)
    src = audio.get_attribute("src")
    wav = context.request.get(url + src)
    assert wav.ok and wav.headers["content-type"].startswith("audio/wav")
    body = wav.body()
    assert body[:4] == b"RIFF" and body[8:12] == b"WAVE"
    with wave.open(io.BytesIO(body)) as w:
        seconds = w.getnframes() / w.getframerate()
    assert seconds > 1.5, seconds  # a spoken sentence, not a click

    # -- saving: the progress bar reaches 100 %, then the new version is live ------------
    page.click(".toolbar >> button[value=save]")
    expect(page.locator("h1")).to_contain_text("Saving evening-circle, version 1")
    expect(page.locator("#job-percent")).to_have_text("100%", timeout=240_000)
    expect(page.locator("#job-message")).to_contain_text("Version 1 is ready")
    assert page.locator("#job-progress").get_attribute("value") == "100"
    shot(page, "saving")
    live = load_script(data_dir / "scripts" / "evening-circle.yaml").script
    assert live.version == 1 and [s.id for s in live.steps] == ["welcome", "share", "close"]
    assert live.steps[1].turns.warn_s == 90
    manifest = json.loads((data_dir / "cache" / "sets" / "evening-circle.json").read_text())
    assert manifest["meta"]["version"] == 1 and "step:share" in manifest["prompts"]
    page.click("text=All circles")
    expect(page.locator("li.circle", has_text="Evening circle")).to_contain_text("version 1")

    # -- usage: table, charts, CSV and DHIS2 JSON downloads ------------------------------
    page.click("nav >> text=Usage")
    expect(page.locator("#total-sessions")).to_have_text("6")
    shot(page, "usage")
    with page.expect_download() as dl:
        page.click("#export-csv")
    csv_text = Path(dl.value.path()).read_text()
    assert (
        csv_text.splitlines()[0].startswith("id,box,script") and len(csv_text.splitlines()) == 7
    )
    with page.expect_download() as dl:
        page.click("#export-dhis2-json")
    body = json.loads(Path(dl.value.path()).read_text())
    assert {v["dataElement"] for v in body["dataValues"]} == {"CbxSess0001", "CbxAtt00001"}

    # -- the other pages, for the screenshots --------------------------------------------
    page.click("nav >> text=Settings")
    expect(page.locator("h1")).to_have_text("Box settings")
    expect(page.locator("#buttons [data-status=last_input_text]")).to_contain_text("Next, from this page")
    # the voice check next to the meter, readable on the phone: how well the last voice was heard
    expect(page.locator("#listening [data-status=voice_note]")).to_contain_text(
        "The last voice the box heard (3 s ago) stood only 9 dB above the room's noise (15 dB "
        "or more is clear)")
    expect(page.locator("#listening [data-status=noise_note]")).to_have_text("")  # a quiet room
    assert fits_the_screen(page)
    shot(page, "settings")
    page.click("nav >> text=System")
    expect(page.locator("h1")).to_have_text("System")
    shot(page, "system")

    laptop = context.new_page()
    laptop.set_viewport_size(LAPTOP)
    laptop.goto(url + "/usage/")
    shot(laptop, "usage-laptop")
    laptop.goto(url + "/circles/evening-circle/edit")
    shot(laptop, "editor-laptop", full_page=False)
    laptop.goto(url + "/panel/")
    shot(laptop, "panel-laptop", full_page=False)
    context.close()  # the laptop page is in the same context
    shutil.rmtree(tmp_path / "data" / "cache", ignore_errors=True)


# -- the live panel and usage on a 390 px phone, as facilitators and managers use them ----------


@pytest.fixture
def phone_server(tmp_path):
    """The admin page with a password set, a fake runtime that reports a microphone fault, a
    turn countdown and an unset clock (answering set_clock), and four usage records."""
    from test_admin_panel_usage import ARECORD, PanelBox, add_circles
    from test_admin_support import set_password
    from waitress import create_server

    from device.control import ControlServer, socket_path
    from local_admin import create_app

    data_dir = tmp_path / "data"
    app = create_app(make_config(data_dir), run_system=lambda argv: (True, ""))
    assert set_password(app.test_client(), data_dir).status_code == 302
    add_circles(data_dir)
    box = PanelBox(faults=[ARECORD],
                   countdown={"kind": "turn", "turn": 3, "elapsed_s": 78.0, "limit_s": 120.0,
                              "remaining_s": 42.0},
                   clock={"time": "2026-11-01T00:05:00+00:00", "trusted": False})
    box.clock_sets = []

    def set_clock(request):
        box.clock_sets.append(request["time"])
        box.clock = {"time": "2027-01-01T00:00:00+00:00", "trusted": True}
        return {"ok": True, "time": box.clock["time"], "trusted": True}

    control = ControlServer(socket_path(data_dir), box.status, box.dispatch,
                            handlers={"set_clock": set_clock}).start()
    srv = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        yield {"url": f"http://127.0.0.1:{srv.effective_port}", "data_dir": data_dir, "box": box}
    finally:
        srv.close()
        control.close()
        thread.join(5)


def fits_the_screen(page) -> bool:
    """Nothing on the page is wider than the phone (no sideways scrolling, nothing cut off),
    measured once the page and its styles have loaded (under load it was once measured before)."""
    page.wait_for_load_state("load")
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_panel_and_usage_on_a_phone(phone_server, chromium):
    from playwright.sync_api import expect

    browser = chromium

    url, box = phone_server["url"], phone_server["box"]
    page = browser.new_context(viewport=PHONE).new_page()
    page.set_default_timeout(20_000)
    requests: list[tuple[str, str, str]] = []
    page.on("request", lambda r: requests.append(
        (r.method, r.url, r.headers.get("content-type", ""))))
    page.goto(url + "/login")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Live panel")

    # -- a press goes as JSON, the status changes in place, the page does not reload ------
    requests.clear()
    page.evaluate("window.stillTheSamePage = true")
    page.click("button[data-action=next]")
    expect(page.locator("#state")).to_have_text("Speaking")
    expect(page.locator("#step")).to_have_text("Welcome")
    assert box.pressed == [("next", "admin")]
    assert page.evaluate("window.stillTheSamePage === true")  # no reload
    posts = [(u, t) for m, u, t in requests if m == "POST"]
    assert posts == [(url + "/panel/press", "application/json")]
    assert not [u for _, u, _ in requests if "object" in u]  # no /panel/[object ...]

    # -- a fault in plain words; the raw text only behind "Technical detail" ----------------
    problem = page.locator("#problems li").first
    expect(problem).to_contain_text("The microphone is not working.")
    expect(problem).to_contain_text("Check its cable; the buttons still work")
    raw = problem.locator("pre")
    expect(raw).to_be_hidden()
    problem.locator("summary").click()
    expect(raw).to_be_visible()
    expect(raw).to_contain_text("arecord: main:831")

    # -- the turn countdown -----------------------------------------------------------------
    expect(page.locator("#countdown")).to_be_visible()
    expect(page.locator("#countdown-label")).to_have_text("Turn 3")
    expect(page.locator("#countdown-remaining")).to_have_text("0:42")
    box.countdown = {"kind": "turn", "turn": 3, "elapsed_s": 100.0, "limit_s": 120.0,
                     "remaining_s": 20.0}
    expect(page.locator("#countdown-remaining")).to_have_text("0:20")  # refreshed in place
    assert fits_the_screen(page)
    shot(page, "panel-live")

    # -- Stop asks first, in the page ---------------------------------------------------------
    page.click("button[data-action=stop]")
    ask = page.locator("#stop-confirm")
    expect(ask).to_be_visible()
    expect(ask).to_contain_text("End the circle now? It will be saved as ended early.")
    shot(page, "panel-stop-confirm", full_page=False)
    assert box.pressed[-1] == ("next", "admin")
    page.click("#stop-no")
    expect(ask).to_be_hidden()
    assert box.pressed[-1] == ("next", "admin")
    page.click("button[data-action=stop]")
    page.click("#stop-yes")
    expect(page.locator("#state")).to_have_text("Ready, not started")
    assert box.pressed[-1] == ("stop", "admin")

    # -- the volume slider ----------------------------------------------------------------------
    slider = page.locator("#volume")
    expect(slider).to_have_attribute("max", "90")
    expect(slider).to_have_value("70")
    slider.focus()
    page.keyboard.press("ArrowLeft")  # one step of 5 %
    expect(page.locator("[data-status=volume_pct]")).to_have_text("65")
    assert box.pressed[-1] == ("volume:65", "admin")

    # -- the clock: offered because the box's clock is not set; set from this phone -----------
    expect(page.locator("#clock-box")).to_be_visible()
    expect(page.locator("#clock-why")).to_contain_text("has not been set")
    before = page.evaluate("Date.now()") / 1000
    page.click("#clock-set")
    expect(page.locator("#panel-message")).to_contain_text("set to this phone's time")
    [sent] = box.clock_sets
    assert abs(sent - before) < 600  # the phone's own time, in seconds
    assert page.evaluate("window.stillTheSamePage === true")
    assert not [u for m, u, _ in requests if m == "GET" and u.rstrip("/").endswith("/panel")]

    # -- usage: readable at 390 px, test circles marked, the clock explained in words ---------
    page.click("nav >> text=Usage")
    expect(page.locator("#total-sessions")).to_have_text("2")
    assert fits_the_screen(page)
    tryout = page.locator("#row-tryout")
    expect(tryout.locator(".test-badge")).to_be_visible()
    expect(tryout).to_contain_text("shorter than 10 minutes")
    for row in page.locator("#sessions tbody tr").all():
        box_ = row.bounding_box()
        assert box_["x"] >= 0 and box_["x"] + box_["width"] <= PHONE["width"], box_
    expect(page.locator("#row-noclock .clock-note")).to_be_visible()
    expect(page.locator("#row-noclock")).to_contain_text(
        "date uncertain: the box's clock had not been set when this circle ran")
    expect(tryout.locator("button", has_text="Delete")).to_be_visible()
    shot(page, "usage-phone")
    page.check("#tests")
    page.click("text=Show")
    expect(page.locator("#total-sessions")).to_have_text("4")

    # -- deleting a record asks first -------------------------------------------------------------
    page.locator("#row-tryout button", has_text="Delete").click()
    expect(page.locator("h1")).to_have_text("Delete this record?")
    page.click("#confirm-no")
    expect(page.locator("#row-tryout")).to_be_visible()
    page.locator("#row-tryout button", has_text="Delete").click()
    page.click("#confirm-yes")
    expect(page.locator(".flash.ok")).to_contain_text("Deleted the record")
    expect(page.locator("#row-tryout")).to_have_count(0)
    expect(page.locator("#total-sessions")).to_have_text("3")  # still including tests
    page.context.close()
