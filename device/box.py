"""The box: the engine wired to its speaker, LEDs, log and usage tally, behind one dispatch().

Every input (a GPIO button, the keyboard in the demo, the admin page's panel, a spoken command,
a test) ends in `dispatch(action)`, which only queues it: the loop that owns the box (real time
on the Pi, virtual time in the simulator) feeds the queue to the engine on one thread, so the
engine never needs a lock and a slow input can never block a press.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from typing import Any

from device import engine as eng
from device import signals

log = logging.getLogger("circlebox.box")
LogSink = Callable[[str, dict[str, Any], float], None]


class Box:
    def __init__(
        self,
        engine: eng.Engine,
        speaker: Any,
        *,
        clock: Callable[[], float],
        leds: Any | None = None,
        sinks: list[LogSink] | None = None,
        sounds: Any | None = None,
    ) -> None:
        self.engine = engine
        self.speaker = speaker
        self.clock = clock
        self.leds = leds
        self.sinks = list(sinks or [])
        self.sounds = sounds  # the SoundBank the speaker was loaded with (to check ids)
        self.inbox: queue.SimpleQueue[eng.Event | Callable[[], None]] = queue.SimpleQueue()
        self.last_input: dict[str, Any] | None = None
        self.health: dict[str, str] = {}
        self.faults: list[str] = []
        self.t0 = clock()
        # actions the box itself answers after the engine has seen them (e.g. the setup code)
        self.hooks: dict[str, Callable[[], None]] = {}

    # -- inputs (any thread) ------------------------------------------------------------------

    def dispatch(self, action: str, source: str = "button") -> None:
        """Queue a named action from any input."""
        self.inbox.put(eng.Press(action, source))

    def post(self, event: eng.Event | Callable[[], None]) -> None:
        """Queue an engine event (speech, listening lost) or a call to run on the box's thread."""
        self.inbox.put(event)

    # -- the loop's side (one thread) ---------------------------------------------------------

    def process_pending(self) -> int:
        handled = 0
        while True:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                return handled
            handled += 1
            self.process_item(item)

    def process_item(self, item: eng.Event | Callable[[], None]) -> None:
        if callable(item) and not isinstance(item, eng.Press | eng.Tick):
            item()
        else:
            self.handle(item)

    def handle(self, event: eng.Event) -> None:
        now = self.clock()
        if isinstance(event, eng.Press):
            self.last_input = {"source": event.source, "action": event.action, "at": round(now - self.t0, 2)}
            self.emit("input", {"action": event.action, "source": event.source})
        self.execute(self.engine.handle(event, now))
        if isinstance(event, eng.Press) and event.action in self.hooks:
            self.hooks[event.action]()

    def hear(self, heard: Any, at: float) -> None:
        """A listener event (speech started/ended, a command) that happened at `at` on our clock.

        Logged first, then given to the engine; a command becomes a dispatch like any button.
        """
        from dataclasses import replace

        from device.listening.events import (
            CommandHeard,
            MaybeSpeech,
            MaybeSpeechEnded,
            SpeechEnded,
            SpeechStarted,
        )

        if isinstance(heard, CommandHeard):
            self.emit(signals.COMMAND_HEARD, {"phrase": heard.phrase, "confidence": round(heard.confidence, 2)})
            self.dispatch(heard.action, "voice")
            self.process_pending()
            return
        names = {SpeechStarted: signals.SPEECH_STARTED, SpeechEnded: signals.SPEECH_ENDED,
                 MaybeSpeech: signals.MAYBE_SPEECH, MaybeSpeechEnded: signals.MAYBE_SPEECH_ENDED}
        fields = {"duration_s": round(heard.duration_s, 2)} if isinstance(heard, SpeechEnded) else {}
        if type(heard) in names:  # an unsure sound is for the engine only: not logged
            self.emit(names[type(heard)], fields)
        self.handle(replace(heard, t=at))  # the engine's clock, not the microphone's

    def poll_audio(self) -> None:
        finished = self.speaker.poll(self.clock())
        if finished is not None:
            self.handle(eng.AudioFinished(finished))

    def tick_if_due(self) -> None:
        deadline = self.engine.next_deadline()
        if deadline is not None and deadline <= self.clock() + 1e-9:
            self.handle(eng.Tick())

    def execute(self, commands: list[eng.Command]) -> None:
        for cmd in commands:
            if isinstance(cmd, eng.Play):
                self._play(cmd.sound)
            elif isinstance(cmd, eng.StopAudio):
                self.speaker.stop()
            elif isinstance(cmd, eng.PauseAudio):
                self.speaker.pause()
            elif isinstance(cmd, eng.ResumeAudio):
                self.speaker.resume()
            elif isinstance(cmd, eng.SetVolume):
                self.speaker.set_volume(cmd.level)
            elif isinstance(cmd, eng.SetLed):
                if self.leds is not None:
                    self.leds.show(cmd.pattern)
            elif isinstance(cmd, eng.SetHelpLed):
                if self.leds is not None:
                    self.leds.set_help(cmd.on)
            elif isinstance(cmd, eng.Log):
                self.emit(cmd.event, cmd.fields)

    def _play(self, sound: str) -> None:
        if self.sounds is not None and sound not in self.sounds:
            # a prompt that was never rendered: say so loudly, and let the circle go on
            self.fault(f"sound '{sound}' is not rendered; run: circlebox render")
            self.speaker.stop()
            self.inbox.put(eng.AudioFinished(sound))
            if "bell:fault" in self.sounds:
                self.speaker.play("bell:fault")
            return
        self.speaker.play(sound)

    def emit(self, event: str, fields: dict[str, Any]) -> None:
        t = self.clock() - self.t0
        for sink in self.sinks:
            sink(event, fields, t)

    def fault(self, message: str) -> None:
        """Something is wrong that a person must know about: logged, counted, shown, never silent."""
        log.error("fault: %s", message)
        if message not in self.faults:
            self.faults.append(message)
        self.emit("fault", {"message": message})

    def status(self) -> dict[str, Any]:
        return {
            **self.engine.status(self.clock()),
            "last_input": self.last_input,
            "health": dict(self.health),
            "faults": list(self.faults),
        }

    def next_wake(self) -> float | None:
        """The earliest time the loop must act without input (a deadline)."""
        return self.engine.next_deadline()
