"""Courses and rehearsals on the booted box: the admin service (its own user, its systemd
sandbox) reads what the runtime (another user) writes: where a course stands
(state/course-<id>.json) and the training log (training.sqlite). Never checked in the tree,
where both run as one user without a sandbox.

Run by `make vm-test`. The tests share one VM and run in order.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from vm.speaker import MATCH, rendered_prompts
from vm.steps import (
    journal,
    panel_status,
    played_summary,
    press,
    set_up_admin,
    settle,
    wait_box_state,
    wait_circle_over,
    wait_heard,
    wav_end,
)

pytestmark = pytest.mark.vm

COURSE = "support-group"  # packaged: 16 sessions of the three-step circle and a bus stop
CIRCLE = "three-step-circle"
WELCOME = f"{CIRCLE} step:welcome"
CHOSEN = 2  # the plan index chosen on the panel: "Session 3 of 16"


def course_label(box, timeout: float = 900.0) -> str:
    """The panel's "Session n of 16: ..." once the box plays the course. The image carries the
    packaged course's announcements (image_build.sh); without them the admin service makes them
    first (Piper under emulation: 11 minutes)."""
    end = time.monotonic() + timeout
    while True:
        status = panel_status(box.admin)
        label = status.get("course_label")
        if label:
            return label
        if time.monotonic() > end:
            _, _, page = box.admin.get("/courses/")
            raise AssertionError(f"the box never played course {COURSE}: {status}\n"
                                 f"{re.sub(r'<[^>]+>', ' ', page)[:1500]}\n{journal(box, 'circlebox-admin', 30)}")
        time.sleep(5)


def test_a_course_used_from_the_courses_page_plays_session_1(box, image_cache):
    settle(box)
    box.admin = set_up_admin(box)
    status, url, page = box.admin.post_form(f"/courses/{COURSE}/use", {}, token_from="/courses/")
    assert status == 200 and "/courses/" in url, (status, url, page[:500])
    used_at = time.monotonic()
    label = course_label(box)
    print(f"course used -> announcements made on the box and the course playing: {time.monotonic() - used_at:.0f} s")
    assert label.startswith("Session 1 of "), label

    prompts, rate = rendered_prompts(image_cache, CIRCLE)
    since = wav_end(box)
    press(box.admin, "start")
    score = wait_heard(box, prompts, WELCOME, rate, since, timeout=180.0)
    assert score >= MATCH, \
        f"the course's circle was not heard (best {score:.2f}): {played_summary(box, prompts, rate, since)}"
    _, _, panel = box.admin.get("/panel/")
    assert re.search(r'id="course-label"[^>]*>\s*Session 1 of 16:', panel), panel[:2000]
    press(box.admin, "stop")
    wait_circle_over(box)


def test_the_courses_page_reads_where_the_runtime_left_the_course(box):
    """Another session chosen on the panel is written by the runtime (state/course-<id>.json);
    once the box no longer plays the course, the Courses page reads that file."""
    status, _, page = box.admin.post_form("/panel/course-session", {"index": str(CHOSEN)}, token_from="/panel/")
    assert status == 200 and "Next on the box: Session 3 of 16" in page, re.sub(r"<[^>]+>", " ", page)[:3000]
    stored = json.loads(box.console.check(f"cat /var/lib/circlebox/state/course-{COURSE}.json"))
    assert stored["position"] == CHOSEN, stored
    status, _, page = box.admin.post_form("/courses/stop-using", {}, token_from="/courses/")
    assert status == 200, page[:500]
    end = time.monotonic() + 120
    while panel_status(box.admin).get("course_label") is not None:  # the box lets go of the course
        assert time.monotonic() < end, panel_status(box.admin)
        time.sleep(2)
    status, _, page = box.admin.get("/courses/")
    assert status == 200, page[:1500]
    assert "Next: session 3 of 16" in page, re.sub(r"<[^>]+>", " ", page)[:3000]


def test_a_rehearsal_is_in_the_training_log_on_the_usage_page(box):
    """The runtime writes the rehearsal to training.sqlite (WAL) as it starts; the admin page
    opens that database as its own user in its sandbox."""
    press(box.admin, "rehearse")
    wait_box_state(box.admin, "speaking")
    press(box.admin, "stop")
    wait_circle_over(box)
    status, _, page = box.admin.get("/usage/")
    assert status == 200, re.sub(r"<[^>]+>", " ", page)[:1500]
    rows = re.search(r'<table[^>]*id="rehearsals".*?</table>', page, re.S)
    assert rows and CIRCLE in rows[0], re.sub(r"<[^>]+>", " ", page)[-3000:]
