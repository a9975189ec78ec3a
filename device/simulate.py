"""Headless simulation: the real engine and the real rendered sounds, in virtual time.

Time jumps from one thing to the next (a press, a deadline, the end of a sound, a microphone
frame), so an hour-long circle runs in seconds and replays the same decisions every run. The
log and the WAV it writes are what technicians and tests check a script with. The loop body,
the engine's construction and the microphone's muting are `device.pump`'s, the same as on the
box, so a simulation cannot disagree with the box.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from device import signals
from device.buttons import ButtonMap
from device.config import Config
from device.engine import AT_REST
from device.pump import Pump, build_box, build_engine
from device.usage import SessionTally, UsageStore


class EventsError(ValueError):
    """A bad line in an events file; the message names the file, line and field."""


@dataclass(frozen=True)
class SimEvent:
    t: float
    action: str
    source: str


def read_events(path: Path, buttons: ButtonMap) -> list[SimEvent]:
    """EVENTS.jsonl: {"t": 12.5, "button": "next"} (optional "hold": true) or {"t": 3, "action": "goto:share"}."""
    from device.actions import UnknownAction, parse_action

    events: list[SimEvent] = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise EventsError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise EventsError(f"{path}: is not UTF-8 text (byte {exc.start})") from exc
    for number, line in enumerate(lines, 1):
        where = f"{path}:{number}"
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise EventsError(f"{where}: not a JSON object: {exc}") from exc
        except RecursionError as exc:
            raise EventsError(f"{where}: not a JSON object: nested too deeply") from exc
        if not isinstance(item, dict):
            raise EventsError(f"{where}: each line must be a JSON object")
        t = item.get("t")
        if isinstance(t, int) and not isinstance(t, bool) and abs(t) > 1e300:
            t = math.inf  # an integer too large for a float: refused just below, not an OverflowError
        if not isinstance(t, int | float) or isinstance(t, bool) or not math.isfinite(t) or t < 0:
            raise EventsError(f"{where}: field t must be a number of seconds >= 0")
        unknown = set(item) - {"t", "button", "hold", "action"}
        if unknown:
            raise EventsError(f"{where}: unknown field {', '.join(sorted(unknown))}")
        if ("button" in item) == ("action" in item):
            raise EventsError(f"{where}: give either button or action")
        if "button" in item:
            hold = item.get("hold", False)
            if not isinstance(hold, bool):
                raise EventsError(f"{where}: field hold must be true or false")
            try:
                action = buttons.action_for(str(item["button"]), held=hold)
            except KeyError as exc:
                raise EventsError(f"{where}: field button: {exc.args[0]}") from exc
            source = f"button:{item['button']}" + (":hold" if hold else "")
        else:
            try:
                action = parse_action(str(item["action"])).text
            except UnknownAction as exc:
                raise EventsError(f"{where}: field action: {exc}") from exc
            source = "events"
        events.append(SimEvent(float(t), action, source))
    events.sort(key=lambda e: e.t)
    return events


class VirtualClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def set(self, t: float) -> None:
        self.t = max(self.t, t)  # never backwards


class JsonlLog:
    """One JSON object per line: {"t": seconds, "event": name, ...fields}."""

    def __init__(self, handle: TextIO) -> None:
        self.handle = handle

    def __call__(self, event: str, fields: dict[str, Any], t: float) -> None:
        self.handle.write(json.dumps({"t": round(t, 3), "event": event, **fields}) + "\n")


@dataclass
class SimResult:
    duration_s: float
    state: str
    events_used: int


FRAME_S = 0.03


class CourseRun:
    """A course across sessions in one simulation, moved on exactly as the box moves it: the
    same position rule (device.course_position) and the same meeting loader (device.course_play).
    The position is kept in memory from the course's start; the box's own file is not touched."""

    def __init__(self, config: Config, source: Any, data: Path, position: int = 0) -> None:
        from device.course_position import CourseAdvance, PositionStore

        self.config = config
        self.source = source
        self.data = data
        self.store = PositionStore(source.course, None)
        self.store.current.position = position
        self.advance = CourseAdvance(self.store, on_advance=self._moved)
        self.stale = False
        self.meetings = 0  # meetings loaded so far

    def _moved(self, position: int) -> None:
        self.stale = True

    def on_log(self, event: str, fields: dict[str, Any], t: float) -> None:
        self.advance.on_log(event, fields, t)

    def load(self) -> Any:
        """The circle of the meeting where the course stands (device.course_play.MeetingCircle)."""
        from device.course_play import load_meeting, play_for

        play = play_for(self.source, self.store.position)
        self.stale = False
        self.meetings += 1
        return load_meeting(play, play.circle, self.data, self.config.audio.system_language)

    def announce(self, box: Any, meeting: Any) -> None:
        """One log line per meeting: which circle, which meeting (or that the course is finished)."""
        play, script = meeting.play, meeting.circle.loaded.script
        fields = {"script": script.script, "version": script.version, "course": play.course.course,
                  "meeting": "finished" if play.finished else play.meeting.label}
        if meeting.fault:
            fields["fault"] = meeting.fault
            box.fault(meeting.fault)
        box.emit(signals.CIRCLE_LOADED, fields)

    def next_meeting(self, box: Any) -> None:
        """Between circles: load the next meeting's circle into the box (as the runtime does)."""
        meeting = self.load()
        circle = meeting.circle
        box.speaker.load(circle.bank)
        box.sounds = circle.bank
        old = box.engine
        box.engine = build_engine(self.config, circle.loaded.script, listening=old.listening, volume=old.volume,
                                  intro=meeting.intro, session_fields=meeting.session_fields)
        self.announce(box, meeting)


