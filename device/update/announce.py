"""How the updater talks: an Announcer seam, a console one, and a Narrator that keeps the box
from going silent (a heartbeat at least every HEARTBEAT_S of work) and drives the LED progress.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from device.update import messages

HEARTBEAT_S = 8.0  # under the 10 s promise, with room for one slow chunk


class Announcer(Protocol):
    def say(self, code: str, **fields: object) -> None: ...


class SilentAnnouncer:
    def say(self, code: str, **fields: object) -> None:
        return None


class PrintAnnouncer:
    """The CLI's voice: one line per message, code first, so logs and the admin page agree."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    def say(self, code: str, **fields: object) -> None:
        print(f"[{code}] {messages.text(code, **fields)}", file=self.stream, flush=True)


class Narrator:
    """Announcer + progress + heartbeat, all on one clock seam (fake in tests)."""

    def __init__(
        self,
        announcer: Announcer | None = None,
        on_progress: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.announcer = announcer or SilentAnnouncer()
        self.on_progress = on_progress or (lambda fraction: None)
        self.clock = clock
        self._last_said = clock()

    def say(self, code: str, **fields: object) -> None:
        self.announcer.say(code, **fields)
        self._last_said = self.clock()

    def work(self, fraction: float | None = None) -> None:
        """Call often during long work: reports progress, says "still working" when due."""
        if fraction is not None:
            self.on_progress(max(0.0, min(1.0, fraction)))
        if self.clock() - self._last_said >= HEARTBEAT_S:
            self.say(messages.STILL_WORKING)


class BoxAnnouncer:
    """The box's voice: pre-rendered prompts played by the running device runtime (one output
    stream, no second process fighting for the speaker), and a console line for the journal.

    Update messages are urgent: "keep the power on" must be heard even during a circle. If the
    runtime is not running (it is being restarted), the line still reaches the journal.
    """

    def __init__(self, socket: Path, stream=None):
        self.console = PrintAnnouncer(stream)
        self.socket = Path(socket)

    def say(self, code: str, **fields: object) -> None:
        from device.control import BoxNotRunning, ControlClient

        self.console.say(code, **fields)
        with contextlib.suppress(BoxNotRunning, ValueError):  # restarting: the journal has the line
            ControlClient(self.socket, timeout=1.0).announce(messages.spoken_parts(code, **fields), urgent=True)
