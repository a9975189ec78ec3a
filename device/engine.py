"""The session engine: a pure state machine. Events in, commands out.

It has no clock, no audio and no GPIO: every event comes with the time it happened (`now`, in
seconds on whatever clock the caller runs: monotonic on the box, virtual in simulations), and
every effect is a command the caller carries out. That is what lets a one-hour circle replay in a
second, deterministically, and what lets the same engine drive the box, the simulator and tests.

Time while paused does not count: deadlines live on an "active" clock that stops during PAUSE
and HELP, so a turn's two minutes are two minutes of circle, not of tea break.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from device.actions import Action, UnknownAction, parse_action
from device.listening.events import (  # `t`: when it really happened, on our clock
    UNSURE_WAIT_MAX_S,
    MaybeSpeech,
    MaybeSpeechEnded,
    RoomNoiseChanged,
    SpeechEnded,
    SpeechStarted,
    UnsureSound,
    UnsureSoundEnded,
    VoiceLevels,
    heard_clearly,
)
from device.script import (
    NOTES,
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


Event = (Press | AudioFinished | Tick | SpeechStarted | SpeechEnded | MaybeSpeech | MaybeSpeechEnded
         | ListeningChanged | Announce)

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


class State(StrEnum):
    """What the box is doing. The values are what status JSON, logs and the LEDs' names show."""

    IDLE = "idle"
    SPEAKING = "speaking"
    WAITING = "waiting"
    IN_ROUND = "in_round"
    TIMER = "timer"
    PAUSED = "paused"
    HELP = "help"
    FINISHED = "finished"


class RoundPhase(StrEnum):
    """Where a round is: what a NEXT press or speech in the room means depends on it."""

    PROMPT = "prompt"  # the round's instruction is playing
    TURN = "turn"  # someone has the talking piece
    REMINDER = "reminder"  # the gentle reminder is playing into a pause
    WRAP_UP = "wrap_up"  # the wrap-up is playing: the turn ends after it
    BETWEEN = "between"  # the bell or words between two turns
    DONE = "done"
    SIMULATED = "simulated"  # rehearsal: a turn nobody speaks in, that ends on its own


PAUSES = (State.PAUSED, State.HELP)  # the circle is held; the state it left is kept to come back to
AT_REST = (State.IDLE, State.FINISHED)  # no circle is running
PAUSE_BEFORE_SPEAKING_S = 1.0  # silence we wait for before a reminder or wrap-up: never talk over anyone
MAX_QUEUED_ANNOUNCEMENTS = 4  # box messages waiting behind the one being said (update progress comes fast)
LED_FOR_STATE = {
    State.IDLE: "idle", State.SPEAKING: "speaking", State.WAITING: "waiting", State.IN_ROUND: "listening",
    State.TIMER: "timer", State.PAUSED: "paused", State.HELP: "help", State.FINISHED: "idle",
}
TURN_PHASES = (RoundPhase.TURN, RoundPhase.WRAP_UP, RoundPhase.REMINDER, RoundPhase.SIMULATED)  # a turn is under way
# explain mode says what a button does instead of doing it; these still act (the admin page's
# volume slider is not a button to learn)
ACT_WHILE_EXPLAINING = ("explain", "volume")
# Rehearsal: the whole circle can be walked through in a few minutes.
REHEARSAL_TURN_S = 15.0  # a simulated turn ends on its own after this (or on NEXT)
REHEARSAL_TURNS = 3  # turns a round runs in rehearsal (its own count when that is fewer)
REHEARSAL_TIMER_S = 30.0  # a timer step runs at most this long in rehearsal


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
class _Voices:
    """How clearly the box heard the voices since a turn (or a wait for a quiet room) began.

    A silence after a voice the box did not hear clearly may be that voice going on under the
    room's noise: nothing that waits for silence takes it for an end, the facilitator does
    (issue 13: in rooms of real people, 15 of the box's 15 cut-ins in four sets of rooms were
    voices like that). Levels only, in memory, gone with the turn: nothing says who spoke."""

    heard: bool = False  # an utterance has ended
    voice: VoiceLevels = field(default_factory=VoiceLevels)  # all of them, added up

    def add(self, ended: SpeechEnded) -> None:
        self.heard = True
        self.voice = self.voice + ended.voice

    @property
    def unclear(self) -> bool:
        return self.heard and not heard_clearly(self.voice)


@dataclass
class _Turn:
    n: int
    start: float  # active time
    speech_seen: bool = False
    in_speech: bool = False
    maybe_speech: bool = False  # after speech, the listener half hears a voice: silence waits
    unsure_sound: bool = False  # it hears a sound it cannot yet tell from a voice (UnsureSound)
    when_quiet: tuple[str, Callable[[], None]] | None = None  # a silence due meanwhile: at its end
    last_speech_end: float | None = None
    warned: bool = False
    reminder_due: bool = False
    reminded: bool = False
    over_max: bool = False
    voices: _Voices = field(default_factory=_Voices)


