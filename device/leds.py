"""LEDs: the status light shows what the box is doing; the help light calls the co-facilitator.

Patterns are plain on/off blinks (any LED, no PWM needed), chosen to be told apart from across
a room: steady when it speaks, a slow blink when it waits for NEXT, a short blip every two
seconds while it listens, fast flicker for a fault.
"""

from __future__ import annotations

# pattern -> (on seconds, off seconds); (1, 0) is steady on, (0, 1) off.
PATTERNS: dict[str, tuple[float, float]] = {
    "off": (0.0, 1.0),
    "idle": (1.0, 0.0),
    "speaking": (1.0, 0.0),
    "waiting": (0.5, 1.5),
    "listening": (0.1, 1.9),
    "timer": (1.0, 1.0),
    "paused": (0.5, 0.5),
    "help": (0.15, 0.15),
    "turn_warn": (0.25, 0.25),
    "turn_over": (0.1, 0.1),
    "update": (0.3, 0.3),
    "fault": (0.05, 0.1),
}


class StatusLeds:
    """The status and help LEDs on gpiozero, or nothing if no pin is configured."""

    def __init__(self, status_pin: int | None, help_pin: int | None, pin_factory) -> None:
        from gpiozero import LED

        self.status = LED(status_pin, pin_factory=pin_factory) if status_pin is not None else None
        self.help = LED(help_pin, pin_factory=pin_factory) if help_pin is not None else None
        self.pattern = "off"

    def show(self, pattern: str) -> None:
        if pattern not in PATTERNS:
            raise ValueError(f"unknown LED pattern '{pattern}'")
        self.pattern = pattern
        if self.status is None:
            return
        on, off = PATTERNS[pattern]
        if off == 0:
            self.status.on()
        elif on == 0:
            self.status.off()
        else:
            self.status.blink(on_time=on, off_time=off, background=True)

    def set_help(self, on: bool) -> None:
        if self.help is not None:
            self.help.on() if on else self.help.off()

    def close(self) -> None:
        for led in (self.status, self.help):
            if led is not None:
                led.close()
