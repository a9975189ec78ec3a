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
from local_admin.i18n import gettext as _


@dataclass(frozen=True)
class Change:
    """What was saved, in the words the sentences need.

    `what`: how the sentence names it ("them" for settings, "friday-circle" for a circle).
    `at_once`: what the box changes even mid-circle ("volume"), or "" when nothing does.
    """

    what: Any = None  # None: the settings ("them")
    at_once: Any = ""


SETTINGS = Change()


def applies_sentence(outcome: Mapping[str, Any] | BoxNotRunning | None, change: Change = SETTINGS) -> str:
    """The truthful sentence for the runtime's answer to a reload (or BoxNotRunning).

    None means the box could not be told (an admin page without reload): it reads its files
    when it starts.
    """
    what = _("them") if change.what is None else str(change.what)
    if isinstance(outcome, BoxNotRunning):
        return _("The box is off: it will use %(what)s when it starts.", what=what)
    if outcome is None:
        return _("The box will use %(what)s when it next starts.", what=what)
    if outcome.get("ok") is False:
        why = str(outcome.get("error") or _("no reason given"))
        return _("The box could not take %(what)s now (%(why)s); it will use %(what)s when it next starts.",
                 what=what, why=why)
    when = outcome.get("when")
    if when == "now":
        return _("The box is using %(what)s now.", what=what)
    if when == "after_circle":
        if change.at_once:
            return _("A circle is running: %(what)s changes now, the rest when this circle ends.",
                     what=str(change.at_once))
        return _("A circle is running: the box will use %(what)s when this circle ends.", what=what)
    return _("The box has %(what)s; it will use %(what)s when it is next idle.", what=what)


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
