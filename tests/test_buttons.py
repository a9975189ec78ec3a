"""Buttons and LEDs on real gpiozero with MockFactory pins."""

from __future__ import annotations

import time

import pytest
from conftest import make_config
from gpiozero.pins.mock import MockFactory

from device.buttons import CHORD_ACTION, ButtonMap, GpioButtons
from device.leds import PATTERNS, StatusLeds


def wait_for(predicate, timeout=3.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def buttons(tmp_path):
    config = make_config(tmp_path, buttons={"hold_s": 0.3, "bounce_s": 0.0})
    pressed: list[tuple[str, str]] = []
    gpio = GpioButtons(config.buttons, lambda a, s: pressed.append((a, s)), MockFactory())
    yield gpio, pressed
    gpio.close()


def test_short_press_fires_the_press_action_on_release(buttons):
    gpio, pressed = buttons
    pin = gpio.pin("next")
    pin.drive_low()
    time.sleep(0.05)
    assert pressed == []  # next has a long-press action: wait to know which
    pin.drive_high()
    assert wait_for(lambda: pressed == [("next", "button:next")])


def test_long_press_fires_the_hold_action_only(buttons):
    gpio, pressed = buttons
    pin = gpio.pin("repeat")
    pin.drive_low()
    assert wait_for(lambda: pressed == [("previous", "button:repeat")])
    pin.drive_high()
    time.sleep(0.1)
    assert pressed == [("previous", "button:repeat")]


def test_two_buttons_held_together_ask_for_the_setup_code(buttons):
    gpio, pressed = buttons
    gpio.pin("next").drive_low()
    gpio.pin("help").drive_low()
    assert wait_for(lambda: (CHORD_ACTION, "buttons:chord") in pressed)
    gpio.pin("next").drive_high()
    gpio.pin("help").drive_high()
    time.sleep(0.1)
    assert [a for a, _ in pressed] == [CHORD_ACTION]


def test_button_map_is_data_driven(tmp_path):
    config = make_config(tmp_path, buttons={"map": [{"name": "big", "pin": 21, "press": "goto:share"}]})
    bmap = ButtonMap(config.buttons.map)
    assert bmap.action_for("big") == "goto:share" and bmap.action_for("big", held=True) == "goto:share"
    with pytest.raises(KeyError, match="no button named 'small'"):
        bmap.action_for("small")


def test_leds_show_patterns_and_the_help_light():
    factory = MockFactory()
    leds = StatusLeds(17, 27, factory)
    leds.show("speaking")
    assert leds.status.is_lit
    leds.show("waiting")
    assert wait_for(lambda: not leds.status.is_lit)  # a blink: it goes dark in between
    leds.set_help(True)
    assert leds.help.is_lit
    with pytest.raises(ValueError):
        leds.show("disco")
    assert set(PATTERNS) >= {"idle", "speaking", "listening", "paused", "help", "fault"}
    leds.close()
