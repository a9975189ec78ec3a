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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from device.buttons import ButtonMap
from device.config import Config
from device.engine import AT_REST
from device.pump import Pump, build_box
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
) -> SimResult:
    """Run one simulated box until nothing more can happen (or `until`)."""
    from audio.timeline import TimelineSpeaker

    clock = VirtualClock()
    speaker = TimelineSpeaker(circle.bank.sample_rate, clock=clock.now)
    tally = SessionTally(usage, box=config.box.name)
    sinks = [tally.on_log, *(extra_sinks or [])]
    if log_handle is not None:
        sinks.insert(0, JsonlLog(log_handle))
    box = build_box(config, circle, speaker, clock=clock.now, sinks=sinks, listening=listener is not None)
    engine = box.engine
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
        if not pending and next_frame_t is None and engine.state in AT_REST and speaker.ends_at() is None:
            break
        clock.set(t)
        while pending and pending[0].t <= clock.now() + 1e-9:
            ev = pending.pop(0)
            box.dispatch(ev.action, ev.source)
            used += 1
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
    end = clock.now()
    if audio_out is not None:
        speaker.write_wav(audio_out, until=end + 0.5)
    return SimResult(duration_s=end, state=engine.state, events_used=used)


def _frames(mic: Any) -> Iterator[bytes]:
    while True:
        frame = mic.read_frame()
        if frame is None:
            return
        yield frame

