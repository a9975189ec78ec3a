"""Power cuts: the real `circlebox run` killed with SIGKILL at random moments during circles,
the admin settings file killed mid-write, the real admin service killed while it saves circles
and settings, and a real bundle install killed at random moments. Short form here; the long form (hundreds of
kills) runs with `-m slow` or `python tests/powercut.py --kills 300 --writer-kills 300`.
See tests/powercut.py for what is checked after every kill."""

from __future__ import annotations

import logging
import time

import pytest
from conftest import make_config
from gpiozero.pins.mock import MockFactory
from powercut import (
    Report,
    admin_kills,
    bundle_kills,
    check_files,
    prepare_data,
    render_kills,
    runtime_kills,
    stored_sessions,
    valid_settings,
    writer_kills,
)

from audio.silent import SilentSpeaker
from device.runtime import Runtime


def assert_clean(report: Report, kills: int, writer: int) -> None:
    assert report.faults == [], "\n".join(report.faults)
    assert report.kills == kills
    assert report.writer_kills == writer


def test_runtime_survives_dozens_of_kills_during_circles(tmp_path, rendered_default):
    data = prepare_data(tmp_path / "data", rendered_default)
    report = runtime_kills(data, kills=18, seed=3)
    assert_clean(report, 18, 0)
    # the harness really drove circles to their end before some of the kills: it proves something
    assert report.finished_seen >= 3, report
    assert len([r for r in stored_sessions(data) if r["ended_at"]]) >= report.finished_seen


def test_settings_file_is_old_or_new_after_kills_mid_write(tmp_path):
    report = writer_kills(tmp_path / "settings", kills=25, seed=5)
    assert_clean(report, 0, 25)


def test_a_circle_saved_and_rendered_survives_kills_mid_render(tmp_path, rendered_default):
    """Each kill interrupts the render of a newly saved version; then one render to the end and
    the runtime plays that version (the harness checks every cache file after every kill)."""
    data = prepare_data(tmp_path / "data", rendered_default)
    report = render_kills(data, kills=3, seed=5)
    assert report.faults == [], "\n".join(report.faults)
    assert report.render_kills == 3


def test_the_checks_catch_what_a_power_cut_could_do(tmp_path, rendered_default):
    """The harness's checks are not vacuous: a torn file and a torn database are reported."""
    data = prepare_data(tmp_path / "data", rendered_default)
    assert check_files(data) == []
    (data / "state").mkdir()
    (data / "state" / "clock.json").write_text('{"wall": "2026-', encoding="utf-8")
    db = data / "usage.sqlite"
    db.write_bytes(b"SQLite format 3\x00" + b"\x10\x00" + b"\x00" * 200)
    wav = sorted((data / "cache").rglob("*.wav"))[0]
    wav.write_bytes(wav.read_bytes()[:20])
    problems = " ".join(check_files(data))
    assert "clock.json" in problems and "usage.sqlite" in problems and wav.name in problems
    assert not valid_settings("# version 3.1\nbox:\n  name: box-3.1\n" + "#" * 10)
    assert valid_settings("# version 3.1\nbox:\n  name: box-3.1\n" + "#" * 200_000 + "\n# end 3.1\n")


