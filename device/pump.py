"""The one pump that drives a box: the same loop body on the Pi and in the simulator.

`circlebox run` turns it on the real (monotonic) clock, `circlebox simulate` on a virtual clock
that jumps from one thing to the next; everything else is shared: how the engine is built from
config and circle, the order in which inputs, the end of a sound and deadlines reach the
engine, when the microphone is muted, and how what the listener heard reaches the box. So the
simulator cannot disagree with the box.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from device import engine as eng
from device.box import Box
from device.config import Config


def build_engine(config: Config, script: Any, *, listening: bool, volume: float | None = None,
                 intro: Sequence[str] = (), session_fields: Mapping[str, Any] | None = None) -> eng.Engine:
    """The engine for one circle, with the config's volume settings.

    `volume` carries the level a facilitator set with the buttons over to a new circle (kept
    under the cap); None starts at the configured volume. `intro` and `session_fields` are a
    course meeting's announcement and what it adds to `session_started` (device.course_play).
    """
    audio = config.audio
    level = audio.volume if volume is None else min(volume, audio.volume_cap)
    course: dict[str, Any] = {}
    if intro:
        course["intro"] = tuple(intro)
    if session_fields:
        course["session_fields"] = dict(session_fields)
    return eng.Engine(script, volume=level, volume_cap=audio.volume_cap, volume_step=audio.volume_step,
                      listening=listening, **course)


def build_box(config: Config, circle: Any, speaker: Any, *, clock: Any, sinks: list[Any],
              listening: bool, intro: Sequence[str] = (),
              session_fields: Mapping[str, Any] | None = None) -> Box:
    """The box for `circle`: the speaker loaded with its sounds at the configured volume."""
    speaker.load(circle.bank)
    speaker.set_volume(config.audio.volume)
    engine = build_engine(config, circle.loaded.script, listening=listening, intro=intro,
                          session_fields=session_fields)
    return Box(engine, speaker, clock=clock, sinks=sinks, sounds=circle.bank)


def mic_muted(engine: eng.Engine) -> bool:
    """The microphone hears nothing while the box speaks, and nothing while a circle is paused
    or in HELP: the room is then not taking turns, and talk must not end or start one."""
    return engine.playing is not None or engine.state in eng.PAUSES


class Pump:
    """One turn of the loop that owns a box, and the microphone's way in."""

    def __init__(self, box: Box) -> None:
        self.box = box

    def turn(self, items: Iterable[Any] = ()) -> None:
        """Feed `items` (taken from the box's inbox), then everything queued, the end of a sound
        and any deadline that is due, in that order. Call it on the box's thread only."""
        box = self.box
        for item in items:
            box.process_item(item)
        box.process_pending()
        box.poll_audio()
        box.process_pending()
        box.tick_if_due()
        box.process_pending()

    def hear_frame(self, listener: Any, frame: bytes) -> None:
        """Give one microphone frame to the listener (muted by `mic_muted`) and queue what it heard
        for the box, placed on the box's clock. Safe on the microphone's own thread."""
        muted = mic_muted(self.box.engine)
        for heard in listener.process(frame, box_playing=muted):
            self._queue_heard(listener, heard)

    def mic_lost(self, listener: Any) -> None:
        """The microphone stopped: close a speech segment it cut off, and stop pacing by listening."""
        for heard in listener.flush():
            self._queue_heard(listener, heard)
        self.box.post(eng.ListeningChanged(False))

    def _queue_heard(self, listener: Any, heard: Any) -> None:
        # the listener counts audio time; the box's clock is now at the listener's end of audio
        at = self.box.clock() - (listener.t - heard.t)
        self.box.post(partial(self.box.hear, heard, at))


__all__ = ["Pump", "build_box", "build_engine", "mic_muted"]
