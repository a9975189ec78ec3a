"""A software update must not silence the box: circles rendered by the box's earlier version play.

A new version that adds a built-in message (the rehearsal ones did) changes every circle's
fingerprint although no word of the circle changed. Such a set still plays, with a fault line
and a doctor WARN that say how to bring it up to date; a circle whose own text changed is still
refused, as before. The earlier version's set is made here from a real render by taking out the
messages the earlier version did not have.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import make_config
from gpiozero.pins.mock import MockFactory

from audio.silent import SilentSpeaker
from device.content import ContentError, load_configured_circle
from device.runtime import Runtime

CIRCLE = "tiny-circle"
NEWER_MESSAGES = ("msg:rehearsal_start", "msg:rehearsal_done", "msg:rehearsal_stopped", "msg:action_rehearse")


def as_rendered_by_the_earlier_version(data: Path) -> None:
    """The set an earlier box left: the same circle text, without the messages it did not know."""
    path = data / "cache" / "sets" / f"{CIRCLE}.json"
    manifest = json.loads(path.read_text())
    for prompt in NEWER_MESSAGES:
        del manifest["prompts"][prompt]
    manifest["meta"]["prompts_sha256"] = "0" * 64  # its fingerprint covered other messages
    path.write_text(json.dumps(manifest))


def test_a_circle_rendered_by_the_earlier_version_plays_and_says_how_to_update(course_data):
    as_rendered_by_the_earlier_version(course_data)
    circle = load_configured_circle(CIRCLE, course_data)
    assert "step:hello" in circle.bank and "msg:rehearsal_start" not in circle.bank
    assert circle.stale_note == (
        f"'{CIRCLE}' was rendered by an earlier version of the box (4 of the box's messages are not in it yet); "
        f"it plays as rendered: run `circlebox render {CIRCLE}` (or Save it on the admin page)")


def test_a_circle_whose_own_text_changed_is_still_refused(course_data):
    as_rendered_by_the_earlier_version(course_data)
    script = course_data / "scripts" / f"{CIRCLE}.yaml"
    script.write_text(script.read_text().replace("Hello, group.", "Hello, everyone."))
    with pytest.raises(ContentError, match="changed since it was rendered"):
        load_configured_circle(CIRCLE, course_data)


def test_a_set_lacking_a_step_of_the_circle_is_still_refused(course_data):
    as_rendered_by_the_earlier_version(course_data)
    path = course_data / "cache" / "sets" / f"{CIRCLE}.json"
    manifest = json.loads(path.read_text())
    del manifest["prompts"]["step:hello"]
    path.write_text(json.dumps(manifest))
    with pytest.raises(ContentError, match="lacks step:hello"):
        load_configured_circle(CIRCLE, course_data)


def test_the_runtime_plays_it_with_a_fault_line_and_the_doctor_warns(course_data):
    from device.doctor import WARN, Doctor, DoctorSeams, ScriptedTechnician

    as_rendered_by_the_earlier_version(course_data)
    config = make_config(course_data, session={"script": CIRCLE})
    runtime = Runtime(config, pin_factory=MockFactory(), speaker=SilentSpeaker(time.monotonic), listening=False)
    runtime.start()
    try:
        assert runtime.circle.loaded.script.script == CIRCLE
        assert any("rendered by an earlier version of the box" in f for f in runtime.status()["faults"])
    finally:
        runtime.close()
    seams = DoctorSeams(simulate=True, open_speaker=None, pin_factory=MockFactory(), technician=ScriptedTechnician(),
                        open_mic=None, out=lambda text: None)
    doctor = Doctor(config, seams)
    doctor.check_content()
    check = next(c for c in doctor.checks if c.name == "circle")
    assert check.status == WARN and f"run `circlebox render {CIRCLE}`" in check.detail