def test_a_session_logged_as_finished_is_already_in_the_usage_store(box_data):
    """Regression (found reviewing the power-cut harness): the journal sink ran before the usage
    store's, so a cut right after 'session_finished' was logged could lose the ended session."""
    runtime = Runtime(make_config(box_data), pin_factory=MockFactory(), speaker=SilentSpeaker(time.monotonic),
                      control=False, listening=False)
    runtime.start()
    seen: list[list[dict]] = []

    class AtFinish(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "session_finished" in record.getMessage():
                seen.append([r for r in stored_sessions(box_data) if r["ended_at"]])

    handler = AtFinish()
    logger = logging.getLogger("circlebox.runtime")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        for action in ["next"] + ["skip"] * 8:
            runtime.box.dispatch(action, "test")
            runtime.box.process_pending()
            if seen:
                break
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        runtime.close()
    assert seen, "the circle did not finish"
    assert len(seen[0]) == 1, "session_finished was logged before the usage store had the ended session"


def test_the_next_write_removes_temp_files_killed_writes_left(tmp_path):
    """Regression (found by the writer kills: 170 of 300 left a 200 kB temp file behind)."""
    import os

    from device.fsutil import STALE_TMP_S, atomic_write_text

    target = tmp_path / "admin-config.yaml"
    stale = tmp_path / ".admin-config.yaml.abc123.tmp"
    live = tmp_path / ".admin-config.yaml.def456.tmp"  # another writer, right now
    other = tmp_path / ".other.yaml.abc123.tmp"
    for f in (stale, live, other):
        f.write_text("half", encoding="utf-8")
    old = time.time() - STALE_TMP_S - 5
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    atomic_write_text(target, "box: {name: x}\n")
    assert not stale.exists()
    assert live.exists() and other.exists()
    assert target.read_text(encoding="utf-8") == "box: {name: x}\n"


def test_admin_survives_kills_while_saving_circles_and_settings(tmp_path, rendered_default):
    """The real `circlebox admin` over HTTP, killed while a circle saved in its editor renders
    and switches (one kill in three aimed at the switch itself) and while settings are saved."""
    data = prepare_data(tmp_path / "data", rendered_default)
    report = admin_kills(data, kills=6, seed=5, max_kill_after=6.0)
    assert report.faults == [], "\n".join(report.faults)
    assert report.admin_kills == 6
    assert report.saves_confirmed >= 1, report  # a save really finished: "nothing saved is lost" is checked


def test_a_bundle_install_killed_at_random_moments_converges(tmp_path):
    report = bundle_kills(tmp_path / "bundles", kills=16, seed=5)
    assert report.faults == [], "\n".join(report.faults)
    assert report.bundle_kills >= 16 and report.bundle_versions >= 6


def test_a_save_cut_between_its_rendered_set_and_the_switch_is_finished_at_start(tmp_path):
    """Regression (found by the admin kills, 2 of the first 6): a cut after the circle's new
    rendered set was written but before the draft became live left a live script that matched
    no set: neither the box nor its last-good copy could play the circle. The admin's start now
    makes such a draft live; a draft whose render failed stays a draft."""
    import json

    from test_admin_support import make_app

    from device.script import parse_script
    from local_admin import store

    def text(version: int, words: str) -> str:
        return (f"script: cut-circle\nversion: {version}\nlanguage: en_US\nvoice: en_US-joe-medium\n"
                f"steps:\n  - id: hello\n    say: \"{words}\"\n")

    def rendered_for(body: str) -> None:  # the set's manifest as render_script writes its meta
        sets = tmp_path / "cache" / "sets"
        sets.mkdir(parents=True, exist_ok=True)
        fingerprint = parse_script(body, "x").script.fingerprint()
        (sets / "cut-circle.json").write_text(json.dumps({"meta": {"prompts_sha256": fingerprint}}))

    live = tmp_path / "scripts" / "cut-circle.yaml"
    live.parent.mkdir(parents=True)
    live.write_text(text(1, "Old words."), encoding="utf-8")
    store.write_draft(tmp_path, "cut-circle", text(2, "New words."))
    rendered_for(text(2, "New words."))  # the render finished; the power went before activate()
    make_app(tmp_path)
    assert live.read_text(encoding="utf-8") == text(2, "New words.")
    assert not store.draft_path(tmp_path, "cut-circle").exists()
    assert [h["version"] for h in store.history(tmp_path, "cut-circle")] == [1]

    # a cut after the switch, before the draft was removed: the save is done, the draft goes
    store.write_draft(tmp_path, "cut-circle", text(2, "New words."))
    make_app(tmp_path)
    assert not store.draft_path(tmp_path, "cut-circle").exists()
    assert live.read_text(encoding="utf-8") == text(2, "New words.")

    # a render that failed: the set is the live one's, the draft stays for the editor to offer
    store.write_draft(tmp_path, "cut-circle", text(3, "Newer words."))
    make_app(tmp_path)
    assert live.read_text(encoding="utf-8") == text(2, "New words.")
    assert store.draft_path(tmp_path, "cut-circle").exists()


@pytest.mark.slow
def test_long_form_admin_and_bundle_kills(tmp_path, rendered_default):
    data = prepare_data(tmp_path / "data", rendered_default)
    report = admin_kills(data, kills=100, seed=2024)
    bundle_kills(tmp_path / "bundles", kills=300, seed=4202, report=report)
    assert report.faults == [], "\n".join(report.faults)
    assert report.admin_kills == 100 and report.bundle_kills >= 300


@pytest.mark.slow
def test_long_form_hundreds_of_kills(tmp_path, rendered_default):
    data = prepare_data(tmp_path / "data", rendered_default)
    report = runtime_kills(data, kills=300, seed=1234)
    writer_kills(tmp_path / "settings", kills=300, seed=4321, report=report)
    render_kills(data, kills=30, seed=99, report=report)
    assert_clean(report, 300, 300)
    assert report.render_kills == 30
