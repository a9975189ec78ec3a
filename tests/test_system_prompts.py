"""The box's own prompt set ("system"): what it holds, when it is stale, and that the runtime
really says the setup code from it when two buttons are held together."""

from __future__ import annotations

import json
import threading
import time

import pytest
from conftest import make_config

from device.content import cache_dir, load_circle, resolve_script
from device.runtime import Runtime
from device.system_prompts import (
    DEFAULT_SYSTEM_VOICE,
    render_system_set,
    system_manifest_path,
    system_prompts,
    system_rendered_matches,
)


def test_system_prompts_hold_the_setup_code_digits_and_one_doctor_prompt_per_button(tmp_path):
    config = make_config(tmp_path, buttons={"map": [
        {"name": "next", "pin": 5, "press": "next"},
        {"name": "big_red", "pin": 6, "press": "help"},
    ]})
    prompts = system_prompts(config)
    assert prompts["sys:setup_code"] == ("The setup code for the admin page is",)
    assert prompts["sys:setup_code_again"] == ("Again:",)
    assert [prompts[f"sys:digit_{d}"][0] for d in range(10)] == [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    assert "use the console" in prompts["sys:setup_code_used"][0]
    assert prompts["sys:doctor_speaker_works"] == ("Speaker works.",)
    assert prompts["sys:doctor_press_big_red"] == ("Press the big red button.",)
    assert prompts["sys:doctor_works_next"] == ("Next works.",)
    assert "sys:doctor_press_repeat" not in prompts  # only the configured buttons
    assert all(isinstance(p, tuple) and all(isinstance(t, str) and t for t in p) for p in prompts.values())


def test_update_prompts_are_included_under_the_ids_the_updater_plays():
    messages = pytest.importorskip("device.update.messages")
    prompts = system_prompts()
    for pid, text in messages.prompts().items():
        assert prompts[pid] == (text,)
    for code in ("S02", "U06"):
        assert all(pid in prompts for pid in messages.spoken_parts(code, version=12))


def test_rendered_default_has_an_up_to_date_system_set_and_the_circle_bank_holds_it(rendered_default):
    cache = cache_dir(rendered_default)
    manifest = json.loads(system_manifest_path(cache).read_text())
    assert manifest["voice"] == DEFAULT_SYSTEM_VOICE
    assert set(manifest["prompts"]) == set(system_prompts())
    kw = {"voice_id": DEFAULT_SYSTEM_VOICE, "sample_rate": 22050, "loudness_lufs": -18.0}
    assert system_rendered_matches(cache, **kw)
    assert render_system_set(cache, **kw) is None  # cached: nothing to do, no Piper
    # Stale when anything it is made of changes: a button name, the voice, the settings.
    assert not system_rendered_matches(cache, **kw, button_names=["next", "repeat", "pause", "stop"])
    assert not system_rendered_matches(cache, **{**kw, "voice_id": "en_US-other-low"})
    assert not system_rendered_matches(cache, **{**kw, "loudness_lufs": -20.0})
    bank = load_circle(resolve_script("three-step-circle", rendered_default), cache).bank
    assert "sys:setup_code" in bank and "sys:doctor_press_next" in bank and "step:welcome" in bank


def test_a_circle_without_a_system_set_still_loads(box_data):
    system_manifest_path(cache_dir(box_data)).unlink()
    bank = load_circle(resolve_script("three-step-circle", box_data), cache_dir(box_data)).bank
    assert "step:welcome" in bank and "sys:setup_code" not in bank


class RecordingSpeaker:
    """Every play() in order; each sound 'finishes' at the next poll (no real time)."""

    def __init__(self) -> None:
        self.played: list[str] = []
        self._current: str | None = None
        self._lock = threading.Lock()

    def load(self, bank) -> None:
        self.bank = bank

    def play(self, sound_id: str) -> None:
        assert sound_id in self.bank, sound_id
        with self._lock:
            self.played.append(sound_id)
        self._current = sound_id

    def stop(self) -> None:
        self._current = None

    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def set_volume(self, level: float) -> None: ...

    def poll(self, now: float) -> str | None:
        done, self._current = self._current, None
        return done

    def close(self) -> None: ...

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self.played)


def hold_two_buttons(box_data, code: str | None) -> list[str]:
    """Run the box, hold NEXT and REPEAT together, return what it played after start-up."""
    from gpiozero.pins.mock import MockFactory

    if code is not None:
        (box_data / "secrets").mkdir(parents=True, exist_ok=True)
        (box_data / "secrets" / "setup-code").write_text(code + "\n")
    speaker = RecordingSpeaker()
    runtime = Runtime(make_config(box_data, buttons={"hold_s": 0.3}), pin_factory=MockFactory(),
                      speaker=speaker, control=False, listening=False)
    runtime.start()
    started = len(speaker.snapshot())
    loop = threading.Thread(target=runtime.run, daemon=True)
    loop.start()
    try:
        runtime.buttons.pin("next").drive_low()
        runtime.buttons.pin("repeat").drive_low()
        expected = 1 if code is None else 2 + 2 * len(code)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(speaker.snapshot()) - started < expected:
            time.sleep(0.02)
        runtime.buttons.pin("next").drive_high()
        runtime.buttons.pin("repeat").drive_high()
        time.sleep(0.1)
    finally:
        runtime.stop()
        loop.join(5)
        runtime.close()
    return speaker.snapshot()[started:]


def test_two_held_buttons_say_the_setup_code_twice_from_the_system_set(box_data):
    played = hold_two_buttons(box_data, "407915")
    digits = ["sys:digit_4", "sys:digit_0", "sys:digit_7", "sys:digit_9", "sys:digit_1", "sys:digit_5"]
    assert played == ["sys:setup_code", *digits, "sys:setup_code_again", *digits]


def test_two_held_buttons_without_a_code_say_the_password_is_set(box_data):
    assert hold_two_buttons(box_data, None) == ["sys:setup_code_used"]


def test_a_stale_system_set_renders_again_only_what_changed(box_data):
    cache = cache_dir(box_data)
    names = ["next", "repeat", "pause", "help", "big_red"]
    kw = {"voice_id": DEFAULT_SYSTEM_VOICE, "sample_rate": 22050, "loudness_lufs": -18.0}
    result = render_system_set(cache, **kw, button_names=names)
    assert sorted(result.rendered) == ["sys:doctor_press_big_red", "sys:doctor_works_big_red"]
    assert system_rendered_matches(cache, **kw, button_names=names)
    assert not system_rendered_matches(cache, **kw)  # the default map is now the stale one


def test_render_command_system_only(box_data, capsys):
    from device.cli import main

    assert main(["--data", str(box_data), "render", "--system-only"]) == 0
    out = capsys.readouterr().out
    assert "system: up to date" in out and "system.json" in out
    assert main(["--data", str(box_data), "render", "--system-only", "--all"]) == 2