def run_simulation(
    config: Config,
    circle: Any,
    events: list[SimEvent],
    *,
    log_handle: TextIO | None = None,
    audio_out: Path | None = None,
    usage: UsageStore | None = None,
    mic: Any | None = None,
    listener: Any | None = None,
    until: float | None = None,
    extra_sinks: list[Any] | None = None,
    course: CourseRun | None = None,
    training: Any | None = None,
    facilitator: Callable[[float, Any], str | None] | None = None,
) -> SimResult:
    """Run one simulated box until nothing more can happen (or `until`).

    With `course`, `circle` is ignored: the box plays the course's meetings one after another,
    the next one loaded between circles as on the box, and the events go on across them.
    `training` (a device.training_log.TrainingLog) records rehearsals, as on the box.
    `facilitator(now, engine)`: someone in the room who presses a button when she sees fit
    (a bench's facilitator ending the turns the box leaves to her); the action, or None.
    """
    from audio.timeline import TimelineSpeaker
    from device.training_log import TrainingTally

    meeting = course.load() if course is not None else None
    if meeting is not None:
        circle = meeting.circle
    clock = VirtualClock()
    speaker = TimelineSpeaker(circle.bank.sample_rate, clock=clock.now)
    tally = SessionTally(usage, box=config.box.name)
    sinks = [tally.on_log, TrainingTally(training, box=config.box.name).on_log,
             *([course.on_log] if course is not None else []), *(extra_sinks or [])]
    if log_handle is not None:
        sinks.insert(0, JsonlLog(log_handle))
    box = build_box(config, circle, speaker, clock=clock.now, sinks=sinks, listening=listener is not None,
                    intro=meeting.intro if meeting else (), session_fields=meeting.session_fields if meeting else None)
    if course is not None and meeting is not None:
        course.announce(box, meeting)
    pump = Pump(box)

    pending = list(events)
    frames = _frames(mic) if mic is not None else None
    next_frame_t: float | None = FRAME_S if frames is not None else None
    used = 0
    while True:
        candidates = [c for c in (
            pending[0].t if pending else None,
            box.next_wake(),
            speaker.ends_at(),
            next_frame_t,
        ) if c is not None]
        if not candidates:
            break
        t = min(candidates)
        if until is not None and t > until:
            clock.set(until)
            break
        if not pending and next_frame_t is None and box.engine.state in AT_REST and speaker.ends_at() is None:
            break
        clock.set(t)
        while pending and pending[0].t <= clock.now() + 1e-9:
            ev = pending.pop(0)
            box.dispatch(ev.action, ev.source)
            used += 1
        if facilitator is not None and (pressed := facilitator(clock.now(), box.engine)) is not None:
            box.dispatch(pressed, "bench")
        pump.turn()
        if next_frame_t is not None and next_frame_t <= clock.now() + 1e-9:
            frame = next(frames, None)
            if frame is None:
                next_frame_t = None
                if listener is not None:
                    pump.mic_lost(listener)
            else:
                pump.hear_frame(listener, frame)
                next_frame_t += FRAME_S
            pump.turn()
        if course is not None and course.stale and box.engine.state in AT_REST and box.engine.playing is None:
            course.next_meeting(box)
    end = clock.now()
    if audio_out is not None:
        speaker.write_wav(audio_out, until=end + 0.5)
    return SimResult(duration_s=end, state=box.engine.state, events_used=used)


def _frames(mic: Any) -> Iterator[bytes]:
    while True:
        frame = mic.read_frame()
        if frame is None:
            return
        yield frame

