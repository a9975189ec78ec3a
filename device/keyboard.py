"""Keys as the big buttons, for `circlebox demo` on a laptop.

A key press drives the button's MockFactory pin low and high again, so the demo goes through
exactly the gpiozero path the real buttons take (short press, long press with Shift).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from device.demo_words import describe_keys

KEYS = {"n": "next", " ": "next", "r": "repeat", "p": "pause", "h": "help"}
DIRECT = {"+": "volume_up", "=": "volume_up", "-": "volume_down"}


def key_help(buttons: Sequence[Any]) -> str:
    """The keys, each button's press and hold action named once with what it does."""
    return describe_keys([(key, name) for key, name in KEYS.items() if key != " "], buttons)


class KeyboardButtons:
    def __init__(self, press_pin: Callable[[str, bool], None], dispatch: Callable[[str, str], None],
                 on_quit: Callable[[], None], on_status: Callable[[], None],
                 step_ids: Callable[[], list[str]], stream: TextIO = sys.stdin,
                 say: Callable[[str], None] = lambda text: None) -> None:
        self.press_pin = press_pin
        self.say = say  # tells the person about keys that do nothing
        self.step_ids = step_ids
        self.dispatch = dispatch
        self.on_quit = on_quit
        self.on_status = on_status
        self.stream = stream
        self._thread = threading.Thread(target=self._run, name="keyboard", daemon=True)

    def start(self) -> KeyboardButtons:
        self._thread.start()
        return self

    def handle_key(self, key: str) -> None:
        if key in ("q", "\x03", "\x04"):
            self.on_quit()
        elif key == "s":
            self.on_status()
        elif key.lower() in KEYS:
            self.press_pin(KEYS[key.lower()], key.isupper())
        elif key in DIRECT:
            self.dispatch(DIRECT[key], "keyboard")
        elif key.isdigit() and key != "0":
            ids = self.step_ids()
            if int(key) <= len(ids):
                self.dispatch(f"goto:{ids[int(key) - 1]}", "keyboard")
            else:
                self.say(f"{key}: this circle has {len(ids)} steps.")
        elif key.strip():
            self.say(f"{key!r} is not one of the keys: n r p h (Shift for a long press), + -, 1-9, s, q.")

    def _run(self) -> None:
        stream = self.stream
        if stream.isatty():
            import termios
            import tty

            fd = stream.fileno()
            old = termios.tcgetattr(fd)
            try:
                tty.setcbreak(fd)
                while True:
                    key = stream.read(1)
                    if not key:
                        break
                    self.handle_key(key)
            finally:
                with contextlib.suppress(termios.error):
                    termios.tcsetattr(fd, termios.TCSADRAIN, old)
        else:
            for line in stream:  # piped input: one key per line (for scripted demos)
                for key in line.rstrip("\n") or " ":
                    self.handle_key(key)
        self.on_quit()
