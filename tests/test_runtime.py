"""The runtime's promises: it keeps the last good circle, switches only between circles,
and answers the admin page over the control socket."""

from __future__ import annotations

import json
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


def test_a_running_circle_holds_the_lock_the_updater_checks(box_data):
    from device.update.seams import circle_running_from_lock

    runtime = start_runtime(box_data)
    loop = threading.Thread(target=runtime.run, daemon=True)
    loop.start()
    circle_running = circle_running_from_lock(box_data / "circle.lock")
    client = ControlClient(socket_path(box_data))
    try:
        assert circle_running() is False
        client.dispatch("next")
        assert _wait(lambda: client.status()["state"] == "speaking")
        assert circle_running() is True
        client.dispatch("stop")
        assert _wait(lambda: client.status()["state"] == "finished")
        assert circle_running() is False
    finally:
        runtime.stop()
        loop.join(5)
        runtime.close()


def test_updater_announcements_play_through_the_box(box_data):
    played: list[str] = []
    speaker = SilentSpeaker(time.monotonic)
    real_play = speaker.play
    speaker.play = lambda sound: (played.append(sound), real_play(sound))
    runtime = Runtime(make_config(box_data), pin_factory=MockFactory(), speaker=speaker, listening=False)
    runtime.start()
    loop = threading.Thread(target=runtime.run, daemon=True)
    loop.start()
    client = ControlClient(socket_path(box_data))
    try:
        assert client.announce(["bell:chime"], urgent=True)["ok"] is True
        assert _wait(lambda: played.count("bell:chime") == 2)  # once at start-up, once announced
        assert client.announce([])["ok"] is False
    finally:
        runtime.stop()
        loop.join(5)
        runtime.close()


