"""The named actions every input maps to: buttons, keyboard, the admin panel, voice, tests.

One vocabulary, so a button map in config, an on-screen button and a spoken "next step" all
mean exactly the same thing to the session engine. Two actions carry a value after a colon:
`goto:<step>` (jump to a step) and `volume:<percent>` (the admin panel's volume slider).
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
    "help": "Help. Pauses everything, plays a calm message and lights the help light. Press again to carry on.",
    "explain": "Explain. After this, press any button to hear what it does.",
    "volume_up": "Louder.",
    "volume_down": "Softer.",
    "start": "Start. Begins the circle from the first step.",
    "stop": "Stop. Ends the circle now.",
    "rehearse": "Rehearse. Practises the circle: a note for the facilitator before each step, short turns "
    "and short timers. A rehearsal is never counted as a circle held.",
    "setup_code": "Holding two buttons together says the code for the admin page's first set-up.",
}
GOTO_PREFIX = "goto:"
VOLUME_PREFIX = "volume:"
VOLUME_EXAMPLE = "volume:35"


class UnknownAction(ValueError):
    """An action name that is not in the vocabulary (a typo in config or a bad request)."""


@dataclass(frozen=True)
class Action:
    """A parsed action: a name, for goto the step it targets, for volume the level in percent."""

    name: str
    step: str | None = None
    percent: int | None = None

    @property
    def text(self) -> str:
        """The action as written in config and requests: parse_action(a.text) == a."""
        if self.name == "goto":
            return f"{GOTO_PREFIX}{self.step}"
        if self.name == "volume":
            return f"{VOLUME_PREFIX}{self.percent}"
        return self.name


def parse_action(text: str) -> Action:
    text = text.strip()
    if text.startswith(GOTO_PREFIX):
        step = text[len(GOTO_PREFIX):].strip()
        if not step:
            raise UnknownAction(f"'{text}': goto needs a step id, like goto:share")
        return Action("goto", step)
    if text.startswith(VOLUME_PREFIX):
        return Action("volume", percent=_parse_percent(text))
    if text not in ACTIONS:
        known = ", ".join([*ACTIONS, "goto:<step>", "volume:<percent>"])
        raise UnknownAction(f"unknown action '{text}' (known: {known})")
    return Action(text)


def _parse_percent(text: str) -> int:
    value = text[len(VOLUME_PREFIX):].strip()
    if not value:
        raise UnknownAction(f"'{text}': volume needs a level from 0 to 100 percent, like {VOLUME_EXAMPLE}")
    if not value.isdecimal() or not 0 <= int(value) <= 100:
        raise UnknownAction(
            f"'{text}': the volume must be a whole number from 0 to 100 (percent), like {VOLUME_EXAMPLE}"
        )
    return int(value)


def validate_action_name(text: str) -> str:
    parse_action(text)
    return text


def describe(action: Action) -> str:
    if action.name == "goto":
        return f"Go to step {action.step}."
    if action.name == "volume":
        return f"Volume {action.percent} percent."
    return ACTIONS[action.name]
