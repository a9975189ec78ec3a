"""What anyone saves reaches the running box without a restart.

Regression (issue 11): the runtime read its config once at start. "Use on the box" wrote
session.script into <data>/admin-config.yaml and Start still played the old circle; volume 50 %
was saved and the next circle played at 70 %; listening settings too. Now the runtime reads its
config again when the admin page sends `reload` after a save, and when it notices a changed
file itself: volume at once, the rest between circles.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from conftest import make_config
from gpiozero.pins.mock import MockFactory

from audio.silent import SilentSpeaker
from device import runtime as runtime_module
from device.content import cache_dir, ensure_rendered, resolve_script
from device.control import ControlClient, socket_path
from device.reloading import ConfigSource
from device.runtime import Runtime


class RunningBox:
    """A Runtime over a temp data folder, its loop on a thread, reached over its control socket."""

    def __init__(self, data: Path, **kw) -> None:
        self.data = data
        self.speaker = SilentSpeaker(time.monotonic)
        # a reload reads the same layers as the test config (no /etc, no environment)
        source = ConfigSource(lambda: make_config(data), ())
        self.runtime = Runtime(make_config(data), pin_factory=MockFactory(), speaker=self.speaker,
                               config_source=source, **{"listening": False, **kw})
        self.runtime.start()
        self.loop = threading.Thread(target=self.runtime.run, daemon=True)
        self.loop.start()
        self.client = ControlClient(socket_path(data))

    def status(self) -> dict:
        return self.client.status()

    def wait(self, predicate, what: str, timeout: float = 15.0) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            status = self.status()
            if predicate(status):
                return status
            time.sleep(0.02)
        raise AssertionError(f"the box never got to: {what}; status: {self.status()}")

    def start_circle(self) -> None:
        assert self.client.dispatch("next")["ok"]
        self.wait(lambda s: s["state"] == "speaking", "a circle speaking")

    def close(self) -> None:
        self.runtime.stop()
        self.loop.join(5)
        self.runtime.close()


@pytest.fixture
def box(box_data, monkeypatch):
    monkeypatch.setattr(runtime_module, "RELOAD_CHECK_S", 0.05)  # the box looks at its files often
    running = RunningBox(box_data)
    yield running
    running.close()


def save_admin_config(data: Path, layer: dict) -> None:
    """What the admin page does: an atomic write of its own config layer."""
    from device.fsutil import atomic_write_text

    atomic_write_text(data / "admin-config.yaml", yaml.safe_dump(layer))


def add_rendered_circle(data: Path, script_id: str = "friday-circle") -> None:
    """A second circle on the box, rendered (the same prompts: the render reuses their sounds)."""
    source = data / "scripts" / "three-step-circle.yaml"
    text = source.read_text().replace("script: three-step-circle", f"script: {script_id}")
    (data / "scripts" / f"{script_id}.yaml").write_text(text)
    ensure_rendered(resolve_script(script_id, data), cache_dir(data), voices_dir=None, sample_rate=22050,
                    loudness_lufs=-18.0, quiet=True)


def test_volume_saved_mid_circle_applies_at_once(box):
    box.start_circle()
    save_admin_config(box.data, {"audio": {"volume": 0.5}})
    assert box.client.reload() == {"ok": True, "when": "now"}
    status = box.wait(lambda s: s["volume"] == 0.5, "volume 0.5")
    assert status["state"] == "speaking"  # the circle goes on
    assert box.speaker.volume == 0.5  # the speaker's gain, for what plays next


def test_a_lower_cap_lowers_the_volume_at_once(box):
    save_admin_config(box.data, {"audio": {"volume_cap": 0.6, "volume": 0.6}})
    assert box.client.reload()["ok"]
    box.wait(lambda s: s["volume"] == 0.6, "volume 0.6")
    assert box.runtime.box.engine.volume_cap == 0.6


def test_use_on_the_box_when_idle_switches_the_circle_now(box):
    add_rendered_circle(box.data)
    save_admin_config(box.data, {"session": {"script": "friday-circle"}})
    assert box.client.reload() == {"ok": True, "when": "now"}
    status = box.wait(lambda s: s["script"] == "friday-circle", "friday-circle loaded")
    assert status["pending"] == []
    box.start_circle()
    assert box.runtime.box.engine.script.script == "friday-circle"


def test_use_on_the_box_mid_circle_waits_for_the_circle_to_end(box):
    add_rendered_circle(box.data)
    box.start_circle()
    save_admin_config(box.data, {"session": {"script": "friday-circle"}, "audio": {"volume": 0.4}})
    assert box.client.reload() == {"ok": True, "when": "after_circle"}
    status = box.wait(lambda s: s["volume"] == 0.4, "volume at once")
    assert status["pending"] == ["circle friday-circle"]
    assert status["script"] == "three-step-circle" and status["state"] == "speaking"
    box.client.dispatch("stop")
    status = box.wait(lambda s: s["script"] == "friday-circle", "friday-circle after the circle")
    assert status["pending"] == []
    box.start_circle()
    assert box.runtime.box.engine.script.script == "friday-circle"
    assert box.status()["volume"] == 0.4  # the new circle keeps the saved volume


def test_a_hand_edit_is_noticed_without_a_reload_message(box):
    add_rendered_circle(box.data)
    before = box.status()["config_loaded_at"]
    save_admin_config(box.data, {"session": {"script": "friday-circle"}, "audio": {"volume": 0.3}})
    status = box.wait(lambda s: s["script"] == "friday-circle" and s["volume"] == 0.3, "the edit applied")
    assert status["config_loaded_at"] is not None and before is not None


def test_a_broken_config_keeps_the_last_good_one_with_a_fault(box):
    save_admin_config(box.data, {"audio": {"volume": 0.5}})
    assert box.client.reload()["ok"]
    box.wait(lambda s: s["volume"] == 0.5, "volume 0.5")
    (box.data / "admin-config.yaml").write_text("audio:\n  volume: 5\n")  # a hand edit gone wrong
    reply = box.client.reload()
    assert reply["ok"] is False and reply["error"].startswith("kept the last good settings:")
    assert "audio.volume" in reply["error"]
    status = box.status()
    assert any(f.startswith("settings: kept the last good settings:") for f in status["faults"])
    assert status["volume"] == 0.5
    box.start_circle()  # the box keeps running
    save_admin_config(box.data, {"audio": {"volume": 0.6}})
    assert box.client.reload()["ok"]
    status = box.wait(lambda s: s["volume"] == 0.6, "the fixed settings")
    assert not [f for f in status["faults"] if f.startswith("settings:")]


def test_a_new_button_map_is_used_between_circles(box):
    layer = {"buttons": {"map": [{"name": "go", "pin": 22, "press": "next"},
                                 {"name": "help", "pin": 26, "press": "help", "hold": "explain"}]}}
    save_admin_config(box.data, layer)
    assert box.client.reload() == {"ok": True, "when": "now"}
    box.wait(lambda s: "button map" not in s["pending"] and "go" in box.runtime.buttons.devices, "new buttons")
    pin = box.runtime.buttons.pin("go")
    pin.drive_low()
    pin.drive_high()
    box.wait(lambda s: s["state"] == "speaking" and s["last_input"]["action"] == "next", "pin 22 pressed NEXT")


def test_listening_settings_restart_the_microphone_after_the_circle(box_data, monkeypatch, tmp_path):
    from device.listening import open_wav_mic
    from device.listening.events import FRAME_BYTES

    monkeypatch.setattr(runtime_module, "RELOAD_CHECK_S", 0.05)
    quiet = tmp_path / "quiet.wav"
    _write_wav(quiet, b"\0" * FRAME_BYTES * 30)
    opened: list[str | None] = []

    def open_mic(device):
        opened.append(device)
        return open_wav_mic(quiet)

    box = RunningBox(box_data, listening=True, open_mic=open_mic)
    try:
        assert box.status()["listening"]["commands"] == "off: listening is not enabled in config"
        box.start_circle()
        # (the microphone device itself is never the admin page's to set: /etc or the environment)
        save_admin_config(box_data, {"listening": {"enabled": True, "commands": {"enabled": False}}})
        assert box.client.reload() == {"ok": True, "when": "after_circle"}
        assert box.status()["pending"] == ["listening settings"]
        assert opened == []
        box.client.dispatch("stop")
        box.wait(lambda s: s["pending"] == [] and s["listening"]["commands"] != "off: listening is not "
                 "enabled in config", "the microphone started")
        end = time.monotonic() + 10
        while not opened and time.monotonic() < end:
            time.sleep(0.02)
        assert opened == [box.runtime.config.listening.device]  # opened once the circle ended
    finally:
        box.close()


def test_set_clock_from_a_phone(box):
    phone = datetime(2027, 3, 1, 9, 30, tzinfo=UTC).timestamp()
    reply = box.client.set_clock(phone)
    assert reply["ok"] is True and reply["trusted"] is True
    assert reply["time"].startswith("2027-03-01T09:3")
    state = json.loads((box.data / "state" / "clock.json").read_text())
    assert state["set"]["source"] == "phone"
    for absurd, why in ((1000.0, "before 2020"), (phone + 11 * 365 * 86400, "10 years ahead"),
                        ("soon", "number of seconds"), (True, "number of seconds")):
        reply = box.client.set_clock(absurd)
        assert reply["ok"] is False and why in reply["error"], (absurd, reply)
    assert box.runtime.clock.read().time.year == 2027  # the refused ones changed nothing


def test_the_admin_pages_control_reaches_reload_and_set_clock(box):
    from local_admin.backends import BoxNotRunning, Control

    control = Control(socket_path(box.data))
    assert control.reload() == {"ok": True, "when": "now"}
    assert control.set_clock(datetime(2027, 1, 2, tzinfo=UTC).timestamp())["ok"] is True
    box.close()
    with pytest.raises(BoxNotRunning):
        control.reload()
    with pytest.raises(BoxNotRunning):
        control.set_clock(1.8e9)


def test_status_has_countdown_pending_and_config_time(box):
    status = box.status()
    assert status["pending"] == [] and status["countdown"] is None
    assert datetime.fromisoformat(status["config_loaded_at"]).year >= 2026
    assert status["volume"] == 0.7


def _write_wav(path: Path, pcm: bytes) -> None:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm)


def test_a_content_release_switch_is_noticed(box):
    """A bundle installs a higher version: `current/content` swaps; the box plays it next circle."""
    data = box.data
    release = data / "releases" / "content-7"
    (release / "scripts").mkdir(parents=True)
    text = (data / "scripts" / "three-step-circle.yaml").read_text().replace("version: 1", "version: 7")
    (release / "scripts" / "three-step-circle.yaml").write_text(text)
    shutil.copytree(data / "cache", release / "cache")
    (data / "current").mkdir()
    (data / "current" / "content").symlink_to(release)
    box.wait(lambda s: s["script_version"] == 7, "version 7 from the release")


@pytest.mark.parametrize("voice_db", [-35.0, -22.0], ids=["soft voice", "clear voice"])
def test_the_voice_check_on_the_admin_pages_meter_says_how_well_the_box_heard_a_voice(
        box_data, tmp_path, voice_db):
    """The voice check, as a facilitator placing the box does it: someone reads a few
    sentences from her seat in a room with a fan at -40 dBFS; the runtime hears her through its
    real detector, and the admin page's live status says how far her voice stood out of the
    room: read softly (-35 dBFS), too soft to be safe and what to do; read clearly (-22 dBFS),
    heard well."""
    import math

    import audio_fixtures as af
    import numpy as np
    import real_speech as rs
    from test_admin_support import make_app, ready_client

    from device.listening import open_wav_mic
    from device.listening.listener import CLEAR_VOICE_DB

    rng = np.random.default_rng(11)
    voice = af.at_level(rs.clip(*rs.TALKERS[0].clips[0]), voice_db)
    fan = rng.standard_normal(16000 * 3 + len(voice) + 16000 * 5)
    fan *= 10 ** (-40 / 20) / np.sqrt(np.mean(fan * fan))
    fan[16000 * 3:16000 * 3 + len(voice)] += voice
    room = tmp_path / "voice.wav"
    _write_wav(room, (np.clip(fan, -1, 1) * 32767).astype("<i2").tobytes())
    save_admin_config(box_data, {"listening": {"enabled": True, "commands": {"enabled": False}}})
    box = RunningBox(box_data, listening=True, open_mic=lambda device: open_wav_mic(room))
    try:
        heard = box.wait(lambda s: s["listening"].get("last_voice_db") is not None, "the voice")
        shown = heard["listening"]["last_voice_db"]
        client = ready_client(make_app(box_data), box_data)
        note = client.get("/panel/status.json").get_json()["voice_note"]
        assert note.startswith("The last voice the box heard ("), note
        if voice_db < -30:
            assert 0 < shown < CLEAR_VOICE_DB, heard["listening"]
            assert (f"s ago) stood only {math.floor(shown)} dB above the room's noise "
                    f"({CLEAR_VOICE_DB:.0f} dB or more is clear)") in note
            assert "Move the box nearer to that seat" in note
        else:
            assert shown >= CLEAR_VOICE_DB, heard["listening"]
            assert note.endswith(f"s ago) stood {math.floor(shown)} dB above the room's noise: the box "
                                 "hears a voice like that well."), note
    finally:
        box.close()


def test_a_loud_room_is_said_next_to_the_admin_pages_meter(box_data, tmp_path):
    """The runtime listening in a room with a fan at -36 dBFS, its status over the control
    socket, the admin page's live status: the meter says the room is loud (a soft voice may
    go unheard) and what to do, in the reader's words."""
    import numpy as np
    from test_admin_support import make_app, ready_client

    from device.listening import open_wav_mic

    rng = np.random.default_rng(7)
    fan = rng.standard_normal(16000 * 60)
    fan *= 10 ** (-36 / 20) / np.sqrt(np.mean(fan * fan))
    room = tmp_path / "fan.wav"
    _write_wav(room, (fan * 32768).astype("<i2").tobytes())
    save_admin_config(box_data, {"listening": {"enabled": True, "commands": {"enabled": False}}})
    box = RunningBox(box_data, listening=True, open_mic=lambda device: open_wav_mic(room))
    try:
        box.wait(lambda s: s["listening"].get("room_noise") == "loud", "the meter hears the fan")
        client = ready_client(make_app(box_data), box_data)
        live = client.get("/panel/status.json").get_json()
        assert live["noise_note"].startswith("The room is loud (background -36 dB)")
        assert "closer to the group" in live["noise_note"]
    finally:
        box.close()
