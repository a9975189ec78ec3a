"""The session engine: a pure state machine. Events in, commands out.

It has no clock, no audio and no GPIO: every event comes with the time it happened (`now`, in
seconds on whatever clock the caller runs: monotonic on the box, virtual in simulations), and
every effect is a command the caller carries out. That is what lets a one-hour circle replay in a
second, deterministically, and what lets the same engine drive the box, the simulator and tests.

Time while paused does not count: deadlines live on an "active" clock that stops during PAUSE
and HELP, so a turn's two minutes are two minutes of circle, not of tea break.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from device.actions import Action, UnknownAction, parse_action
from device.listening.events import SpeechEnded, SpeechStarted  # `t`: when it really happened, on our clock
from device.script import (
    BellStep,
    ExerciseStep,
    RoundStep,
    SayStep,
    Script,
    SpokenBetween,
    TimerStep,
    prompt_id,
)

# -- events (inputs) --------------------------------------------------------------------------


@dataclass(frozen=True)
class Press:
    """A named action from any input: a button, the keyboard, the admin panel, a voice command."""

    action: str
    source: str = "button"


@dataclass(frozen=True)
class AudioFinished:
    """The speaker played `sound` to its end."""

    sound: str


@dataclass(frozen=True)
class Tick:
    """The caller's clock reached `next_deadline()`."""


@dataclass(frozen=True)
class Announce:
    """Box-level speech (the setup code, update progress): never over a running circle."""

    sounds: tuple[str, ...]
    urgent: bool = False  # update safety messages ("keep the power on") are said even mid-circle


@dataclass(frozen=True)
class ListeningChanged:
    """Listening became available or was lost (microphone failed): rounds fall back to buttons."""

    available: bool


Event = Press | AudioFinished | Tick | SpeechStarted | SpeechEnded | ListeningChanged | Announce

# -- commands (outputs) -----------------------------------------------------------------------


@dataclass(frozen=True)
class Play:
    """Stop whatever is playing and play `sound` from its start."""

    sound: str


@dataclass(frozen=True)
class StopAudio:
    pass


@dataclass(frozen=True)
class PauseAudio:
    pass


@dataclass(frozen=True)
class ResumeAudio:
    pass


@dataclass(frozen=True)
class SetVolume:
    level: float


@dataclass(frozen=True)
class SetLed:
    """Status LED pattern; see device.leds for what each looks like."""

    pattern: str


@dataclass(frozen=True)
class SetHelpLed:
    on: bool


@dataclass(frozen=True)
class Log:
    """A structured event for the session log and the usage tally."""

    event: str
    fields: dict[str, Any] = field(default_factory=dict)


Command = Play | StopAudio | PauseAudio | ResumeAudio | SetVolume | SetLed | SetHelpLed | Log

# -- engine -----------------------------------------------------------------------------------

IDLE, SPEAKING, WAITING, IN_ROUND, TIMER, PAUSED, HELP, FINISHED = (
    "idle", "speaking", "waiting", "in_round", "timer", "paused", "help", "finished",
)
PAUSE_BEFORE_SPEAKING_S = 1.0  # silence we wait for before a reminder or wrap-up: never talk over anyone
LED_FOR_STATE = {
    IDLE: "idle", SPEAKING: "speaking", WAITING: "waiting", IN_ROUND: "listening",
    TIMER: "timer", PAUSED: "paused", HELP: "help", FINISHED: "idle",
}


@dataclass
class _Sequence:
    """Sounds played one after another, then a continuation."""

    sounds: list[str]
    on_done: Callable[[], None] | None
    index: int = 0

    @property
    def current(self) -> str:
        return self.sounds[self.index]


@dataclass
class _Turn:
    n: int
    start: float  # active time
    speech_seen: bool = False
    in_speech: bool = False
    last_speech_end: float | None = None
    warned: bool = False
    reminder_due: bool = False
    reminded: bool = False
    over_max: bool = False


