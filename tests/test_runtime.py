"""The runtime's promises: it keeps the last good circle, switches only between circles,
and answers the admin page over the control socket."""

from __future__ import annotations

import os
import threading
import time

import pytest
from conftest import make_config
from gpiozero.pins.mock import MockFactory

from audio.silent import SilentSpeaker
from device.content import ContentError
from device.control import BoxNotRunning, ControlClient, socket_path
from device.runtime import Runtime


def start_runtime(data, **kw) -> Runtime:
    runtime = Runtime(make_config(data), pin_factory=MockFactory(), speaker=SilentSpeaker(time.monotonic),
                      listening=False, **kw)
    runtime.start()
    return runtime


def break_script(data) -> None:
    path = data / "scripts" / "three-step-circle.yaml"
    text = path.read_text().replace("kind: round\n    core: true\n    title: \"Step two",
                                    "kind: round\n    core: maybe\n    title: \"Step two")
    assert "core: maybe" in text
    path.write_text(text)
    os.utime(path, (time.time() + 5, time.time() + 5))


def test_broken_script_is_refused_naming_step_and_field_and_the_last_good_one_plays(box_data):
    first = start_runtime(box_data, control=False)
    assert first.health["circle"] == "ok"
    first.close()
    break_script(box_data)
    runtime = start_runtime(box_data, control=False)
    try:
        fault = runtime.status()["faults"][0]
        assert "step 3 'share', field core" in fault and "three-step-circle.yaml" in fault
        assert runtime.circle.loaded.script.script == "three-step-circle"
        assert runtime.status()["health"]["circle"].startswith("using the last good version")
    finally:
        runtime.close()


def test_broken_script_with_no_last_good_refuses_to_start_with_the_reason(box_data):
    break_script(box_data)
    runtime = Runtime(make_config(box_data), pin_factory=MockFactory(), speaker=SilentSpeaker(time.monotonic),
                      control=False, listening=False)
    with pytest.raises(Exception, match=r"step 3 'share', field core"):
        runtime.start()


def test_unrendered_edit_keeps_the_running_version(box_data):
    runtime = start_runtime(box_data, control=False)
    try:
        path = box_data / "scripts" / "three-step-circle.yaml"
        path.write_text(path.read_text().replace("version: 1", "version: 2").replace(
            "Welcome, everyone.", "Hello, everyone."))
        os.utime(path, (time.time() + 5, time.time() + 5))
        assert runtime.maybe_reload() is False
        assert runtime.circle.loaded.script.version == 1
        assert any("kept version 1" in f and "changed since it was rendered" in f for f in runtime.box.faults)
    finally:
        runtime.close()


def test_control_socket_gives_status_and_dispatches_actions(box_data):
    runtime = start_runtime(box_data)
    loop = threading.Thread(target=runtime.run, daemon=True)
    loop.start()
    try:
        client = ControlClient(socket_path(box_data))
        assert client.status()["state"] == "idle"
        assert client.dispatch("next")["ok"] is True
        assert client.dispatch("jump")["ok"] is False
        for _ in range(100):
            if client.status()["state"] == "speaking":
                break
            time.sleep(0.02)
        status = client.status()
        assert status["state"] == "speaking" and status["step"] == "welcome"
        assert status["last_input"]["source"] == "admin"
    finally:
        runtime.stop()
        loop.join(5)
        runtime.close()
    with pytest.raises(BoxNotRunning):
        ControlClient(socket_path(box_data)).status()


def test_missing_render_is_a_clear_error(tmp_path):
    (tmp_path / "scripts").mkdir()
    runtime = Runtime(make_config(tmp_path), pin_factory=MockFactory(), speaker=SilentSpeaker(time.monotonic),
                      control=False, listening=False)
    with pytest.raises(ContentError, match="has not been rendered yet: run `circlebox render"):
        runtime.start()