def _wait(predicate, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_a_newly_rendered_version_is_taken_between_circles(box_data):
    from device.content import cache_dir, ensure_rendered, resolve_script

    runtime = start_runtime(box_data, control=False)
    try:
        path = box_data / "scripts" / "three-step-circle.yaml"
        path.write_text(path.read_text().replace("version: 1", "version: 2").replace(
            "This circle is now closed.", "This circle is now closed. Go well."))
        assert runtime.maybe_reload() is False  # saved but not rendered: keep version 1
        assert runtime.circle.loaded.script.version == 1
        ensure_rendered(resolve_script("three-step-circle", box_data), cache_dir(box_data), voices_dir=None,
                        sample_rate=22050, loudness_lufs=-18.0, quiet=True)
        assert runtime.maybe_reload() is True
        assert runtime.circle.loaded.script.version == 2
        assert not [f for f in runtime.box.faults if f.startswith("circle:")]  # the old complaint is gone
        assert "step:close" in runtime.box.sounds
    finally:
        runtime.close()


def test_a_save_cut_between_its_rendered_set_and_the_switch_is_played_without_the_admin_page(box_data):
    """Regression (power-cut harness): the admin page saves a draft, renders it, writes the
    circle's set, then makes the draft live. A cut between the last two left a live copy that
    matched no set and a last-good copy whose sounds were replaced: the runtime could not start
    until the admin page had started and finished the switch. It now plays the rendered draft,
    and the admin page's start makes it live (the same `interrupted_save` decides both)."""
    from device.content import cache_dir, draft_path, ensure_rendered, parse_script
    from local_admin import store

    live = box_data / "scripts" / "three-step-circle.yaml"
    old = live.read_text()
    first = start_runtime(box_data, control=False)  # v1 played once: it is the last good copy
    first.close()
    new = old.replace("version: 1", "version: 2").replace("This circle is now closed.",
                                                          "This circle is now closed. Go well.")
    draft = draft_path(box_data, "three-step-circle")
    draft.parent.mkdir(parents=True)
    draft.write_text(new)
    ensure_rendered(parse_script(new, str(draft), live), cache_dir(box_data), voices_dir=None,
                    sample_rate=22050, loudness_lufs=-18.0, quiet=True)
    # the power went here: the set is the draft's, the live copy is still version 1
    runtime = start_runtime(box_data, control=False)
    try:
        assert runtime.circle.loaded.script.version == 2
        assert runtime.health["circle"] == "ok" and not runtime.faults
        assert live.read_text() == old  # the runtime only reads: the admin page finishes the switch
        assert store.finish_interrupted_saves(box_data) == ["three-step-circle"]
        assert live.read_text() == new and not draft.exists()
        assert runtime.maybe_reload() is False  # the same text: nothing to switch
    finally:
        runtime.close()


def test_a_draft_whose_render_did_not_finish_is_not_played(box_data):
    from device.content import draft_path

    live = box_data / "scripts" / "three-step-circle.yaml"
    draft = draft_path(box_data, "three-step-circle")
    draft.parent.mkdir(parents=True)
    draft.write_text(live.read_text().replace("version: 1", "version: 2").replace(
        "This circle is now closed.", "Not rendered."))
    runtime = start_runtime(box_data, control=False)
    try:
        assert runtime.circle.loaded.script.version == 1
        assert runtime.health["circle"] == "ok"
    finally:
        runtime.close()


def test_an_installed_content_bundle_with_a_higher_version_is_played(box_data):
    import shutil

    from device.content import cache_for, resolve_script

    release = box_data / "releases" / "content-7"
    (release / "scripts").mkdir(parents=True)
    text = (box_data / "scripts" / "three-step-circle.yaml").read_text().replace("version: 1", "version: 7")
    (release / "scripts" / "three-step-circle.yaml").write_text(text)
    shutil.copytree(box_data / "cache", release / "cache")
    (box_data / "current").mkdir()
    (box_data / "current" / "content").symlink_to(release)
    loaded = resolve_script("three-step-circle", box_data)
    assert loaded.script.version == 7
    assert cache_for(loaded, box_data) == box_data / "current" / "content" / "cache"


MINI = """script: mini
version: 1
language: en_US
voice: en_US-joe-medium
steps:
  - id: hello
    say: Hello.
messages: {help: Help., reminder: Soon., wrap_up: Thanks., finished: Done., explain: Press.,
  ready: Ready., resumed: On., action_next: Next., action_skip: Skip., action_repeat: Again.,
  action_previous: Back., action_pause: Pause., action_help: Help., action_explain: Explain.,
  action_volume_up: Up., action_volume_down: Down., action_start: Start., action_stop: Stop.,
  action_setup_code: Code.}
"""


def test_render_paths_refresh_a_set_made_with_other_settings_but_the_runtime_still_plays_it(tmp_path):
    from audio.render import RenderSettings, render_script
    from device.content import ensure_rendered, load_circle
    from device.script import parse_script

    (tmp_path / "mini.yaml").write_text(MINI)
    loaded = parse_script(MINI, "mini.yaml", tmp_path / "mini.yaml")
    cache = tmp_path / "cache"
    render_script(loaded, cache, settings=RenderSettings(loudness_lufs=-18.0))
    load_circle(loaded, cache)  # a set rendered with other settings still plays
    before = json.loads((cache / "sets" / "mini.json").read_text())
    ensure_rendered(loaded, cache, voices_dir=None, sample_rate=22050, loudness_lufs=-20.0, quiet=True)
    after = json.loads((cache / "sets" / "mini.json").read_text())
    assert before["meta"]["loudness_lufs"] == -18.0 and after["meta"]["loudness_lufs"] == -20.0
    assert {p["key"] for p in after["prompts"].values()}.isdisjoint({p["key"] for p in before["prompts"].values()})
    load_circle(loaded, cache)


def test_a_box_message_being_said_is_finished_before_the_box_stops(box_data):
    """The updater restarts the box after every install, while "Installing. Keep the power on."
    may still be said: the message ends whole, then the box stops (heard cut off in QEMU)."""
    runtime = start_runtime(box_data)
    loop = threading.Thread(target=runtime.run, daemon=True)
    loop.start()
    client = ControlClient(socket_path(box_data))
    try:
        assert client.announce(["update:S04"])["ok"]
        for _ in range(200):
            if client.status().get("playing") == "update:S04":
                break
            time.sleep(0.01)
        assert client.status()["playing"] == "update:S04"
    finally:
        runtime.stop()
        loop.join(15)
        runtime.close()
    assert runtime.box.engine.playing is None  # said to its end, not cut off by the stop
