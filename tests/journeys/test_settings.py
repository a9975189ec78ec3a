"""Settings: the volume saved on the settings page is the level of the next prompt, measured in
what the box plays (a level, not a timing: the gain of the prompt's samples in the output)."""

from __future__ import annotations

from journeys.pages import flash_text, log_in, press_on_panel
from journeys.sounds import DEFAULT_CIRCLE, Sounds

WELCOME = f"{DEFAULT_CIRCLE} step:welcome"
TOLERANCE = 0.02  # SDL's mixer has 128 volume steps: 35 % plays as 44/128 = 0.344


def test_volume_saved_on_the_settings_page_is_the_level_of_the_next_prompt(box, page):
    from playwright.sync_api import expect

    box.start_runtime()
    box.start_admin()
    log_in(page, box)
    page.goto(box.admin_url + "/settings/")
    form = page.locator("form#box")
    form.locator("#volume").fill("35")
    form.locator("button[type=submit]").first.click()
    expect(page.locator(".flash").first).to_contain_text("Saved")
    said = flash_text(page)

    sounds = Sounds(box.data / "cache", DEFAULT_CIRCLE)
    since = box.audio.mark()
    press_on_panel(page, box, "start")
    heard = box.audio.wait_for_start(WELCOME, sounds.all[WELCOME], since)
    assert heard is not None, f"Start on the panel: no welcome; {box.audio.describe(since, sounds.all)}"
    heard = box.audio.measured(heard, sounds.all[WELCOME], seconds=3.0)
    assert abs(heard.gain - 0.35) <= TOLERANCE, (
        f"volume 35 % saved (the page said {said!r}); the next prompt played at {heard.gain:.0%} "
        f"of full ({heard})")
