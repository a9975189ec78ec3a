"""Faults in plain words: what is wrong, what to do, and the technical detail kept apart.

The runtime reports a fault as one line, "<part>: <message>" ("mic: microphone default failed
to start (exit 1): arecord: main:831: audio open error: ..."), and each part's health as
`health[part] = message`. A facilitator cannot act on `arecord: main:831`; a technician needs
exactly that. So every place that shows a fault (the live panel, /system/, the doctor) asks
`explain_fault` for one sentence a facilitator understands plus what to do, and shows the raw
text only behind a toggle. The wording lives here and nowhere else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


def N_(text: str) -> str:
    """Marks words for the admin page's catalogues (pybabel extract); the page translates them
    where it shows them (local_admin.i18n.plain_fault). Here they stay English."""
    return text


# The parts the runtime names in its faults and health, as people call them.
PART_NAMES: dict[str, str] = {
    "speaker": N_("Speaker"),
    "mic": N_("Microphone"),
    "buttons": N_("Buttons"),
    "leds": N_("Lights"),
    "circle": N_("Circle"),
    "settings": N_("Settings"),
    "control": N_("Connection to this page"),
    "voices": N_("Voices"),
    "vosk": N_("Spoken commands"),
}
_PART_PREFIX = re.compile(r"^\s*([a-z_]+)\s*:\s*(.*)$", re.DOTALL)


@dataclass(frozen=True)
class PlainFault:
    """One fault as people read it: `summary` says what is wrong, `advice` what to do."""

    part: str  # a key of PART_NAMES, or "" when the text names no part
    summary: str
    advice: str
    detail: str  # the text exactly as the runtime gave it, for a technician

    @property
    def sentence(self) -> str:
        return f"{self.summary} {self.advice}"

    def as_dict(self) -> dict[str, str]:
        return {
            "part": self.part,
            "summary": self.summary,
            "advice": self.advice,
            "sentence": self.sentence,
            "detail": self.detail,
        }


# (part, pattern in the message or None for any, summary, advice): the first match wins, so a
# part's specific rules come before its catch-all.
_RULES: tuple[tuple[str, str | None, str, str], ...] = (
    ("mic", r"listening unavailable",
     N_("Listening to the room is not available on this box."),
     N_("The buttons and this panel still work. A technician can reinstall the box's software.")),
    ("mic", r"^listening\.",
     N_("The listening settings are not valid, so the box does not listen to the room."),
     N_("Correct them on the Settings page (Listening); the buttons still work.")),
    ("mic", None,
     N_("The microphone is not working."),
     N_("Check its cable; the buttons still work. The box tries the microphone again by itself.")),
    ("speaker", None,
     N_("The speaker is not working, so the box cannot speak."),
     N_("Check that the speaker is plugged in and switched on, then restart the circle service "
     "on the System page.")),
    ("circle", r"last good|kept version",
     N_("The newest version of the circle could not be used; the box plays the last version "
     "that worked."),
     N_("Open the circle on the Circles page, fix what it marks and save it again.")),
    ("circle", r"render",
     N_("The circle's sounds have not been made yet, so the box cannot play it."),
     N_("Save the circle again on the Circles page; the box makes its sounds while you wait.")),
    ("circle", None,
     N_("The box could not load the circle it is set to run."),
     N_("Check the circle on the Circles page, or choose another one on the Settings page.")),
    ("buttons", r"^no GPIO",
     N_("The box's own buttons are not connected."),
     N_("Use the on-screen buttons on this panel; a technician should check the button wiring.")),
    ("buttons", None,
     N_("The box's buttons are not working."),
     N_("Use the on-screen buttons on this panel; a technician should check the button cable.")),
    ("leds", None,
     N_("The box's lights are not working."),
     N_("Circles still run as usual; a technician should check the light wiring.")),
    ("control", None,
     N_("This page cannot reach the box."),
     N_("Restart the circle service on the System page.")),
    ("settings", None,
     N_("The box could not use the settings saved last; it keeps the settings it had."),
     N_("Open the Settings page, correct what it marks and save again.")),
    ("voices", r"no voice",
     N_("No voice is installed, so the box cannot make new sounds."),
     N_("Circles already saved still play. A technician can install a voice with an update.")),
    ("voices", None,
     N_("The box's voices cannot be read, so it cannot make new sounds."),
     N_("Circles already saved still play. Tell your technician.")),
    ("vosk", r"^ok",
     N_("Spoken commands are ready."),
     ""),
    ("vosk", None,
     N_("Off: the box does not hear spoken commands."),
     N_("The buttons and this panel work as usual; a technician can install the speech model.")),
    ("", r"sound '.*' is not rendered|not rendered",
     N_("A sound of this circle is missing, so the box skipped it."),
     N_("Save the circle again on the Circles page so the box makes all its sounds.")),
    ("", None,
     N_("Something went wrong in the box."),
     N_("Restart the circle service on the System page; if it happens again, tell your technician.")),
)


def split_fault(text: str) -> tuple[str, str]:
    """("mic", "arecord: ...") from "mic: arecord: ..."; ("", text) when no known part leads."""
    match = _PART_PREFIX.match(text or "")
    if match and match[1] in PART_NAMES:
        return match[1], match[2].strip()
    return "", (text or "").strip()


def explain(part: str, message: str, detail: str | None = None) -> PlainFault:
    """The plain words for one part's message (a health entry, or a fault split by part)."""
    part = part if part in PART_NAMES else ""
    for rule_part, pattern, summary, advice in _RULES:
        if rule_part != part:
            continue
        if pattern is None or re.search(pattern, message):
            return PlainFault(part, summary, advice, detail if detail is not None else message)
    # a part with no rule of its own: say which part, in words
    name = PART_NAMES.get(part, N_("A part of the box"))
    return PlainFault(part, N_("%(part)s is not working.") % {"part": name},
                      N_("Restart the circle service on the System page; if it happens again, "
                         "tell your technician."), detail if detail is not None else message)


def explain_fault(text: str) -> PlainFault:
    """A fault line as the runtime produces it ("part: message") in plain words."""
    part, message = split_fault(text)
    return explain(part, message, detail=str(text or "").strip())


def is_ok(health_value: str | None) -> bool:
    """A health entry that says the part works ("ok", "ok (2 voices)")."""
    return bool(health_value) and str(health_value).strip().lower().startswith("ok")


__all__ = ["PART_NAMES", "PlainFault", "explain", "explain_fault", "is_ok", "split_fault"]
