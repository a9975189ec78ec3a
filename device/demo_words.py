"""What the box does, in words, for `circlebox demo` on a laptop.

On a laptop nobody sees the status light, and the sound may go to a WAV file: so each key press
is printed with what the box did about it ("NEXT: starting the circle 'Three-step circle'.
Step 1 of 5: Welcome."), and `s` prints the status as a sentence. The words come from the box's
own log events (the same ones the usage tally counts), so they say what happened, not what a
key usually means.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from device import signals
from device.actions import ACTIONS, GOTO_PREFIX

INPUT = "input"  # Box.emit: a press from any input, before the engine sees it

ACTION_WORDS = {
    "next": "NEXT", "skip": "SKIP", "repeat": "REPEAT", "previous": "BACK", "pause": "PAUSE",
    "help": "HELP", "explain": "EXPLAIN", "volume_up": "LOUDER", "volume_down": "SOFTER",
    "start": "START", "stop": "STOP", "setup_code": "SETUP CODE",
}
STATE_WORDS = {
    "speaking": "the box is speaking",
    "waiting": "waiting for NEXT",
    "in_round": "a round",
    "timer": "timer running",
    "paused": "paused (PAUSE carries on)",
    "help": "HELP: paused, help light on (PAUSE or NEXT carries on)",
}
TURN_END_WORDS = {"silence": " (the speaker went quiet)", "reminder": " (quiet after the reminder)",
                  "pass": " (a pass: nobody spoke)", "max": " (time was up)"}


def action_word(action: str) -> str:
    """NEXT, SKIP, GO TO share...: the name a person knows the action by."""
    if action.startswith(GOTO_PREFIX):
        return f"GO TO {action[len(GOTO_PREFIX):]}"
    return ACTION_WORDS.get(action, action.upper())


def action_meaning(action: str) -> str:
    """What an action does, without repeating its name: "moves on: to the next person...". """
    if action.startswith(GOTO_PREFIX):
        return f"goes to step {action[len(GOTO_PREFIX):]}."
    text = ACTIONS.get(action, "")
    _, _, rest = text.partition(". ")
    return (rest[:1].lower() + rest[1:]) if rest else ""


def _percent(level: Any) -> str:
    return f"{round(float(level) * 100)} %"


class StepNames:
    """Step numbers and titles of the circle the box runs now (it can change between circles)."""

    def __init__(self, script: Callable[[], Any]) -> None:
        self._script = script

    def describe(self, step_id: str | None) -> str:
        script = self._script()
        steps = list(getattr(script, "steps", ()) or ())
        ids = [s.id for s in steps]
        if step_id not in ids:
            return f"step '{step_id}'"
        step = steps[ids.index(step_id)]
        return f"Step {ids.index(step_id) + 1} of {len(steps)}: {step.title or step.id}"

    def title(self) -> str:
        script = self._script()
        return str(getattr(script, "title", "") or getattr(script, "script", "") or "the circle")


def describe_status(status: dict[str, Any]) -> str:
    """The box's status snapshot as one sentence: "Step 2 of 5 'share', turn 3: a round. Volume 70 %"."""
    state = str(status.get("state") or "starting")
    volume = f" Volume {_percent(status['volume'])}." if status.get("volume") is not None else ""
    faults = status.get("faults") or []
    problems = "".join(f"\n  Problem: {fault}" for fault in faults)
    problems += "".join(f"\n  After this circle: {what}" for what in status.get("pending") or [])  # waiting
    if state == "starting":
        return "Starting up." + problems
    if state == "idle":
        return f"Idle, ready to start (press n).{volume}{problems}"
    if state == "finished":
        return f"The circle is over (press n twice to start a new one).{volume}{problems}"
    where = "No step"
    if status.get("step_index") is not None:
        where = f"Step {status['step_index'] + 1} of {status.get('steps_total', '?')} '{status.get('step')}'"
    turn = f", turn {status['turn']}" if status.get("turn") else ""
    return f"{where}{turn}: {STATE_WORDS.get(state, state)}.{volume}{problems}"


class Narrator:
    """A log sink (`Runtime(log_sinks=[...])`) that prints what the box does, one line per press.

    A press opens a line ("NEXT:"); what the engine does about it is added to that line; the
    line is printed when the box has finished with the press (`end_of_press` queues the print
    behind it on the box's own thread). Things the box does on its own (the next turn after a
    silence, the end of a timer) get their own line.
    """

    def __init__(self, write: Callable[[str], None], script: Callable[[], Any]) -> None:
        self.write = write
        self.steps = StepNames(script)
        self.end_of_press: Callable[[Callable[[], None]], None] | None = None
        self._line: list[str] | None = None
        self._explaining = False

    def __call__(self, event: str, fields: dict[str, Any], t: float) -> None:
        if event == INPUT:
            self.flush()
            by = _from_elsewhere(str(fields.get("source") or ""))
            self._line = [f"{action_word(str(fields.get('action', '')))}{by}:"]
            if self.end_of_press is not None:
                self.end_of_press(self.flush)
            return
        if event == "explain":
            self._explaining = bool(fields.get("on"))
        if event == signals.PAUSED and self._explaining:
            return  # explain mode pauses the circle: "explain mode" already says all of it
        words = self.words(event, fields)
        if not words:
            return
        if self._line is not None:
            self._line.append(words)
        else:
            self.write(words)

    def flush(self) -> None:
        """Print the open press line (saying so when the press changed nothing)."""
        line, self._line = self._line, None
        if line is None:
            return
        if len(line) == 1:
            line.append("nothing to do now.")
        self.write(" ".join(line))

    def words(self, event: str, fields: dict[str, Any]) -> str:
        """One event in words; "" for events a person would not notice (prompt ends, bells)."""
        if event == signals.SESSION_STARTED:
            return f"starting the circle '{self.steps.title()}'."
        if event == signals.STEP_STARTED:
            return f"{self.steps.describe(fields.get('step'))}."
        say = EVENT_WORDS.get(event)
        return say(fields) if say is not None else ""


