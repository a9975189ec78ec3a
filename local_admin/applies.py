"""What the page says after a change is saved: exactly when the box will use it.

After an atomic save the page tells the runtime (`Control.reload()`); the runtime answers
whether it took the change at once or takes it when the circle it is running ends, or it does
not answer because it is off. `tell_box` asks, and `applies_sentence` is the one place that
turns the answer into words, for box settings and for "Use on the box" alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from local_admin.backends import BoxNotRunning


@dataclass(frozen=True)
class Change:
    """What was saved, in the words the sentences need.

    `what`: how the sentence names it ("them" for settings, "friday-circle" for a circle).
    `at_once`: what the box changes even mid-circle ("volume"), or "" when nothing does.
    """

    what: str = "them"
    at_once: str = ""


SETTINGS = Change("them")


def applies_sentence(outcome: Mapping[str, Any] | BoxNotRunning | None, change: Change = SETTINGS) -> str:
    """The truthful sentence for the runtime's answer to a reload (or BoxNotRunning).

    None means the box could not be told (an admin page without reload): it reads its files
    when it starts.
    """
    if isinstance(outcome, BoxNotRunning):
        return f"The box is off: it will use {change.what} when it starts."
    if outcome is None:
        return f"The box will use {change.what} when it next starts."
    if outcome.get("ok") is False:
        why = str(outcome.get("error") or "no reason given")
        return (f"The box could not take {change.what} now ({why}); "
                f"it will use {change.what} when it next starts.")
    when = outcome.get("when")
    if when == "now":
        return f"The box is using {change.what} now."
    if when == "after_circle":
        if change.at_once:
            return f"A circle is running: {change.at_once} changes now, the rest when this circle ends."
        return f"A circle is running: the box will use {change.what} when this circle ends."
    return f"The box has {change.what}; it will use {change.what} when it is next idle."


def tell_box(control: Any, change: Change = SETTINGS) -> str:
    """Ask the runtime to take what was just saved; the sentence that says when it will."""
    reload = getattr(control, "reload", None)
    if reload is None:
        return applies_sentence(None, change)
    try:
        outcome = reload()
    except BoxNotRunning as exc:
        return applies_sentence(exc, change)
    except ValueError as exc:  # the box answered with a refusal
        return applies_sentence({"ok": False, "error": str(exc)}, change)
    return applies_sentence(outcome if isinstance(outcome, Mapping) else {}, change)
