"""The named actions every input maps to: buttons, keyboard, the admin panel, voice, tests.

One vocabulary, so a button map in config, an on-screen button and a spoken "next step" all
mean exactly the same thing to the session engine.
"""

from __future__ import annotations

from dataclasses import dataclass

# action name -> what the box says it does (the "explain" mode reads these aloud).
ACTIONS: dict[str, str] = {
    "next": "Next. Moves on: to the next person in a round, or to the next step.",
    "skip": "Skip. Ends the whole step now, even in the middle of a round.",
    "repeat": "Repeat. Says the current instruction again.",
    "previous": "Back. Goes back to the start of the previous step.",
    "pause": "Pause. Pauses the circle. Press again to carry on.",
    "help": "Help. Pauses everything, plays a calm message and lights the help light.",
    "explain": "Explain. After this, press any button to hear what it does.",
    "volume_up": "Louder.",
    "volume_down": "Softer.",
    "start": "Start. Begins the circle from the first step.",
    "stop": "Stop. Ends the circle now.",
    "setup_code": "Holding two buttons together says the code for the admin page's first set-up.",
}
GOTO_PREFIX = "goto:"


class UnknownAction(ValueError):
    """An action name that is not in the vocabulary (a typo in config or a bad request)."""


@dataclass(frozen=True)
class Action:
    """A parsed action: a name, and for goto the step it targets."""

    name: str
    step: str | None = None

    @property
    def text(self) -> str:
        return f"{GOTO_PREFIX}{self.step}" if self.name == "goto" else self.name


def parse_action(text: str) -> Action:
    text = text.strip()
    if text.startswith(GOTO_PREFIX):
        step = text[len(GOTO_PREFIX):].strip()
        if not step:
            raise UnknownAction(f"'{text}': goto needs a step id, like goto:share")
        return Action("goto", step)
    if text not in ACTIONS:
        known = ", ".join([*ACTIONS, "goto:<step>"])
        raise UnknownAction(f"unknown action '{text}' (known: {known})")
    return Action(text)


def validate_action_name(text: str) -> str:
    parse_action(text)
    return text


def describe(action: Action) -> str:
    if action.name == "goto":
        return f"Go to step {action.step}."
    return ACTIONS[action.name]