def _from_elsewhere(source: str) -> str:
    """Who pressed, when it was not the keys in front of you: the admin page, a voice command."""
    if not source or source.startswith(("button", "keyboard")):
        return ""
    return {"admin": " (from the admin page)", "voice": " (a spoken command)"}.get(source, f" (from {source})")


def _round_started(f: dict[str, Any]) -> str:
    how = ("the box listens for each speaker to finish; n also passes on" if f.get("listening")
           else "press n when a person has finished")
    return f"A round: one person at a time ({how})."


def _explain(f: dict[str, Any]) -> str:
    if f.get("on"):
        return "explain mode: press any button to hear what it does; the same hold again leaves explain mode."
    return "explain mode is over."


def _listed(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


# event name -> its words (the session and step events need the circle: Narrator.words)
EVENT_WORDS: dict[str, Callable[[dict[str, Any]], str]] = {
    signals.ROUND_STARTED: _round_started,
    "turn_started": lambda f: f"Turn {f.get('n')}: {'the first' if f.get('n') == 1 else 'the next'} person speaks.",
    signals.TURN_ENDED: lambda f: f"Turn {f.get('n')} is over{TURN_END_WORDS.get(str(f.get('reason')), '')}.",
    "turn_warning": lambda f: f"Turn {f.get('n')}: time is nearly up (a soft chime).",
    "turn_max": lambda f: f"Turn {f.get('n')}: the time is up.",
    "turn_left_to_facilitator": lambda f: (f"Turn {f.get('n')}: the box did not hear this voice "
                                           "clearly; press n when the person has finished."),
    "turn_heard_clearly": lambda f: f"Turn {f.get('n')}: the box hears this voice clearly again.",
    "reminder": lambda f: f"Turn {f.get('n')}: a gentle reminder to finish.",
    "round_ended": lambda f: f"The round is over after {f.get('turns')} turn(s).",
    "timer_ended": lambda f: "The timer is over (bell).",
    signals.SESSION_FINISHED: lambda f: "The circle is over." if f.get("completed") else "The circle was stopped.",
    signals.PAUSED: lambda f: "" if f.get("why") == "help" else "paused; press p again to carry on.",
    "resumed": lambda f: "carrying on.",
    signals.HELP: lambda f: "everything pauses, the calm help message plays and the help light is on.",
    "explain": _explain,
    "explained": lambda f: ("(explain mode) the box says what this button does: "
                            f"{action_meaning(str(f.get('action', ''))) or f.get('action')}"),
    signals.REPEAT: lambda f: "saying the instruction again.",
    signals.VOLUME: lambda f: (f"volume {_percent(f.get('level', 0))}"
                               f"{' (from the admin page)' if f.get('source') == 'settings' else ''}."),
    "ignored": lambda f: f"nothing to do: {f.get('why')}.",
    "setup_code_requested": lambda f: "saying the admin page's setup code.",
    "listening": lambda f: "Listening: on." if f.get("available") else "Listening: off (use the buttons).",
    signals.FAULT: lambda f: f"PROBLEM: {f.get('message')}",
    signals.CIRCLE_LOADED: lambda f: f"Now using circle '{f.get('script')}' version {f.get('version')}.",
    signals.SETTINGS_APPLIED: lambda f: f"New settings in use: {_listed(f.get('what'))}.",
    "clock_set": lambda f: f"The box's clock was set from a phone: {f.get('time')}.",
    signals.COMMAND_HEARD: lambda f: f"Heard '{f.get('phrase')}'.",
}


def _named(label: str, action: str) -> str:
    meaning = action_meaning(action)
    return f"{label}: {meaning}" if meaning else label


def describe_keys(keys: Sequence[tuple[str, str]], buttons: Sequence[Any]) -> str:
    """Which key is which button, each action named once with what it does.

    `keys` pairs a key with a button name; `buttons` are the config's button specs (name,
    press, hold), so a changed button map shows here as it is.
    """
    by_name = {b.name: b for b in buttons}
    lines = ["Keys (the box's buttons):"]
    for key, name in keys:
        button = by_name.get(name)
        if button is None:
            continue
        lines.append(f"  {key:<8} {_named(action_word(button.press), button.press)}")
        if button.hold:
            held = f"{action_word(button.hold)} (hold {name.upper()})"
            lines.append(f"  {'Shift+' + key.upper():<8} {_named(held, button.hold)}")
    lines += [
        f"  {'+ / -':<8} LOUDER / SOFTER",
        f"  {'1-9':<8} go to step 1 to 9",
        f"  {'s':<8} the box's status in words",
        f"  {'q':<8} quit",
    ]
    return "\n".join(lines)
