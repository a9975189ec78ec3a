"""Pulling the plug on the booted box (QEMU killed: nothing flushed by the guest), then booting
again: mid-circle, the box is READY, the interrupted circle's usage record is kept and the
doctor finds nothing damaged; mid-install (the stick import switching releases), the install
has converged to one whole release, old or new, and the box plays it.

Run by `make vm-test`. The tests share one VM and run in order.
"""

from __future__ import annotations

import json

import pytest

from vm.speaker import MATCH, rendered_prompts
from vm.steps import (
    doctor_lines,
    journal,
    log_in,
    played_summary,
    press,
    set_up_admin,
    settle,
    usage_sessions,
    wait_heard,
    wav_end,
)

pytestmark = pytest.mark.vm

CIRCLE = "three-step-circle"
WELCOME = f"{CIRCLE} step:welcome"
# The checks a power cut could break (files, the circle and its sounds), not the ones that need
# hardware QEMU does not have (GPIO buttons and lights, a microphone).
NOT_HARDWARE = ("config", "data folder", "voices", "circle", "system prompts", "disk", "speaker")
CONVERGED = ("/opt/circlebox/venv/bin/python -c 'import json; from pathlib import Path; "
             "from device.update.release import current_release, release_problems, releases_dir; "
             "from device.update.state import load_state; root = Path(\"/var/lib/circlebox\"); "
             "s = load_state(root); cur = current_release(root, \"content\"); "
             "print(json.dumps({\"installed\": s.versions(), \"trial\": s.trial is not None, "
             "\"pending\": sorted(s.pending), \"current\": cur, "
             "\"problems\": release_problems(releases_dir(root) / cur) if cur else []}))'")


def boot_again(box) -> None:
    box.power_cut()
    box.start()
    box.login()
    settle(box)
    props = box.console.check("systemctl show circlebox -p ActiveState -p SubState -p ActiveEnterTimestampMonotonic")
    state = dict(line.split("=", 1) for line in props.splitlines() if "=" in line)
    assert (state["ActiveState"], state["SubState"]) == ("active", "running"), journal(box, "circlebox")
    box.ready_after_cut_s = int(state["ActiveEnterTimestampMonotonic"]) / 1e6  # guest boot to READY
    print(f"after the power cut: kernel start -> circlebox READY {box.ready_after_cut_s:.0f} s")


def test_a_power_cut_mid_circle_keeps_the_circles_record(box, image_cache):
    settle(box)
    box.admin = set_up_admin(box)
    prompts, rate = rendered_prompts(image_cache, CIRCLE)
    since = wav_end(box)
    press(box.admin, "start")
    score = wait_heard(box, prompts, WELCOME, rate, since)
    assert score >= MATCH, f"the welcome was not heard (best {score:.2f}): {played_summary(box, prompts, rate, since)}"
    before = usage_sessions(box)
    assert len(before) == 1 and before[0]["script"] == CIRCLE, before  # written at the circle's start

    boot_again(box)
    after = usage_sessions(box)
    assert [row["id"] for row in after] == [before[0]["id"]], after
    assert box.console.check(
        "runuser -u circlebox -- /opt/circlebox/venv/bin/python -c \"import sqlite3; "
        "print(sqlite3.connect('/var/lib/circlebox/usage.sqlite').execute('pragma integrity_check').fetchone()[0])\""
    ) == "ok"


def test_after_the_cut_the_doctor_finds_nothing_damaged(box, image_cache):
    system, rate = rendered_prompts(image_cache, "system")
    lines = doctor_lines(box, system, rate)
    for name in NOT_HARDWARE:
        assert name in lines, lines
        assert not lines[name].startswith("[FAIL]"), lines[name]
    assert lines["circle"].startswith("[PASS]") and CIRCLE in lines["circle"], lines["circle"]


def test_a_power_cut_mid_install_converges_and_the_box_plays(box, stick, bundle, image_cache):
    since = box.console.mark()
    # The whole journal, followed: `-u 'circlebox-usb-import@*'` refuses a unit not yet seen
    # this boot ("Failed to add filter for units") and followed nothing.
    box.console.send("journalctl -f -n 0 -o cat | grep --line-buffered -E '^\\[(S|U)[0-9]{2}\\]' &")
    box.plug_stick(stick)
    box.console.wait_for(r"^\[S04\]", since, timeout=600)  # "Installing. Keep the power on."
    boot_again(box)

    state = json.loads(box.console.check(CONVERGED))
    assert not state["trial"] and not state["pending"], state
    assert state["problems"] == [], state
    installed = state["installed"].get("content")
    assert installed in (None, bundle.version), state
    assert (state["current"] is None) == (installed is None), state
    box.install_after_cut = f"content version {installed}" if installed else "the image's own circle"

    cache = bundle.cache if installed else image_cache
    prompts, rate = rendered_prompts(cache, CIRCLE)
    # a fresh login once the admin page is up again (the press right after boot was reset)
    admin = log_in(box) if hasattr(box, "admin") else set_up_admin(box)
    wav_since = wav_end(box)
    press(admin, "start")
    score = wait_heard(box, prompts, WELCOME, rate, wav_since)
    assert score >= MATCH, (f"after the cut ({box.install_after_cut}) the welcome was not heard "
                            f"(best {score:.2f}): {played_summary(box, prompts, rate, wav_since)}")
