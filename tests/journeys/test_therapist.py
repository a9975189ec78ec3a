"""Therapist: write a circle on the admin page, check it, listen to a step, save it, use it on
the box, start it from the live panel: the box plays the new circle, with no restart."""

from __future__ import annotations

import io
import wave

from journeys.pages import flash_text, log_in, press_on_panel, use_on_the_box
from journeys.sounds import DEFAULT_CIRCLE, Sounds

CIRCLE = "evening-circle"
TITLE = "Evening circle"
WELCOME_TEXT = "Good evening, everyone. Welcome to the evening circle. Let us sit together."


def write_circle(page, box) -> None:
    """The editor, as the therapist fills it in: a welcome, a sharing round, a closing word."""
    from playwright.sync_api import expect

    page.goto(box.admin_url + "/circles/")
    page.click("text=Write a new circle")
    page.fill("#script", CIRCLE)
    page.fill("#title", TITLE)
    page.fill("#s0_id", "welcome")
    page.fill("#s0_text", WELCOME_TEXT)
    page.check("input[name=s0_core]")
    page.select_option("#new_kind", "round")
    page.click("button[value=add]")
    page.fill("#s1_id", "share")
    page.fill("#s1_title", "Sharing round")
    page.fill("#s1_text", "Each person may share one thing from today.")
    page.select_option("#new_kind", "say")
    page.click("button[value=add]")
    page.fill("#s2_id", "close")
    page.fill("#s2_text", "Thank you for coming. The circle is closed.")
    page.locator("button[value=check]").first.click()
    expect(page.locator(".flash").first).to_contain_text("No problems found")


def listen_to_first_step(page, box) -> float:
    """▶ Listen on the first step: a real spoken WAV comes back; its length in seconds."""
    page.click("#step-0 button[data-listen]")
    audio = page.locator("#audio-0")
    audio.wait_for(state="attached", timeout=120_000)
    answer = page.context.request.get(box.admin_url + audio.get_attribute("src"))
    assert answer.ok and answer.headers["content-type"].startswith("audio/wav"), answer.status
    with wave.open(io.BytesIO(answer.body())) as w:
        return w.getnframes() / w.getframerate()


def save(page) -> None:
    from playwright.sync_api import expect

    page.locator("button[value=save]").first.click()
    expect(page.locator("#job-percent")).to_have_text("100%", timeout=180_000)
    expect(page.locator("#job-message")).to_contain_text("is ready")


def test_a_circle_written_on_the_page_plays_on_the_box_without_a_restart(box, page):
    box.start_runtime()
    box.start_admin()
    pid = box.runtime.proc.pid
    log_in(page, box)

    write_circle(page, box)
    assert listen_to_first_step(page, box) > 1.5  # a spoken sentence, not a click
    save(page)
    said = use_on_the_box(page, box, TITLE)
    assert CIRCLE in said, f"'Use on the box' answered: {said!r}"

    sounds = Sounds(box.data / "cache", DEFAULT_CIRCLE, CIRCLE)
    first = sounds.all[f"{CIRCLE} step:welcome"]
    page.goto(box.admin_url + "/panel/")
    since = box.audio.mark()
    press_on_panel(page, box, "start")
    heard = box.audio.wait_for_start(f"{CIRCLE} step:welcome", first, since)
    assert heard is not None, (
        f"The page said {said!r}; Start on the panel, and the box did not play {CIRCLE}'s first "
        f"prompt: {box.audio.describe(since, sounds.all)}. Panel: {flash_text(page)!r}")
    assert box.runtime.running() and box.runtime.proc.pid == pid  # the same process: no restart
