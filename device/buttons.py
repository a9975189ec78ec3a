"""Big buttons: gpiozero devices built from the pin map in config, each press a named action.

Data-driven like Phoniebox: the map says which pin does what on a short press and on a long
press; nothing here knows what "next" means. A button with a long-press action fires its short
action on release (only then do we know it was short); one without fires on press.
Two buttons held together say the admin setup code (the technician's way in, no screen needed).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from device.config import ButtonSpec, ButtonsSection

Dispatch = Callable[[str, str], None]  # (action, source)
CHORD_ACTION = "setup_code"


@dataclass(frozen=True)
class ButtonMap:
    """Which action a named button triggers; shared by the GPIO adapter, the simulator and tests."""

    buttons: tuple[ButtonSpec, ...]

    def spec(self, name: str) -> ButtonSpec:
        for spec in self.buttons:
            if spec.name == name:
                return spec
        known = ", ".join(b.name for b in self.buttons)
        raise KeyError(f"no button named '{name}' (buttons: {known})")

    def action_for(self, name: str, held: bool = False) -> str:
        spec = self.spec(name)
        return (spec.hold or spec.press) if held else spec.press


def make_pin_factory(kind: str):  # -> gpiozero Factory
    """The pin factory for `kind`: mock for laptops and tests, lgpio on a Pi (4 and 5)."""
    if kind == "mock":
        from gpiozero.pins.mock import MockFactory

        return MockFactory()
    if kind == "lgpio":
        from gpiozero.pins.lgpio import LGPIOFactory

        return LGPIOFactory()
    from gpiozero import Device

    return Device._default_pin_factory()


class GpioButtons:
    """The physical buttons. Callbacks run on gpiozero's threads; dispatch must be thread-safe."""

    def __init__(self, section: ButtonsSection, dispatch: Dispatch, pin_factory) -> None:
        from gpiozero import Button

        self.map = ButtonMap(section.map)
        self._dispatch = dispatch
        self._held: set[str] = set()
        self._down: set[str] = set()
        self._lock = threading.Lock()
        self.devices: dict[str, Button] = {}
        for spec in section.map:
            button = Button(spec.pin, pull_up=True, bounce_time=section.bounce_s or None,
                            hold_time=section.hold_s, pin_factory=pin_factory)
            button.when_pressed = lambda _b=None, s=spec: self._pressed(s)
            button.when_held = lambda _b=None, s=spec: self._was_held(s)
            button.when_released = lambda _b=None, s=spec: self._released(s)
            self.devices[spec.name] = button

    def _pressed(self, spec: ButtonSpec) -> None:
        with self._lock:
            self._down.add(spec.name)
        if spec.hold is None:
            self._dispatch(spec.press, f"button:{spec.name}")

    def _was_held(self, spec: ButtonSpec) -> None:
        with self._lock:
            if spec.name in self._held:
                return  # already counted as part of a chord
            self._held.add(spec.name)
            chord = len(self._down) >= 2
            if chord:
                self._held.update(self._down)
        if chord:
            self._dispatch(CHORD_ACTION, "buttons:chord")
        elif spec.hold is not None:
            self._dispatch(spec.hold, f"button:{spec.name}")

    def _released(self, spec: ButtonSpec) -> None:
        with self._lock:
            self._down.discard(spec.name)
            was_held = spec.name in self._held
            self._held.discard(spec.name)
        if spec.hold is not None and not was_held:
            self._dispatch(spec.press, f"button:{spec.name}")

    def pin(self, name: str):
        """The gpiozero pin of a button (MockFactory pins can be driven in demos and tests)."""
        return self.devices[name].pin

    def close(self) -> None:
        for device in self.devices.values():
            device.close()
