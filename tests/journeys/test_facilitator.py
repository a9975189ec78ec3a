"""Facilitator: HELP and going on, explain mode and leaving it, each heard in what the box plays.

The box runs the built-in circle; the facilitator uses the admin page's live panel (the on-screen
buttons do what the box's buttons do) and the HELP button's long press (explain mode), which
reaches the runtime as the button map's `explain` action over its control socket, as a held
GPIO button does.
"""

from __future__ import annotations

from journeys.pages import log_in, press_on_panel
from journeys.sounds import DEFAULT_CIRCLE, Sounds

WELCOME = f"{DEFAULT_CIRCLE} step:welcome"
HELP = f"{DEFAULT_CIRCLE} msg:help"
EXPLAIN = f"{DEFAULT_CIRCLE} msg:explain"
NEXT_STEP = f"{DEFAULT_CIRCLE} step:breathe"


def start_circle_from_panel(box, page, sounds):
    """Start the circle on the panel; the welcome is heard. Returns where it began."""
    box.start_runtime()
    box.start_admin()
    log_in(page, box)
    since = box.audio.mark()
    press_on_panel(page, box, "start")
    welcome = box.audio.wait_for_start(WELCOME, sounds.all[WELCOME], since)
    assert welcome is not None, (f"Start on the panel: the welcome was not heard; "
                                 f"{box.audio.describe(since, sounds.all)}")
    assert box.audio.wait_until(welcome.at + 2 * box.audio.rate)  # two seconds of the welcome
    return welcome


def heard_after(box, sounds, since: int, seconds: float = 8.0):
    """What played in the `seconds` after `since` (waits until that much is written)."""
    assert box.audio.wait_until(since + int(seconds * box.audio.rate), timeout=seconds + 20)
    return box.audio.timeline(since, sounds.all, until=since + int(seconds * box.audio.rate))


def the_step_carries_on(heard, after: int) -> bool:
    """The interrupted welcome plays again after `after` (from its start or where it stopped),
    before any other step's prompt."""
    for h in heard:
        if h.at < after or h.name.startswith("bell:") or h.name in (HELP, f"{DEFAULT_CIRCLE} msg:resumed"):
            continue
        return h.name == WELCOME
    return False


def test_help_then_help_again_carries_on_with_the_step(box, page):
    sounds = Sounds(box.data / "cache", DEFAULT_CIRCLE)
    welcome = start_circle_from_panel(box, page, sounds)
    since = box.audio.mark()
    press_on_panel(page, box, "help")
    help_msg = box.audio.wait_for_start(HELP, sounds.all[HELP], since)
    assert help_msg is not None, f"HELP on the panel: no help message; {box.audio.describe(welcome.at, sounds.all)}"
    help_msg = box.audio.measured(help_msg, sounds.all[HELP], seconds=1.0)
    resume_at = box.audio.mark()
    press_on_panel(page, box, "help")  # the facilitator is done with the co-facilitator: on with the circle
    heard = heard_after(box, sounds, resume_at)
    assert the_step_carries_on(heard, resume_at), (
        "HELP pressed again: the welcome step did not carry on; after the second press the box "
        f"played {[str(h) for h in heard] or 'nothing'} "
        f"(journal: {box.runtime.text()[-800:]})")


def test_next_during_help_leaves_help_and_carries_on_with_the_step(box, page):
    sounds = Sounds(box.data / "cache", DEFAULT_CIRCLE)
    welcome = start_circle_from_panel(box, page, sounds)
    since = box.audio.mark()
    press_on_panel(page, box, "help")
    help_msg = box.audio.wait_for_start(HELP, sounds.all[HELP], since)
    assert help_msg is not None, f"HELP on the panel: no help message; {box.audio.describe(welcome.at, sounds.all)}"
    resume_at = box.audio.mark()
    journal = box.runtime.mark()
    press_on_panel(page, box, "next")
    heard = heard_after(box, sounds, resume_at)
    assert the_step_carries_on(heard, resume_at), (
        "NEXT during HELP: the interrupted welcome did not carry on; the box played "
        f"{[str(h) for h in heard] or 'nothing'} (journal: {box.runtime.text(journal)[-800:]})")
    assert "delivered=False" not in box.runtime.text(journal), box.runtime.text(journal)


def test_explain_mode_says_what_buttons_do_and_leaving_it_carries_on(box, page):
    sounds = Sounds(box.data / "cache", DEFAULT_CIRCLE)
    welcome = start_circle_from_panel(box, page, sounds)
    since = box.audio.mark()
    box.press("explain")  # HELP held: the button map's long press
    explain = box.audio.wait_for_start(EXPLAIN, sounds.all[EXPLAIN], since)
    assert explain is not None, (f"HELP held: explain mode was not announced; "
                                 f"{box.audio.describe(welcome.at, sounds.all)}")
    since = box.audio.mark()
    box.press("next")  # in explain mode a press says what the button does, and does nothing else
    said = box.audio.wait_for_start("next explained", sounds.all[f"{DEFAULT_CIRCLE} msg:action_next"], since)
    assert said is not None, f"NEXT in explain mode: not explained; {box.audio.describe(since, sounds.all)}"
    leave_at = box.audio.mark()
    box.press("explain")  # HELP held again: leave explain mode
    heard = heard_after(box, sounds, leave_at)
    assert NEXT_STEP not in {h.name for h in heard}, "NEXT in explain mode moved the circle on"
    assert the_step_carries_on(heard, leave_at), (
        "leaving explain mode (HELP held again): the welcome step did not carry on; the box played "
        f"{[str(h) for h in heard] or 'nothing'} (journal: {box.runtime.text()[-800:]})")