class Engine:
    """One circle at a time, from the first NEXT to the last step.

    Buttons while the circle is held (state `paused` or `help`): PAUSE or NEXT, and HELP while
    in help, let the circle carry on exactly where it was (a held sound continues; an
    instruction a message was played over starts again from its beginning). NEXT never skips
    or ends a step here: a facilitator pressing it to get out of help must not cost the group
    a step. REPEAT carries on and says the current instruction again from its start, as it
    always does. SKIP, PREVIOUS, GOTO and STOP say plainly that they leave the step: they carry
    on and then do just that. Leaving explain mode goes back to what the box did before it.

    A step may have a lead-in, said before it and part of it (NEXT begins the step, REPEAT says
    the lead-in again): `intro` before a circle's first step (a course's announcement), and in a
    rehearsal (action `rehearse`) "this is a rehearsal" and each step's facilitator note. A
    rehearsal walks the whole circle quickly: turns nobody speaks in end on their own, rounds
    run a few turns, timers are short, and the end says what was practised.
    """

    def __init__(
        self,
        script: Script,
        *,
        volume: float = 0.7,
        volume_cap: float = 0.9,
        volume_step: float = 0.1,
        listening: bool = False,
        intro: Sequence[str] = (),
        session_fields: Mapping[str, Any] | None = None,
    ) -> None:
        self.script = script
        # sounds said once a circle starts, before its first step (a course's "session 3 of 8")
        self.intro = tuple(intro)
        # what the session_started log also says about this circle (its place in a course)
        self.session_fields = dict(session_fields or {})
        self.rehearsal = False  # the running (or last) circle is a facilitator's rehearsal
        self._practised: list[str] = []  # rehearsal: the steps walked, in order, each once
        self._notes_heard: set[str] = set()  # rehearsal: steps whose note was said to its end
        self.volume = volume
        self.volume_cap = volume_cap
        self.volume_step = volume_step
        self.listening = listening
        self._room_too_noisy = False  # the listener says so (RoomNoiseChanged): no pass by itself
        self.state = State.IDLE
        self.step_index = -1
        self.session_start: float | None = None
        self._cmds: list[Command] = []
        self._now = 0.0
        self._paused_total = 0.0
        self._pause_started: float | None = None
        self._resume_state: State | None = None
        self._resume_how: str = "audio"  # "audio": ResumeAudio; "replay": play the current sound again
        self._seq: _Sequence | None = None
        self._suspended: _Sequence | None = None
        self._announcement: _Sequence | None = None  # box messages being said (Announce)
        self._deadlines: dict[str, tuple[float, Callable[[], None]]] = {}
        self._explaining = False
        self._explain_from: State | None = None  # the state explain mode came from, to go back to
        self._turn: _Turn | None = None
        self._turns_done = 0
        self._round_phase: RoundPhase | None = None
        self._round_open = False
        self._round_last_activity = 0.0
        self._waiting_voices = _Voices()  # heard while a step waits (`advance: on_silence`)
        self._timer_start: float | None = None  # active time the current timer step began
        self._session_intro: list[str] = []  # sounds still due before the circle's first step
        self._lead_in: list[str] | None = None  # the sounds before the current step, while they play
        self.led = "idle"
        self._event_handlers: dict[type, Callable[[Any], None]] = {
            Press: self._handle_press,
            AudioFinished: self._handle_audio_finished,
            Tick: self._handle_tick,
            SpeechStarted: self._handle_speech_started,
            SpeechEnded: self._handle_speech_ended,
            MaybeSpeech: self._handle_maybe_speech,
            MaybeSpeechEnded: self._handle_maybe_speech_ended,
            UnsureSound: self._handle_unsure_sound,
            UnsureSoundEnded: self._handle_unsure_sound_ended,
            RoomNoiseChanged: self._handle_room_noise_changed,
            Announce: self._handle_announce,
            ListeningChanged: self._handle_listening_changed,
        }
        self._action_handlers: dict[str, Callable[[Action], None]] = {
            "start": self._on_start,
            "rehearse": self._on_rehearse,
            "stop": self._on_stop,
            "next": self._on_next,
            "skip": self._on_skip,
            "repeat": self._on_repeat,
            "previous": self._on_previous,
            "goto": self._on_goto,
            "pause": self._on_pause,
            "help": self._on_help,
            "explain": self._on_explain,
            "volume_up": self._on_volume_up,
            "volume_down": self._on_volume_down,
            "volume": self._on_volume,
            "setup_code": self._on_setup_code,
        }

    # -- public API ---------------------------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Command]:
        """Feed one event that happened at `now`; returns what the box must do."""
        self._now = now
        self._cmds = []
        self._event_handlers[type(event)](event)
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

    @property
    def actions(self) -> tuple[str, ...]:
        """Every action name this engine handles (the vocabulary of device.actions)."""
        return tuple(self._action_handlers)

    def status(self, now: float | None = None) -> dict[str, Any]:
        """What the engine is doing; `now` (the caller's clock) for the time in circle, else the
        time of the last event (the engine has no clock of its own)."""
        step = self.step
        now = self._now if now is None else max(now, self._now)
        return {
            "state": self.state.value,
            "step": step.id if step else None,
            "step_title": (step.title or step.id) if step else None,
            "step_index": self.step_index if step else None,
            "steps_total": len(self.script.steps),
            "turn": self.turn,
            "led": self.led,
            "session_elapsed_s": None if self.session_start is None else round(now - self.session_start, 1),
            "volume": round(self.volume, 2),
            "listening_active": self.listening,
            "rehearsal": self.rehearsal,
            "playing": self.playing,
        }

    def countdown(self, now: float) -> dict[str, Any] | None:
        """The running turn's or timer's clock at `now`, for the admin panel; None if neither runs.

        Counts active time only, like the deadlines: a pause stops the clock (`paused` says so).
        """
        active = (self._pause_started if self._pause_started is not None else now) - self._paused_total
        state, step, paused = self._underlying_state, self.step, self._pause_started is not None
        if state == State.IN_ROUND and self._turn is not None and isinstance(step, RoundStep):
            limit = REHEARSAL_TURN_S if self._round_phase == RoundPhase.SIMULATED else step.turns.max_s
            return {"kind": "turn", "turn": self._turn.n, "warn_s": step.turns.warn_s, "paused": paused,
                    "left_to_facilitator": self._left_to_facilitator(self._turn),
                    "room_too_noisy": self._room_too_noisy,
                    **_clock(active - self._turn.start, limit)}
        if state == State.TIMER and self._timer_start is not None and isinstance(step, TimerStep):
            return {"kind": "timer", "paused": paused,
                    **_clock(active - self._timer_start, self._timer_duration(step))}
        return None

    # -- events -------------------------------------------------------------------------------

    def _handle_press(self, press: Press) -> None:
        try:
            action = parse_action(press.action)
        except UnknownAction as exc:
            self._log("ignored", action=press.action, why=str(exc))
            return
        if self._explaining and action.name not in ACT_WHILE_EXPLAINING:
            self._log("explained", action=action.text)
            self._interrupt_with([f"msg:action_{action.name}" if action.name != "goto" else "msg:action_next"])
            return
        self._action_handlers[action.name](action)

    def _handle_audio_finished(self, event: AudioFinished) -> None:
        seq = self._seq
        if seq is None or seq.current != event.sound or self._pause_started is not None:
            return  # stale: we already moved on
        if not event.sound.startswith("bell:"):
            self._log("prompt_finished", step=self._step_id, prompt=event.sound)
        if self.rehearsal and self._step_id is not None and event.sound == prompt_id(self._step_id, NOTES):
            self._notes_heard.add(self._step_id)
        seq.index += 1
        if seq.index < len(seq.sounds):
            self._start_current_sound()
            return
        self._seq = None
        if seq.on_done:
            seq.on_done()

    def _handle_tick(self, _event: Tick) -> None:
        self._fire_due()

    def _handle_speech_started(self, _event: SpeechStarted) -> None:
        turn = self._turn
        self._round_last_activity = self._active
        self._clear_deadlines("advance_silence")  # the room is talking: wait for quiet again
        if self.state != State.IN_ROUND or turn is None or self._round_phase not in (
                RoundPhase.TURN, RoundPhase.SIMULATED):
            return
        turn.speech_seen = True
        turn.in_speech = True
        turn.maybe_speech = False
        turn.unsure_sound, turn.when_quiet = False, None
        self._clear_deadlines("turn_silence", "turn_pause")
        if self._round_phase == RoundPhase.SIMULATED:  # the trainee speaks: a real turn, timed as one
            self._round_phase = RoundPhase.TURN
            self._arm_turn()

    def _handle_speech_ended(self, event: SpeechEnded) -> None:
        # the listener reports the end a hangover late; silence counts from the real end
        ended = min(self._active, event.t - self._paused_total)
        turn = self._turn
        self._round_last_activity = ended
        if self.state == State.WAITING:
            self._waiting_voices.add(event)
        self._arm_advance_on_silence(ended)
        if self.state != State.IN_ROUND or turn is None or self._round_phase != RoundPhase.TURN:
            return
        turn.in_speech = False
        turn.last_speech_end = max(ended, turn.start)
        was_unclear = turn.voices.unclear
        turn.voices.add(event)
        if self.listening and turn.voices.unclear != was_unclear:
            self._turn_clarity_changed(turn)
        self._arm_turn()

    def _turn_clarity_changed(self, turn: _Turn) -> None:
        """The box now hears this turn's voice clearly, or no longer does. Not clearly, its end
        is the facilitator's: the status light blinks slowly, as whenever the box waits for
        NEXT, and the admin page's clock says so (`countdown`)."""
        self._log("turn_left_to_facilitator" if turn.voices.unclear else "turn_heard_clearly", n=turn.n)
        self._led()
        if not turn.voices.unclear:
            turn.reminder_due = turn.warned and not turn.reminded  # said at a pause, as ever

    def _handle_maybe_speech(self, _event: MaybeSpeech) -> None:
        # A speaker may be going on softly, under the room's noise: whatever waits for silence
        # waits (issue 13: the only cut-ins left were soft words the detector half heard). It
        # is not speech, but a turn nobody was heard in passes only after `pass_on_silence_s`
        # without a half-heard voice either: someone heard only as "maybe" is not passed.
        self._clear_deadlines("advance_silence")
        turn = self._turn
        if (self.state != State.IN_ROUND or turn is None or self._round_phase != RoundPhase.TURN
                or turn.in_speech):
            return
        turn.maybe_speech = True
        turn.when_quiet = None
        self._clear_deadlines("turn_silence", "turn_pause")

    def _handle_maybe_speech_ended(self, event: MaybeSpeechEnded) -> None:
        quiet_since = min(self._active, event.t - self._paused_total)
        self._arm_advance_on_silence(quiet_since)
        turn = self._turn
        if turn is None or not turn.maybe_speech:
            return
        turn.maybe_speech = False
        turn.last_speech_end = max(quiet_since, turn.last_speech_end or turn.start)
        if self.state == State.IN_ROUND and self._round_phase == RoundPhase.TURN:
            self._arm_turn()

    def _handle_unsure_sound(self, _event: UnsureSound) -> None:
        if self._turn is not None:
            self._turn.unsure_sound = True

    def _handle_unsure_sound_ended(self, _event: UnsureSoundEnded) -> None:
        turn = self._turn
        if turn is None:
            return
        turn.unsure_sound = False
        if turn.when_quiet is not None:  # a silence came due during the sound: do it now
            name, act = turn.when_quiet
            turn.when_quiet = None
            self._clear_deadlines(name)
            act()

    def _handle_room_noise_changed(self, event: RoomNoiseChanged) -> None:
        self._room_too_noisy = event.too_noisy
        turn = self._turn
        if self.state == State.IN_ROUND and turn is not None and self._round_phase == RoundPhase.TURN:
            self._arm_turn()
            self._led()

    def _once_quiet(self, name: str, act: Callable[[], None]) -> Callable[[], None]:
        """`act` for the silence deadline `name`: at once, unless the listener is hearing a
        sound it cannot yet tell from a voice (`UnsureSound`; issue 13: a speaker picking up
        after a thinking pause, half heard as the silence came due). Then at that sound's end,
        or UNSURE_WAIT_MAX_S later at most; SpeechStarted or MaybeSpeech meanwhile cancels it."""

        def due() -> None:
            turn = self._turn
            if turn is None or not turn.unsure_sound:
                act()
                return
            turn.when_quiet = (name, act)

            def at_the_latest() -> None:
                turn.when_quiet = None
                act()

            self._set_deadline(name, UNSURE_WAIT_MAX_S, at_the_latest)

        return due

    def _handle_announce(self, event: Announce) -> None:
        if self.state not in AT_REST and not event.urgent:
            self._log("ignored", action="announce", why="a circle is running")
            return
        if self.state not in AT_REST and self.state not in PAUSES:
            self._pause(State.PAUSED)
        self._log("announce", sounds=list(event.sounds))
        said = self._announcement
        if said is not None and self._seq is said:
            # one is being said: the new words follow it whole, never cut it off ("Checking the
            # up- Copying..."; the updater's steps come faster than speech; found in QEMU)
            waiting = said.sounds[said.index + 1:]
            for sound in event.sounds:
                if sound not in waiting and len(waiting) < MAX_QUEUED_ANNOUNCEMENTS:
                    said.sounds.append(sound)
                    waiting.append(sound)
            return
        self._interrupt_with(list(event.sounds))
        self._announcement = self._seq

    def _handle_listening_changed(self, event: ListeningChanged) -> None:
        self.listening = event.available
        self._log("listening", available=event.available)
        if not event.available:
            self._clear_deadlines("advance_silence")  # unsure: wait for a button

    # -- actions: one handler per action name (see _action_handlers) ---------------------------

    def _on_start(self, action: Action) -> None:
        if self.state in AT_REST:
            self._start_session()
        else:
            self._log("ignored", action="start", why="a circle is already running")

    def _on_rehearse(self, action: Action) -> None:
        """Practise the circle: the facilitator's note before each step, simulated turns, short
        timers, and at the end what was practised. Never counted as a circle held."""
        if self.state in AT_REST:
            self._start_session(rehearsal=True)
        else:
            self._log("ignored", action="rehearse", why="a circle is already running")

    def _on_next(self, action: Action) -> None:
        if self.state in PAUSES:
            self._resume(replay=True)  # carry on where it was: never skips or ends the step
        elif self.state == State.IDLE:
            self._start_session()
        elif self.state == State.FINISHED:
            self._play(["msg:finished"])
            self._set_state(State.IDLE)
        elif self._lead_in is not None:  # what leads into the step: NEXT begins the step now
            self._stop_audio()
            self._begin_step()
        elif self.state == State.IN_ROUND and self._round_phase in TURN_PHASES:
            self._end_turn("button")
        elif self.state == State.IN_ROUND:
            # during the round's prompt or a between-turns bell: skip ahead to the turn
            self._stop_audio()
            self._begin_turn() if self._round_phase == RoundPhase.PROMPT else self._begin_next_turn()
        else:
            self._finish_step("next", delivered=self.state in (State.WAITING, State.TIMER))

    def _on_skip(self, action: Action) -> None:
        # resume first: HELP or PAUSE pressed while idle or finished resumes to no circle at all
        self._resume(replay=False)
        if self.state in AT_REST:
            self._on_next(action)
            return
        delivered = self.state == State.WAITING or (self.state == State.IN_ROUND and self._turns_done > 0)
        self._finish_step("skip", delivered=delivered)

    def _on_repeat(self, action: Action) -> None:
        """Say the current instruction again from its start (also out of PAUSE or HELP)."""
        self._resume(replay=False)
        self._log("repeat", step=self._step_id)
        if self.state == State.IDLE:
            self._play(["msg:ready"])
        elif self.state == State.FINISHED:
            self._play(["msg:finished"])
        elif self._lead_in is not None:
            self._play_lead_in(self._lead_in)
        elif self.state == State.IN_ROUND:
            self._clear_deadlines()
            self._round_phase = RoundPhase.PROMPT
            self._play([prompt_id(self.step.id)], self._after_round_prompt)
        elif self.state == State.TIMER:
            step = self.step
            if step.say:
                self._play([prompt_id(step.id)])
        else:
            self._start_step(self.step_index, announce=False)

    def _on_previous(self, action: Action) -> None:
        self._resume(replay=False)
        if self.state in AT_REST:
            self._on_repeat(action)
            return
        target = max(0, self.step_index - 1)
        self._finish_step("previous", delivered=False, advance=False)
        self._start_step(target)

    def _on_goto(self, action: Action) -> None:
        try:
            target = self.script.step_index(action.step or "")
        except KeyError:
            self._log("ignored", action=action.text, why=f"no step '{action.step}' in this circle")
            return
        self._resume(replay=False)
        if self.state in AT_REST:
            self._start_session(first_step=target)
            return
        self._finish_step("goto", delivered=False, advance=False)
        self._start_step(target)

    def _on_pause(self, action: Action) -> None:
        if self.state in PAUSES:
            self._resume(replay=True)
        elif self.state in AT_REST:
            self._log("ignored", action="pause", why="no circle is running")
        else:
            self._pause(State.PAUSED)

    def _on_help(self, action: Action) -> None:
        """HELP pauses and plays the calm message; HELP again carries on, like PAUSE does."""
        if self.state == State.HELP:
            self._resume(replay=True)
            return
        self._log("help", step=self._step_id)
        self._cmds.append(SetHelpLed(True))
        if self.state == State.PAUSED:
            self._set_state(State.HELP)
        else:
            self._pause(State.HELP)
        self._interrupt_with(["msg:help"])

    def _on_explain(self, action: Action) -> None:
        """Explain mode: every press says what its button does, until explain is pressed again."""
        if self._explaining:
            self._leave_explain()
            return
        self._explaining = True
        self._explain_from = self.state
        self._log("explain", on=True)
        if self.state not in PAUSES:
            self._pause(State.PAUSED)
        self._interrupt_with(["msg:explain"])

    def _leave_explain(self) -> None:
        """Back to exactly what the box did before explain mode, saying so in a few words."""
        self._explaining = False
        self._log("explain", on=False)
        came_from, self._explain_from = self._explain_from, None
        if came_from in PAUSES:
            self._stop_audio()  # it was held before explain mode: it stays held, as it was
        elif self._resume_state in AT_REST:
            self._resume(replay=False, say_first="msg:ready")
        else:
            self._resume(replay=True, say_first="msg:resumed")

    def _on_volume_up(self, action: Action) -> None:
        self._set_volume(max(0.1, self.volume + self.volume_step))

    def _on_volume_down(self, action: Action) -> None:
        self._set_volume(max(0.1, self.volume - self.volume_step))  # a button never mutes the box

    def _on_volume(self, action: Action) -> None:
        """`volume:<percent>` (the admin page's slider): that level, up to the volume cap."""
        self._set_volume((action.percent or 0) / 100)

    def _on_stop(self, action: Action) -> None:
        self._resume(replay=False)
        if self.state in AT_REST:  # also after HELP pressed between circles: one end per circle
            self._log("ignored", action="stop", why="no circle is running")
            return
        self._finish_step("stopped", delivered=False, advance=False)
        self._finish_session(completed=False)

    def _on_setup_code(self, action: Action) -> None:
        # the box (which knows the code) answers with an Announce; the engine only logs it
        self._log("setup_code_requested", running=self.state not in AT_REST)

    def _set_volume(self, level: float) -> None:
        level = round(min(self.volume_cap, max(0.0, level)), 2)
        self.volume = level
        self._cmds.append(SetVolume(level))
        self._log("volume", level=level)
        if self._seq is None and self.state not in PAUSES:
            self._cmds.append(Play("bell:tick"))

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

    @property
    def _step_id(self) -> str | None:
        return self.step.id if self.step else None

    @property
    def _underlying_state(self) -> State:
        """The state under any pause: what the circle is doing once it carries on."""
        if self.state in PAUSES:
            return self._resume_state or State.IDLE
        return self.state

    def _log(self, event: str, **fields: Any) -> None:
        self._cmds.append(Log(event, fields))

    def _led(self) -> None:
        self._set_led(self._light())

    def _light(self) -> str:
        """The status light's pattern for what the box does now. In a turn the facilitator is
        to end (a voice the box did not hear clearly), the slow blink of waiting for NEXT, then
        how far the turn's time has gone; without listening, only the time."""
        turn = self._turn
        if (self.state != State.IN_ROUND or turn is None or self._round_phase not in TURN_PHASES
                or self._hears(turn)):
            return LED_FOR_STATE[self.state]
        if turn.over_max:
            return "turn_over"
        if turn.warned:
            return "turn_warn"
        return "waiting" if self.listening else LED_FOR_STATE[self.state]

    def _set_led(self, pattern: str) -> None:
        self.led = pattern
        self._cmds.append(SetLed(pattern))

    def _set_state(self, state: State) -> None:
        if state != self.state:
            self.state = state
            self._led()

    def _play(self, sounds: list[str], on_done: Callable[[], None] | None = None) -> None:
        self._seq = _Sequence(list(sounds), on_done)
        self._start_current_sound()

    def _carry_on(self, seq: _Sequence) -> None:
        """Play a held sequence again from the start of the sound it was in."""
        self._seq = seq
        self._start_current_sound()

    def _start_current_sound(self) -> None:
        assert self._seq is not None
        sound = self._seq.current
        self._cmds.append(Play(sound))
        if sound.startswith("bell:"):
            self._log("bell", bell=sound.removeprefix("bell:"))
        else:
            self._log("prompt_started", step=self._step_id, prompt=sound)

    def _stop_audio(self) -> None:
        if self._seq is not None:
            self._cmds.append(StopAudio())
        self._seq = None

    # -- pause, help, resume ------------------------------------------------------------------

    def _pause(self, state: State) -> None:
        self._resume_state = self.state
        self._pause_started = self._now
        self._resume_how = "audio"
        if self._seq is not None:
            self._cmds.append(PauseAudio())
        if self.state not in AT_REST:
            self._log("paused", step=self._step_id, why="help" if state == State.HELP else "button")
        self._set_state(state)

    def _interrupt_with(self, sounds: list[str]) -> None:
        """Play a system message while paused; the paused instruction restarts on resume."""
        if self._seq is not None and self._suspended is None:
            self._suspended = self._seq
        self._resume_how = "replay"
        self._seq = _Sequence(list(sounds), None)
        self._start_current_sound()

    def _resume(self, replay: bool, say_first: str | None = None) -> None:
        """Leave PAUSE, HELP or explain mode for the state the pause held (no-op if not paused).

        replay: carry on where it was: a held sound continues, and an instruction a message was
        played over starts again from its beginning. Otherwise the held sound is dropped, for a
        caller about to do something else. say_first: a short message to play before that.
        """
        if self._pause_started is None:
            return
        self._explaining = False
        self._paused_total += self._now - self._pause_started
        self._pause_started = None
        was_help = self.state == State.HELP
        self._set_state(self._resume_state or State.IDLE)
        self._resume_state = None
        if was_help:
            self._cmds.append(SetHelpLed(False))
        if self.state not in AT_REST:
            self._log("resumed", step=self._step_id)
        held = self._suspended or (self._seq if self._resume_how == "audio" else None)
        self._suspended = None
        if replay and held is not None and held is self._seq and say_first is None:
            self._cmds.append(ResumeAudio())
        else:
            self._stop_audio()  # a message played over the pause, or a sound we drop
            carry_on = (lambda: self._carry_on(held)) if replay and held is not None else None
            if say_first is not None:
                self._play([say_first], carry_on)
            elif carry_on is not None:
                carry_on()
        self._fire_due()

    # -- session and steps --------------------------------------------------------------------

    def _start_session(self, first_step: int = 0, rehearsal: bool = False) -> None:
        """A circle begins; a rehearsal has no course intro and says it is a rehearsal instead."""
        self.session_start = self._now
        self._paused_total = 0.0
        self._clear_deadlines()
        self._cmds.append(SetHelpLed(False))
        self.rehearsal = rehearsal
        self._practised = []
        self._notes_heard = set()
        self._log("session_started", **{
            **({} if rehearsal else self.session_fields), "script": self.script.script,
            "version": self.script.version, "steps": len(self.script.steps),
            "core_steps": sum(1 for s in self.script.steps if s.core), "rehearsal": rehearsal,
        })
        self._session_intro = ["msg:rehearsal_start"] if rehearsal else list(self.intro)
        self._start_step(first_step)

    def _start_step(self, index: int, announce: bool = True) -> None:
        """Go to step `index`: its lead-in first (see `_lead_in_sounds`) unless `announce` is
        False (REPEAT says the step itself again, not what led into it)."""
        self._stop_audio()
        self._clear_deadlines()
        self._turn = None
        self._timer_start = None
        self._lead_in = None
        self.step_index = index
        step = self.step
        if announce:
            self._log("step_started", step=step.id, kind=step.kind, core=step.core)
            lead_in = self._lead_in_sounds()
            if lead_in:
                self._play_lead_in(lead_in)
                return
        self._begin_step()

    def _lead_in_sounds(self) -> list[str]:
        """What is said before the step starts: the circle's intro before its first step, and
        in rehearsal the step's facilitator note."""
        sounds, self._session_intro = self._session_intro, []
        step = self.step
        if self.rehearsal and step.notes:
            sounds.append(prompt_id(step.id, NOTES))
        return sounds

    def _play_lead_in(self, sounds: list[str]) -> None:
        """Say the lead-in, then begin the step (NEXT begins it at once; REPEAT says it again)."""
        self._lead_in = sounds
        self._set_state(State.SPEAKING)
        self._play(sounds, self._begin_step)

    def _begin_step(self) -> None:
        """The step's own content: its instruction, round, timer or bell."""
        self._lead_in = None
        step = self.step
        if isinstance(step, SayStep | ExerciseStep):
            self._set_state(State.SPEAKING)
            self._play([prompt_id(step.id)], self._after_step_prompt)
        elif isinstance(step, RoundStep):
            self._set_state(State.IN_ROUND)
            self._turns_done = 0
            self._round_open = True
            self._round_phase = RoundPhase.PROMPT
            self._round_last_activity = self._active
            self._log("round_started", step=step.id, listening=self.listening)
            self._play([prompt_id(step.id)], self._after_round_prompt)
        elif isinstance(step, TimerStep):
            self._set_state(State.TIMER)
            self._timer_start = self._active
            if step.say:
                self._play([prompt_id(step.id)])
            duration = self._timer_duration(step)
            if step.warn_before_s:  # as far into a shortened timer as into the real one
                warn_at = (step.duration_s - step.warn_before_s) * duration / step.duration_s
                self._set_deadline("timer_warn", warn_at, lambda: self._play([f"bell:{step.warn_bell}"]))
            self._set_deadline("timer_end", duration, self._timer_done)
        elif isinstance(step, BellStep):
            self._set_state(State.SPEAKING)
            self._play([f"bell:{step.bell}"] * step.count, lambda: self._step_done("done"))

    def _timer_duration(self, step: TimerStep) -> float:
        """How long a timer step runs: shortened in rehearsal."""
        return min(step.duration_s, REHEARSAL_TIMER_S) if self.rehearsal else step.duration_s

    def _after_step_prompt(self) -> None:
        self._step_done("done")

    def _step_done(self, how: str) -> None:
        """The step's own content is over: continue, or wait for the facilitator's NEXT."""
        step = self.step
        if step.then == "continue":
            self._finish_step(how, delivered=True)
        else:
            self._set_state(State.WAITING)
            self._waiting_voices = _Voices()
            self._arm_advance_on_silence()

    def _arm_advance_on_silence(self, quiet_since: float | None = None) -> None:
        """`advance: on_silence`: move on once the room is quiet (only while listening works, and
        if the box heard clearly whoever spoke while it waited: else NEXT moves on)."""
        step = self.step
        if (self.state == State.WAITING and self.listening and not self._waiting_voices.unclear
                and getattr(step, "advance", "button") == "on_silence"):
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
        self._timer_start = None
        self._lead_in = None
        self._log("step_finished", step=step.id, reason=reason, delivered=delivered)
        if self.rehearsal and reason != "stopped" and step.id not in self._practised:
            self._practised.append(step.id)
            self._log("step_practised", step=step.id, note_heard=step.id in self._notes_heard)
        if not advance:
            return
        if self.step_index + 1 < len(self.script.steps):
            self._start_step(self.step_index + 1)
        else:
            self._finish_session(completed=True)

    def _finish_session(self, completed: bool) -> None:
        self._clear_deadlines()
        self._turn = None
        rehearsed = {"rehearsal": True, "steps_practised": list(self._practised),
                     "notes_heard": len(self._notes_heard)} if self.rehearsal else {}
        self._log("session_finished", completed=completed,
                  duration_s=round(self._now - self.session_start, 1) if self.session_start is not None else 0.0,
                  **rehearsed)
        self.step_index = -1
        self._set_state(State.FINISHED)
        if self.rehearsal:  # what was practised (the titles are in the message), or that it stopped
            self._play(["msg:rehearsal_done" if completed else "msg:rehearsal_stopped"])

    # -- rounds -------------------------------------------------------------------------------

    def _after_round_prompt(self) -> None:
        if self._turn is not None:  # REPEAT during a turn: the same person carries on
            self._round_phase = self._turn_phase(self._turn)
            self._turn.start = self._active
            self._arm_turn()
        else:
            self._begin_turn()

    def _begin_turn(self) -> None:
        n = self._turns_done + 1
        self._turn = _Turn(n=n, start=self._active)
        self._round_phase = self._turn_phase(self._turn)
        self._log("turn_started", n=n)
        self._arm_turn()

    def _turn_phase(self, turn: _Turn) -> RoundPhase:
        """A turn in a circle; in rehearsal a simulated one until the trainee speaks."""
        return RoundPhase.SIMULATED if self.rehearsal and not turn.speech_seen else RoundPhase.TURN

    def _turns_limit(self, step: RoundStep) -> int | None:
        """After how many turns the round ends by itself: its count; in rehearsal a few at most."""
        if self.rehearsal:
            return min(step.turns.count or REHEARSAL_TURNS, REHEARSAL_TURNS)
        return step.turns.count

    def _arm_turn(self) -> None:
        """Deadlines for the current turn, from the state of its speech."""
        step: RoundStep = self.step
        turn = self._turn
        assert turn is not None
        t = step.turns
        self._clear_deadlines("turn_silence", "turn_warn", "turn_max", "turn_pause", "turn_simulated")
        turn.when_quiet = None  # armed afresh below
        if self._round_phase == RoundPhase.SIMULATED:  # nobody speaks: no limits, it ends on its own
            self._set_deadline("turn_simulated", max(0.0, turn.start + REHEARSAL_TURN_S - self._active),
                               lambda: self._end_turn("simulated"))
            return
        if not turn.warned:
            self._set_deadline("turn_warn", max(0.0, turn.start + t.warn_s - self._active), self._turn_warn)
        if not turn.over_max:
            self._set_deadline("turn_max", max(0.0, turn.start + t.max_s - self._active), self._turn_max)
        if not self._hears(turn):
            return
        if not turn.speech_seen:
            if turn.maybe_speech:  # a voice half heard: no pass while it lasts
                return
            quiet_since = turn.last_speech_end if turn.last_speech_end is not None else turn.start
            self._set_deadline("turn_silence", max(0.0, quiet_since + t.pass_on_silence_s - self._active),
                               self._once_quiet("turn_silence", lambda: self._end_turn("pass")))
        elif not turn.in_speech and not turn.maybe_speech and turn.last_speech_end is not None:
            quiet_for = self._active - turn.last_speech_end
            if turn.over_max or turn.reminder_due:
                self._set_deadline("turn_pause", max(0.0, PAUSE_BEFORE_SPEAKING_S - quiet_for),
                                   self._once_quiet("turn_pause", self._speak_at_pause))
            else:
                reason = "reminder" if turn.reminded else "silence"
                self._set_deadline("turn_silence", max(0.0, t.end_on_silence_s - quiet_for),
                                   self._once_quiet("turn_silence", lambda: self._end_turn(reason)))

    def _hears(self, turn: _Turn) -> bool:
        """The box may take a silence in this turn for its end, and speak into a pause: it
        listens, and heard the voice clearly (`_Voices`); or, nobody heard yet, the room is not
        too noisy for it to tell a silent turn from a voice under the noise
        (`RoomNoiseChanged`). Else the facilitator ends the turn."""
        if not self.listening or turn.voices.unclear:
            return False
        return turn.speech_seen or not self._room_too_noisy

    def _left_to_facilitator(self, turn: _Turn) -> bool:
        """The box listens but waits for NEXT to end this turn (`_hears`)."""
        return self.listening and not self._hears(turn)

    def _turn_warn(self) -> None:
        turn = self._turn
        if turn is None:
            return
        turn.warned = True
        self._log("turn_warning", n=turn.n)
        if not self._hears(turn):
            self._led()  # the facilitator sees it (turn_warn); nobody is interrupted
            return
        turn.reminder_due = True
        if not turn.in_speech and not turn.maybe_speech:
            self._arm_turn()

    def _turn_max(self) -> None:
        turn = self._turn
        if turn is None:
            return
        turn.over_max = True
        self._log("turn_max", n=turn.n)
        if not self._hears(turn):
            self._led()  # turn_over
            self._play(["bell:chime"])  # a soft chime, never words, over someone who may be speaking
            return
        if not turn.in_speech and not turn.maybe_speech:
            self._arm_turn()

    def _speak_at_pause(self) -> None:
        """A pause long enough to speak into: the wrap-up (over max) or the reminder (over warn)."""
        turn = self._turn
        step: RoundStep = self.step
        if turn is None:
            return
        if turn.over_max:
            self._round_phase = RoundPhase.WRAP_UP
            sound = prompt_id(step.id, "wrap_up") if step.wrap_up else "msg:wrap_up"
            self._play([sound], lambda: self._end_turn("max"))
        else:
            self._round_phase = RoundPhase.REMINDER
            turn.reminder_due = False
            turn.reminded = True
            sound = prompt_id(step.id, "reminder") if step.reminder else "msg:reminder"
            self._log("reminder", n=turn.n)
            self._play([sound], self._after_reminder)

    def _after_reminder(self) -> None:
        if self._turn is not None:
            self._round_phase = RoundPhase.TURN
            self._turn.last_speech_end = self._active
            self._arm_turn()

    def _end_turn_record(self, reason: str) -> None:
        turn = self._turn
        if turn is None:
            return
        self._turn = None
        self._turns_done += 1
        # listened / left_to_facilitator: the usage record counts, per round, the turns the box
        # paced by listening and those whose voice it did not hear clearly (counts only)
        self._log("turn_ended", n=turn.n, reason=reason,
                  duration_s=round(self._active - turn.start, 1), listened=self.listening,
                  left_to_facilitator=self._left_to_facilitator(turn))

    def _end_turn(self, reason: str) -> None:
        step: RoundStep = self.step
        turn = self._turn
        if turn is None:
            return
        self._clear_deadlines("turn_silence", "turn_warn", "turn_max", "turn_pause", "turn_simulated")
        if reason == "button" and self._seq is not None:
            self._stop_audio()
        self._end_turn_record(reason)
        self._set_led(LED_FOR_STATE[State.IN_ROUND])
        limit = self._turns_limit(step)
        if limit is not None and self._turns_done >= limit:
            self._round_done("count")
            return
        if reason == "pass" and self._active - self._round_last_activity >= step.turns.end_round_on_silence_s:
            self._round_done("silence")
            return
        self._between_turns()

    def _between_turns(self) -> None:
        step: RoundStep = self.step
        self._round_phase = RoundPhase.BETWEEN
        between = step.between_turns
        if isinstance(between, SpokenBetween):
            self._play([prompt_id(step.id, "between")], self._begin_next_turn)
        elif between == "none":
            self._begin_next_turn()
        else:
            self._play([f"bell:{between}"], self._begin_next_turn)

    def _begin_next_turn(self) -> None:
        if self.state == State.IN_ROUND:
            self._begin_turn()

    def _round_done(self, how: str) -> None:
        self._turn = None
        self._round_phase = RoundPhase.DONE
        self._round_open = False
        step: RoundStep = self.step
        self._log("round_ended", step=step.id, turns=self._turns_done, reason=how)
        self._clear_deadlines()
        self._step_done(how)


def _clock(elapsed: float, limit: float) -> dict[str, float]:
    elapsed = max(0.0, elapsed)
    return {"elapsed_s": round(elapsed, 1), "limit_s": limit, "remaining_s": round(max(0.0, limit - elapsed), 1)}