class Engine:
    """One circle at a time, from the first NEXT to the last step."""

    def __init__(
        self,
        script: Script,
        *,
        volume: float = 0.7,
        volume_cap: float = 0.9,
        volume_step: float = 0.1,
        listening: bool = False,
    ) -> None:
        self.script = script
        self.volume = volume
        self.volume_cap = volume_cap
        self.volume_step = volume_step
        self.listening = listening
        self.state = IDLE
        self.step_index = -1
        self.session_start: float | None = None
        self._cmds: list[Command] = []
        self._now = 0.0
        self._paused_total = 0.0
        self._pause_started: float | None = None
        self._resume_state: str | None = None
        self._resume_how: str = "audio"  # "audio": ResumeAudio; "replay": play the current sound again
        self._seq: _Sequence | None = None
        self._suspended: _Sequence | None = None
        self._deadlines: dict[str, tuple[float, Callable[[], None]]] = {}
        self._explaining = False
        self._turn: _Turn | None = None
        self._turns_done = 0
        self._round_phase = ""
        self._round_open = False
        self._round_last_activity = 0.0
        self.led = "idle"

    # -- public API ---------------------------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Command]:
        """Feed one event that happened at `now`; returns what the box must do."""
        self._now = now
        self._cmds = []
        if isinstance(event, Press):
            self._on_press(event)
        elif isinstance(event, AudioFinished):
            self._on_audio_finished(event.sound)
        elif isinstance(event, Tick):
            self._fire_due()
        elif isinstance(event, SpeechStarted):
            self._on_speech_started()
        elif isinstance(event, SpeechEnded):
            # the listener reports the end a hangover late; silence counts from the real end
            self._on_speech_ended(min(self._active, event.t - self._paused_total))
        elif isinstance(event, Announce):
            self._announce(event)
        elif isinstance(event, ListeningChanged):
            self.listening = event.available
            self._log("listening", available=event.available)
            if not event.available:
                self._clear_deadlines("advance_silence")  # unsure: wait for a button
        cmds, self._cmds = self._cmds, []
        return cmds

    def next_deadline(self) -> float | None:
        """When the caller must send a Tick (on its own clock), or None."""
        if self._pause_started is not None or not self._deadlines:
            return None
        return min(at for at, _ in self._deadlines.values()) + self._paused_total

    @property
    def step(self) -> Any | None:
        if 0 <= self.step_index < len(self.script.steps):
            return self.script.steps[self.step_index]
        return None

    @property
    def turn(self) -> int | None:
        return self._turn.n if self._turn else None

    @property
    def playing(self) -> str | None:
        return self._seq.current if self._seq else None

    def status(self) -> dict[str, Any]:
        step = self.step
        return {
            "state": self.state,
            "step": step.id if step else None,
            "step_title": (step.title or step.id) if step else None,
            "step_index": self.step_index if step else None,
            "steps_total": len(self.script.steps),
            "turn": self.turn,
            "led": self.led,
            "session_elapsed_s": None if self.session_start is None else round(self._now - self.session_start, 1),
            "volume": round(self.volume, 2),
            "listening_active": self.listening,
            "playing": self.playing,
        }

    # -- time -----------------------------------------------------------------------------------

    @property
    def _active(self) -> float:
        return self._now - self._paused_total

    def _set_deadline(self, name: str, after_s: float, then: Callable[[], None]) -> None:
        self._deadlines[name] = (self._active + after_s, then)

    def _clear_deadlines(self, *names: str) -> None:
        for name in names or list(self._deadlines):
            self._deadlines.pop(name, None)

    def _fire_due(self) -> None:
        if self._pause_started is not None:
            return
        while True:
            due = [(at, name) for name, (at, _) in self._deadlines.items() if at <= self._active + 1e-9]
            if not due:
                return
            _, name = min(due)
            _, then = self._deadlines.pop(name)
            then()

    # -- output helpers -------------------------------------------------------------------------

    def _log(self, event: str, **fields: Any) -> None:
        self._cmds.append(Log(event, fields))

    def _led(self) -> None:
        self._set_led(LED_FOR_STATE[self.state])

    def _set_led(self, pattern: str) -> None:
        self.led = pattern
        self._cmds.append(SetLed(pattern))

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self._led()

    def _play(self, sounds: list[str], on_done: Callable[[], None] | None = None) -> None:
        self._seq = _Sequence(list(sounds), on_done)
        self._start_current_sound()

    def _start_current_sound(self) -> None:
        assert self._seq is not None
        sound = self._seq.current
        self._cmds.append(Play(sound))
        if sound.startswith("bell:"):
            self._log("bell", bell=sound.removeprefix("bell:"))
        else:
            self._log("prompt_started", step=self.step.id if self.step else None, prompt=sound)

    def _stop_audio(self) -> None:
        if self._seq is not None:
            self._cmds.append(StopAudio())
        self._seq = None

    def _on_audio_finished(self, sound: str) -> None:
        seq = self._seq
        if seq is None or seq.current != sound or self._pause_started is not None:
            return  # stale: we already moved on
        if not sound.startswith("bell:"):
            self._log("prompt_finished", step=self.step.id if self.step else None, prompt=sound)
        seq.index += 1
        if seq.index < len(seq.sounds):
            self._start_current_sound()
            return
        self._seq = None
        if seq.on_done:
            seq.on_done()

    # -- presses ------------------------------------------------------------------------------

    def _on_press(self, press: Press) -> None:
        try:
            action = parse_action(press.action)
        except UnknownAction as exc:
            self._log("ignored", action=press.action, why=str(exc))
            return
        if self._explaining and action.name != "explain":
            self._log("explained", action=action.text)
            self._interrupt_with([f"msg:action_{action.name}" if action.name != "goto" else "msg:action_next"])
            return
        handler = getattr(self, f"_do_{action.name}")
        handler(action)

    def _do_start(self, action: Action) -> None:
        if self.state in (IDLE, FINISHED):
            self._start_session()
        else:
            self._log("ignored", action="start", why="a circle is already running")

    def _do_next(self, action: Action) -> None:
        if self.state == IDLE:
            self._start_session()
        elif self.state == FINISHED:
            self._play(["msg:finished"])
            self._set_state(IDLE)
        elif self.state in (PAUSED, HELP):
            self._resume(replay=False)
            self._do_next(action)
        elif self.state == IN_ROUND and self._round_phase in ("turn", "wrap_up", "reminder"):
            self._end_turn("button")
        elif self.state == IN_ROUND:
            # during the round's prompt or a between-turns bell: skip ahead to the turn
            self._stop_audio()
            self._begin_turn() if self._round_phase == "prompt" else self._begin_next_turn()
        else:
            self._finish_step("next", delivered=self.state in (WAITING, TIMER))

    def _do_skip(self, action: Action) -> None:
        # resume first: HELP or PAUSE pressed while idle or finished resumes to no circle at all
        if self.state in (PAUSED, HELP):
            self._resume(replay=False)
        if self.state in (IDLE, FINISHED):
            self._do_next(action)
            return
        delivered = self.state == WAITING or (self.state == IN_ROUND and self._turns_done > 0)
        self._finish_step("skip", delivered=delivered)

    def _do_repeat(self, action: Action) -> None:
        if self.state in (PAUSED, HELP):
            self._resume(replay=False)
        self._log("repeat", step=self.step.id if self.step else None)
        if self.state == IDLE:
            self._play(["msg:ready"])
        elif self.state == FINISHED:
            self._play(["msg:finished"])
        elif self.state == IN_ROUND:
            self._clear_deadlines()
            self._round_phase = "prompt"
            self._play([prompt_id(self.step.id)], self._after_round_prompt)
        elif self.state == TIMER:
            step = self.step
            if step.say:
                self._play([prompt_id(step.id)])
        else:
            self._start_step(self.step_index, announce=False)

    def _do_previous(self, action: Action) -> None:
        if self.state in (PAUSED, HELP):
            self._resume(replay=False)
        if self.state in (IDLE, FINISHED):
            self._do_repeat(action)
            return
        target = max(0, self.step_index - 1)
        self._finish_step("previous", delivered=False, advance=False)
        self._start_step(target)

    def _do_goto(self, action: Action) -> None:
        try:
            target = self.script.step_index(action.step or "")
        except KeyError:
            self._log("ignored", action=action.text, why=f"no step '{action.step}' in this circle")
            return
        if self.state in (PAUSED, HELP):
            self._resume(replay=False)
        if self.state in (IDLE, FINISHED):
            self._start_session(first_step=target)
            return
        self._finish_step("goto", delivered=False, advance=False)
        self._start_step(target)

    def _do_pause(self, action: Action) -> None:
        if self.state in (PAUSED, HELP):
            self._resume(replay=True)
        elif self.state in (IDLE, FINISHED):
            self._log("ignored", action="pause", why="no circle is running")
        else:
            self._pause(PAUSED)

    def _do_help(self, action: Action) -> None:
        self._log("help", step=self.step.id if self.step else None)
        self._cmds.append(SetHelpLed(True))
        if self.state == PAUSED:
            self._set_state(HELP)
        elif self.state != HELP:
            self._pause(HELP)
        self._interrupt_with(["msg:help"])

    def _do_explain(self, action: Action) -> None:
        """Explain mode: every press says what its button does, until explain is pressed again."""
        if self._explaining:
            self._explaining = False
            self._log("explain", on=False)
            if self._resume_state in (IDLE, FINISHED):
                self._resume(replay=False)
            else:
                self._stop_audio()
            return
        self._explaining = True
        self._log("explain", on=True)
        if self.state not in (PAUSED, HELP):
            self._pause(PAUSED)
        self._interrupt_with(["msg:explain"])

    def _do_volume_up(self, action: Action) -> None:
        self._change_volume(+self.volume_step)

    def _do_volume_down(self, action: Action) -> None:
        self._change_volume(-self.volume_step)

    def _do_stop(self, action: Action) -> None:
        if self.state in (PAUSED, HELP):
            self._resume(replay=False)
        if self.state in (IDLE, FINISHED):  # also after HELP pressed between circles: one end per circle
            self._log("ignored", action="stop", why="no circle is running")
            return
        self._finish_step("stopped", delivered=False, advance=False)
        self._finish_session(completed=False)

    def _do_setup_code(self, action: Action) -> None:
        # the box (which knows the code) answers with an Announce; the engine only logs it
        self._log("setup_code_requested", running=self.state not in (IDLE, FINISHED))

    def _announce(self, event: Announce) -> None:
        if self.state not in (IDLE, FINISHED) and not event.urgent:
            self._log("ignored", action="announce", why="a circle is running")
            return
        if self.state not in (IDLE, FINISHED) and self.state not in (PAUSED, HELP):
            self._pause(PAUSED)
        self._log("announce", sounds=list(event.sounds))
        self._interrupt_with(list(event.sounds))

    def _change_volume(self, delta: float) -> None:
        level = round(min(self.volume_cap, max(0.1, self.volume + delta)), 2)
        self.volume = level
        self._cmds.append(SetVolume(level))
        self._log("volume", level=level)
        if self._seq is None and self.state not in (PAUSED, HELP):
            self._cmds.append(Play("bell:tick"))

    # -- pause, help, resume ------------------------------------------------------------------

    def _pause(self, state: str) -> None:
        self._resume_state = self.state
        self._pause_started = self._now
        self._resume_how = "audio"
        if self._seq is not None:
            self._cmds.append(PauseAudio())
        if self.state not in (IDLE, FINISHED):
            self._log("paused", step=self.step.id if self.step else None,
                      why="help" if state == HELP else "button")
        self._set_state(state)

    def _interrupt_with(self, sounds: list[str]) -> None:
        """Play a system message while paused; the paused instruction restarts on resume."""
        if self._seq is not None and self._suspended is None:
            self._suspended = self._seq
        self._resume_how = "replay"
        self._seq = _Sequence(list(sounds), None)
        self._start_current_sound()

    def _resume(self, replay: bool) -> None:
        if self._pause_started is None:
            return
        self._explaining = False
        self._paused_total += self._now - self._pause_started
        self._pause_started = None
        was_help = self.state == HELP
        self._set_state(self._resume_state or IDLE)
        self._resume_state = None
        if was_help:
            self._cmds.append(SetHelpLed(False))
        if self.state not in (IDLE, FINISHED):
            self._log("resumed", step=self.step.id if self.step else None)
        if self._suspended is not None:
            self._seq, self._suspended = self._suspended, None
            self._start_current_sound() if replay else self._stop_audio()
        elif self._seq is not None and self._resume_how == "audio":
            if replay:
                self._cmds.append(ResumeAudio())
            else:
                self._stop_audio()
        elif self._seq is not None:
            self._stop_audio()
        self._fire_due()

    # -- session and steps --------------------------------------------------------------------

    def _start_session(self, first_step: int = 0) -> None:
        self.session_start = self._now
        self._paused_total = 0.0
        self._clear_deadlines()
        self._cmds.append(SetHelpLed(False))
        self._log("session_started", script=self.script.script, version=self.script.version,
                  steps=len(self.script.steps), core_steps=sum(1 for s in self.script.steps if s.core))
        self._start_step(first_step)

    def _start_step(self, index: int, announce: bool = True) -> None:
        self._stop_audio()
        self._clear_deadlines()
        self._turn = None
        self.step_index = index
        step = self.step
        if announce:
            self._log("step_started", step=step.id, kind=step.kind, core=step.core)
        if isinstance(step, SayStep | ExerciseStep):
            self._set_state(SPEAKING)
            self._play([prompt_id(step.id)], self._after_step_prompt)
        elif isinstance(step, RoundStep):
            self._set_state(IN_ROUND)
            self._turns_done = 0
            self._round_open = True
            self._round_phase = "prompt"
            self._round_last_activity = self._active
            self._log("round_started", step=step.id, listening=self.listening)
            self._play([prompt_id(step.id)], self._after_round_prompt)
        elif isinstance(step, TimerStep):
            self._set_state(TIMER)
            if step.say:
                self._play([prompt_id(step.id)])
            if step.warn_before_s:
                self._set_deadline("timer_warn", step.duration_s - step.warn_before_s,
                                   lambda: self._play([f"bell:{step.warn_bell}"]))
            self._set_deadline("timer_end", step.duration_s, self._timer_done)
        elif isinstance(step, BellStep):
            self._set_state(SPEAKING)
            self._play([f"bell:{step.bell}"] * step.count, lambda: self._step_done("done"))

    def _after_step_prompt(self) -> None:
        self._step_done("done")

    def _step_done(self, how: str) -> None:
        """The step's own content is over: continue, or wait for the facilitator's NEXT."""
        step = self.step
        if step.then == "continue":
            self._finish_step(how, delivered=True)
        else:
            self._set_state(WAITING)
            self._arm_advance_on_silence()

    def _arm_advance_on_silence(self, quiet_since: float | None = None) -> None:
        """`advance: on_silence`: move on once the room is quiet (only while listening works)."""
        step = self.step
        if self.state == WAITING and self.listening and getattr(step, "advance", "button") == "on_silence":
            quiet_for = 0.0 if quiet_since is None else max(0.0, self._active - quiet_since)
            self._set_deadline("advance_silence", max(0.0, step.advance_silence_s - quiet_for),
                               lambda: self._finish_step("silence", delivered=True))

    def _timer_done(self) -> None:
        step = self.step
        self._log("timer_ended", step=step.id)
        self._play([f"bell:{step.end_bell}"], lambda: self._step_done("time"))

    def _finish_step(self, reason: str, delivered: bool, advance: bool = True) -> None:
        step = self.step
        if step is None:
            return
        if self._turn is not None:
            self._end_turn_record(reason if reason in ("skip", "stopped") else "button")
        if isinstance(step, RoundStep) and self._round_open:
            self._round_open = False
            self._log("round_ended", step=step.id, turns=self._turns_done, reason=reason)
        self._clear_deadlines()
        self._stop_audio()
        self._log("step_finished", step=step.id, reason=reason, delivered=delivered)
        if not advance:
            return
        if self.step_index + 1 < len(self.script.steps):
            self._start_step(self.step_index + 1)
        else:
            self._finish_session(completed=True)

    def _finish_session(self, completed: bool) -> None:
        self._clear_deadlines()
        self._turn = None
        self._log("session_finished", completed=completed,
                  duration_s=round(self._now - self.session_start, 1) if self.session_start is not None else 0.0)
        self.step_index = -1
        self._set_state(FINISHED)

    # -- rounds -------------------------------------------------------------------------------

    def _after_round_prompt(self) -> None:
        if self._turn is not None:  # REPEAT during a turn: the same person carries on
            self._round_phase = "turn"
            self._turn.start = self._active
            self._arm_turn()
        else:
            self._begin_turn()

    def _begin_turn(self) -> None:
        self._round_phase = "turn"
        n = self._turns_done + 1
        self._turn = _Turn(n=n, start=self._active)
        self._log("turn_started", n=n)
        self._arm_turn()

    def _arm_turn(self) -> None:
        """Deadlines for the current turn, from the state of its speech."""
        step: RoundStep = self.step
        turn = self._turn
        assert turn is not None
        t = step.turns
        self._clear_deadlines("turn_silence", "turn_warn", "turn_max", "turn_pause")
        if not turn.warned:
            self._set_deadline("turn_warn", max(0.0, turn.start + t.warn_s - self._active), self._turn_warn)
        if not turn.over_max:
            self._set_deadline("turn_max", max(0.0, turn.start + t.max_s - self._active), self._turn_max)
        if not self.listening:
            return
        if not turn.speech_seen:
            self._set_deadline("turn_silence", max(0.0, turn.start + t.pass_on_silence_s - self._active),
                               lambda: self._end_turn("pass"))
        elif not turn.in_speech and turn.last_speech_end is not None:
            quiet_for = self._active - turn.last_speech_end
            if turn.over_max or turn.reminder_due:
                self._set_deadline("turn_pause", max(0.0, PAUSE_BEFORE_SPEAKING_S - quiet_for),
                                   self._speak_at_pause)
            else:
                reason = "reminder" if turn.reminded else "silence"
                self._set_deadline("turn_silence", max(0.0, t.end_on_silence_s - quiet_for),
                                   lambda: self._end_turn(reason))

    def _turn_warn(self) -> None:
        turn = self._turn
        if turn is None:
            return
        turn.warned = True
        self._log("turn_warning", n=turn.n)
        if not self.listening:
            self._set_led("turn_warn")  # the facilitator sees it; nobody is interrupted
            return
        turn.reminder_due = True
        if not turn.in_speech:
            self._arm_turn()

    def _turn_max(self) -> None:
        turn = self._turn
        if turn is None:
            return
        turn.over_max = True
        self._log("turn_max", n=turn.n)
        if not self.listening:
            self._set_led("turn_over")
            self._play(["bell:chime"])  # a soft chime, never words, over someone who may be speaking
            return
        if not turn.in_speech:
            self._arm_turn()

    def _speak_at_pause(self) -> None:
        """A pause long enough to speak into: the wrap-up (over max) or the reminder (over warn)."""
        turn = self._turn
        step: RoundStep = self.step
        if turn is None:
            return
        if turn.over_max:
            self._round_phase = "wrap_up"
            sound = prompt_id(step.id, "wrap_up") if step.wrap_up else "msg:wrap_up"
            self._play([sound], lambda: self._end_turn("max"))
        else:
            self._round_phase = "reminder"
            turn.reminder_due = False
            turn.reminded = True
            sound = prompt_id(step.id, "reminder") if step.reminder else "msg:reminder"
            self._log("reminder", n=turn.n)
            self._play([sound], self._after_reminder)

    def _after_reminder(self) -> None:
        if self._turn is not None:
            self._round_phase = "turn"
            self._turn.last_speech_end = self._active
            self._arm_turn()

    def _on_speech_started(self) -> None:
        turn = self._turn
        self._round_last_activity = self._active
        self._clear_deadlines("advance_silence")  # the room is talking: wait for quiet again
        if self.state != IN_ROUND or turn is None or self._round_phase != "turn":
            return
        turn.speech_seen = True
        turn.in_speech = True
        self._clear_deadlines("turn_silence", "turn_pause")

    def _on_speech_ended(self, ended: float) -> None:
        turn = self._turn
        self._round_last_activity = ended
        self._arm_advance_on_silence(ended)
        if self.state != IN_ROUND or turn is None or self._round_phase != "turn":
            return
        turn.in_speech = False
        turn.last_speech_end = max(ended, turn.start)
        self._arm_turn()

    def _end_turn_record(self, reason: str) -> None:
        turn = self._turn
        if turn is None:
            return
        self._turn = None
        self._turns_done += 1
        self._log("turn_ended", n=turn.n, reason=reason,
                  duration_s=round(self._active - turn.start, 1))

    def _end_turn(self, reason: str) -> None:
        step: RoundStep = self.step
        turn = self._turn
        if turn is None:
            return
        self._clear_deadlines("turn_silence", "turn_warn", "turn_max", "turn_pause")
        if reason == "button" and self._seq is not None:
            self._stop_audio()
        self._end_turn_record(reason)
        self._set_led(LED_FOR_STATE[IN_ROUND])
        if step.turns.count is not None and self._turns_done >= step.turns.count:
            self._round_done("count")
            return
        if reason == "pass" and self._active - self._round_last_activity >= step.turns.end_round_on_silence_s:
            self._round_done("silence")
            return
        self._between_turns()

    def _between_turns(self) -> None:
        step: RoundStep = self.step
        self._round_phase = "between"
        between = step.between_turns
        if isinstance(between, SpokenBetween):
            self._play([prompt_id(step.id, "between")], self._begin_next_turn)
        elif between == "none":
            self._begin_next_turn()
        else:
            self._play([f"bell:{between}"], self._begin_next_turn)

    def _begin_next_turn(self) -> None:
        if self.state == IN_ROUND:
            self._begin_turn()

    def _round_done(self, how: str) -> None:
        self._turn = None
        self._round_phase = "done"
        self._round_open = False
        step: RoundStep = self.step
        self._log("round_ended", step=step.id, turns=self._turns_done, reason=how)
        self._clear_deadlines()
        self._step_done(how)
