"""Trainer and facilitator: write a circle with a facilitator note and a course of it on the admin
page, rehearse the circle from the live panel (the note is heard; the rehearsal goes to the
training log, never to usage), then use the course on the box and run its first session from a
phone: "session 1 of 2" is announced and the circle's first step is heard.

The real `circlebox run` and `circlebox admin` share one data folder; what the box plays is
read from SDL's disk output and matched against the rendered prompts (journeys.heard).
"""

from __future__ import annotations

import time

from journeys.pages import flash_text, log_in, press_on_panel, use_on_the_box
from journeys.sounds import Sounds

CIRCLE = "practice-circle"
TITLE = "Practice circle"
NOTE = ("Facilitator, this is the welcome. Watch for anyone who arrives upset, and greet each person by "
        "looking at them.")
COURSE = "practice-course"
COURSE_TITLE = "Practice course"


def write_circle_with_a_note(page, box) -> None:
    """A welcome (with the facilitator's note) and a closing word that goes on by itself."""
    from playwright.sync_api import expect

    page.goto(box.admin_url + "/circles/new")
    page.fill("#script", CIRCLE)
    page.fill("#title", TITLE)
    page.fill("#s0_id", "welcome")
    page.fill("#s0_text", "Welcome, everyone, to our practice circle. Let us begin.")
    page.fill("#s0_notes", NOTE)
    page.check("input[name=s0_core]")
    page.select_option("#new_kind", "say")
    page.click("button[value=add]")
    page.fill("#s1_id", "close")
    page.fill("#s1_text", "Thank you. The circle is closed.")
    page.select_option("#s1_then", "continue")
    page.locator("button[value=save]").first.click()
    expect(page.locator("#job-percent")).to_have_text("100%", timeout=180_000)
    expect(page.locator("#job-message")).to_contain_text("is ready")


def write_course(page, box) -> None:
    """Two sessions of the circle with a bus stop between them; saved, its announcements made."""
    from playwright.sync_api import expect

    page.goto(box.admin_url + "/courses/")
    page.click("text=Write a new course")
    page.fill("#course", COURSE)
    page.fill("#title", COURSE_TITLE)
    page.select_option("#c0_circle", CIRCLE)
    page.fill("#c0_repeat", "1")
    page.check("#c0_bus_stop")
    page.select_option("#new_circle", CIRCLE)
    page.click("button[value=add]")
    expect(page.locator("#c1_circle")).to_have_value(CIRCLE)
    page.locator("button[value=check]").first.click()
    expect(page.locator(".flash").first).to_contain_text("No problems found")
    page.locator("button[value=save]").first.click()
    page.wait_for_url(box.admin_url + "/courses/")
    assert f"Saved {COURSE}, version 1." in flash_text(page), flash_text(page)
    ready = page.locator(f"#course-{COURSE} [data-announce=ready]")
    end = time.monotonic() + 180
    while ready.count() == 0 and time.monotonic() < end:  # the page says when they are made
        page.wait_for_timeout(1000)
        page.reload()
    failed = page.locator(f"#course-{COURSE} .announce").inner_text()
    assert ready.count() == 1, f"the course's announcements were not made: {failed!r}"


def wait_for(check, timeout: float = 60.0):
    """Poll `check()` until it gives something truthy, with a deadline (never a bare sleep)."""
    end = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > end:
            return found
        time.sleep(0.2)


def rehearsals(box) -> list[dict]:
    from device.datafolder import DataFolder
    from device.training_log import TrainingLog

    path = DataFolder(box.data).training_log
    if not path.exists():
        return []
    log = TrainingLog(path)
    try:
        return log.rehearsals()
    finally:
        log.close()


def circles_held(box) -> list[dict]:
    from device.datafolder import DataFolder
    from device.usage import UsageStore

    path = DataFolder(box.data).usage
    if not path.exists():
        return []
    usage = UsageStore(path)
    try:
        return list(usage.sessions())
    finally:
        usage.close()


def test_write_a_course_rehearse_its_circle_then_run_its_first_session(box, page, phone):
    from playwright.sync_api import expect

    box.start_runtime()
    box.start_admin()
    log_in(page, box)

    write_circle_with_a_note(page, box)
    write_course(page, box)
    said = use_on_the_box(page, box, TITLE)
    assert CIRCLE in said, f"'Use on the box' answered: {said!r}"
    assert wait_for(lambda: box.status().get("script") == CIRCLE), box.status()

    # Rehearse from the panel: the facilitator's note is heard before the welcome.
    sounds = Sounds(box.data / "cache", CIRCLE)
    note_id = f"{CIRCLE} step:welcome:notes"
    page.goto(box.admin_url + "/panel/")
    expect(page.locator("#rehearse-note")).to_contain_text("never counted as a circle held")
    since = box.audio.mark()
    press_on_panel(page, box, "rehearse")
    note = box.audio.wait_for_start(note_id, sounds.all[note_id], since, timeout=30)
    assert note is not None, f"Rehearse on the panel: the note was not heard; {box.audio.describe(since, sounds.all)}"
    welcome = box.audio.wait_for_start(f"{CIRCLE} step:welcome", sounds.all[f"{CIRCLE} step:welcome"], note.at,
                                       timeout=60)
    assert welcome is not None, f"after the note, no welcome: {box.audio.describe(since, sounds.all)}"
    press_on_panel(page, box, "next")  # the trainee moves on; the closing word ends the rehearsal
    practised = wait_for(lambda: [r for r in rehearsals(box) if r.get("ended_at")], timeout=60)
    assert practised, (f"no finished rehearsal in the training log ({rehearsals(box)}); "
                       f"the box said: {box.runtime.text()[-3000:]}")
    assert practised[0]["circle"] == CIRCLE and "welcome" in str(practised[0]["steps_practised"])
    assert practised[0]["notes_heard"] >= 1, practised[0]
    assert not [row for row in circles_held(box) if row.get("script") == CIRCLE], "a rehearsal counted as held"

    # Use the course on the box; on a phone, the panel says which session comes next.
    page.goto(box.admin_url + "/courses/")
    page.locator(f"#course-{COURSE}").get_by_role("button", name="Use on the box").click()
    page.wait_for_load_state()
    assert COURSE in flash_text(page), flash_text(page)
    assert wait_for(lambda: (box.status().get("course") or {}).get("id") == COURSE), box.status()
    log_in(phone, box)
    for path in ("/courses/", f"/courses/{COURSE}/edit"):  # the course pages fit a phone too
        phone.goto(box.admin_url + path)
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390, path
    phone.goto(box.admin_url + "/panel/")
    expect(phone.locator("#course-label")).to_contain_text(f"Session 1 of 2: {TITLE}")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the phone
    announcement = f"course.{COURSE} course:meeting:0"
    sounds.add(box.data / "cache", f"course.{COURSE}")
    since = box.audio.mark()
    press_on_panel(phone, box, "start")
    heard = box.audio.wait_for_start(announcement, sounds.all[announcement], since, timeout=30)
    assert heard is not None, f"Start: no 'session 1 of 2' announcement; {box.audio.describe(since, sounds.all)}"
    first = box.audio.wait_for_start(f"{CIRCLE} step:welcome", sounds.all[f"{CIRCLE} step:welcome"], heard.at,
                                     timeout=60)
    assert first is not None, f"after the announcement, no first step: {box.audio.describe(since, sounds.all)}"
