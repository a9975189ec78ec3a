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

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1280, "height": 800}
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")


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


def test_walk_through_the_admin_page(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, data_dir, box = server["url"], server["data_dir"], server["box"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
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
        expect(page.locator("#buttons [data-status=last_input_text]")).to_contain_text("next")
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
        browser.close()
    shutil.rmtree(tmp_path / "data" / "cache", ignore_errors=True)
