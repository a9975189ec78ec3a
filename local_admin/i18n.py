"""The admin page in the reader's language: which language a request gets, and local formats.

Catalogues live in `local_admin/translations/<lang>/LC_MESSAGES/messages.po` (with the compiled
`.mo` beside each, committed: see docs/languages.md). A request gets the language set in the box's
config (`admin.language`), or with `auto` the best match of the browser's Accept-Language among
the catalogues, else English. English is the source text: it needs no catalogue.

Words that other modules define (device/faults.py, device/language.py, the usage measures) stay
English there; the page turns them into the reader's language here, at display time, so the
runtime and the doctor never need Flask or Babel.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from flask import Flask, current_app, has_request_context, request
from flask_babel import Babel, force_locale, get_locale, gettext, lazy_gettext, ngettext

SOURCE_LANGUAGE = "en"
TRANSLATIONS = Path(__file__).with_name("translations")


def N_(text: str) -> str:
    """Marks a string for `pybabel extract` without translating it (it is translated where shown)."""
    return text


@functools.cache
def page_languages() -> tuple[str, ...]:
    """English plus every language that has a compiled catalogue, e.g. ("en", "fr", "sw")."""
    found = sorted(p.parent.parent.name for p in TRANSLATIONS.glob("*/LC_MESSAGES/messages.mo"))
    return (SOURCE_LANGUAGE, *[code for code in found if code != SOURCE_LANGUAGE])


def language_choices() -> list[tuple[str, str]]:
    """(code, the language's own name) for the settings page: "Kiswahili", "Français"."""
    from babel import Locale

    return [(code, Locale.parse(code).get_display_name(code).capitalize()) for code in page_languages()]


def choose_language() -> str:
    """The language of this request: the box's setting, else the browser's best match, else English."""
    setting = str(current_app.extensions["circlebox"].config.admin.language)
    available = page_languages()
    if setting != "auto":
        base = setting.replace("-", "_").split("_")[0].lower()
        if base in available:
            return base
    if has_request_context():
        best = request.accept_languages.best_match(available)
        if best:
            return best
    return SOURCE_LANGUAGE


def carry_language() -> Callable[[], AbstractContextManager[None]]:
    """For work done on another thread (a save's rendering): a context manager that gives it
    this app and this request's language, so its messages read like the page that started it."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    language = current_language()

    @contextmanager
    def inside() -> Iterator[None]:
        with app.app_context(), force_locale(language):
            yield

    return inside


def current_language() -> str:
    locale = get_locale()
    return locale.language if locale is not None else SOURCE_LANGUAGE


def init_app(app: Flask) -> Babel:
    """Flask-Babel on the app with our chooser, and the filters the templates use."""
    babel = Babel(app, locale_selector=choose_language)
    app.jinja_env.filters["local_datetime"] = local_datetime
    app.jinja_env.filters["local_number"] = local_number
    app.jinja_env.globals["page_language"] = current_language
    app.jinja_env.globals["page_words"] = page_words
    app.jinja_env.globals["language_in_words"] = language_in_words
    app.jinja_env.globals["action_words"] = action_words
    app.jinja_env.globals["prompt_label"] = prompt_label
    app.jinja_env.filters["problem_text"] = problem_text
    return babel


def page_words() -> dict[str, str]:
    """The sentences admin.js writes into the page, in the reader's language (base.html puts
    them in a JSON block: the script has no words of its own)."""
    return {
        "detail": gettext("Technical detail"),
        "no_answer": gettext("The box did not answer. Check the connection and try again."),
        "clock_set": gettext("The box's clock is set to this phone's time."),
        "clock_unknown": gettext("the box does not say what time it has"),
        "clock_unset": gettext("the box's clock has not been set since it was switched on (it says {time})"),
        "clock_other": gettext("the box's clock says {time}, which is not this phone's time"),
        "clock_why": gettext("The dates in Usage may be wrong: {why}."),
        "making": gettext("Making the sound…"),
        "sound_failed": gettext("could not make the sound"),
        "box_silent": gettext("The box did not answer."),
        "job_queued": gettext("waiting"),
        "job_running": gettext("making the sounds"),
        "job_done": gettext("done"),
        "job_failed": gettext("failed"),
        "job_count": gettext("({done} of {total})"),
        "draft_kept": gettext("Your changes are kept as a draft in the editor."),
    }


def action_words(action: str) -> str:
    """An action name as the settings' button lists show it: the name itself in English (it is
    what the config file says), the button's word and the name in other languages."""
    if current_language() == SOURCE_LANGUAGE:
        return action
    from local_admin.panel import LABELS

    if action in LABELS:
        return f"{LABELS[action]} ({action})"
    if action.startswith("goto:"):
        return gettext("Go to step %(step)s", step=action.removeprefix("goto:")) + f" ({action})"
    if action == "setup_code":
        return gettext("Say the setup code") + f" ({action})"
    return action


def local_datetime(value: Any) -> str:
    """A stored time ("2026-03-05T14:30:00+03:00") as the reader writes it, in the box's own wall
    time: "2026-03-05 14:30" in English (as always), "5 mars 2026 14:30" in French."""
    text = str(value or "")
    if not text:
        return ""
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text[:16].replace("T", " ")
    language = current_language()
    if language == SOURCE_LANGUAGE:
        return when.strftime("%Y-%m-%d %H:%M")
    from babel.dates import format_date, format_time

    naive = when.replace(tzinfo=None)  # the box's wall time, not converted
    return f"{format_date(naive, 'medium', locale=language)} {format_time(naive, 'HH:mm', locale=language)}"


def local_number(value: Any, digits: int = 0) -> str:
    """A number with the reader's decimal mark and grouping: 12.5 -> "12,5" in French."""
    from babel.numbers import format_decimal

    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    pattern = "#,##0" + ("." + "0" * digits if digits else "")
    return format_decimal(number if digits else round(number), pattern, locale=current_language())


# -- words other modules define ------------------------------------------------------------------

def translated(text: str) -> str:
    """`text` in the reader's language when the catalogue has it (words defined outside the
    admin page and listed below for extraction), else as it is."""
    return gettext(text) if text else text


def problem_text(problem: Any) -> Any:
    """A problem the device side found (a device.problems.Problem: the circle validator,
    device.language) in the reader's language: its template translated, then its fields filled
    in, each said the same way (a language's name in the reader's words). Plain text, and
    None, come back as they are."""
    from device.problems import LanguageName, Problem, PromptName

    if isinstance(problem, LanguageName):
        return language_in_words(problem.code)
    if isinstance(problem, PromptName):
        return prompt_label(problem.info)
    if not isinstance(problem, Problem):
        return problem
    fields = {name: problem_text(value) for name, value in problem.fields.items()}
    return gettext(problem.template, **fields) if fields else gettext(problem.template)


def error_text(error: BaseException) -> str:
    """Why rendering failed (audio.render.RenderError, a missing voice, a recording that cannot
    be read), in the reader's language: the message when it is a Problem, else as it is (the
    words of Piper or a decoder, technical detail only they give)."""
    from audio.voices import VoiceNotFound
    from device.problems import Problem

    if isinstance(error, VoiceNotFound):
        text = gettext("voice '%(voice)s' not found; available: %(available)s", voice=error.voice_id,
                       available=", ".join(error.available) or gettext("(none)"))
        return text + ("; " + gettext("also: %(problems)s", problems="; ".join(error.problems))
                       if error.problems else "")
    first = error.args[0] if error.args else None
    if isinstance(first, Problem):
        return problem_text(first)
    return str(error) or type(error).__name__


def prompt_problem_text(problem: Any) -> str:
    """A device.language.PromptProblem in the reader's words: "Step 2 'share': <why>"."""
    return gettext("%(prompt)s: %(problem)s", prompt=prompt_label(problem.prompt),
                   problem=problem_text(problem.problem))


def plain_fault(fault: Any) -> dict[str, str]:
    """A device.faults.PlainFault as the page shows it, in the reader's language."""
    from device.faults import PART_NAMES

    out = fault.as_dict()
    summary = fault.summary
    generic = f"{PART_NAMES.get(fault.part, 'A part of the box')} is not working."
    if summary == generic:
        out["summary"] = gettext("%(part)s is not working.",
                                 part=translated(PART_NAMES.get(fault.part, "A part of the box")))
    else:
        out["summary"] = translated(summary)
    out["advice"] = translated(fault.advice)
    out["sentence"] = f"{out['summary']} {out['advice']}".strip()
    return out


def language_in_words(code: str | None) -> str:
    """A circle's language code in the reader's words: sw_KE -> "Swahili" / "swahili" / "Kiswahili"."""
    from device.language import base_language, language_name

    language = current_language()
    if language == SOURCE_LANGUAGE or not code:
        return translated(language_name(code))
    from babel import Locale

    name = Locale.parse(language).languages.get(base_language(code))
    return name or language_name(code)


def message_label(name: str) -> str:
    """What a box message is, in the reader's words (device.language.message_label in English)."""
    from device.language import MESSAGE_LABELS
    from device.language import message_label as english

    if name == "action_setup_code":
        return gettext("What holding two buttons together does (explain mode)")
    if name.startswith("action_"):
        from local_admin.panel import LABELS

        action = name.removeprefix("action_")
        button = LABELS.get(action)
        if button is None:
            return english(name)
        if current_language() == SOURCE_LANGUAGE:
            return english(name)
        return gettext("What the %(button)s button does (explain mode)", button=str(button))
    return translated(MESSAGE_LABELS[name]) if name in MESSAGE_LABELS else english(name)


def prompt_label(info: Any) -> str:
    """A device.language.PromptInfo's label in the reader's words."""
    if info.prompt_id.startswith("msg:"):
        return gettext("Message: %(what)s", what=message_label(info.prompt_id.removeprefix("msg:")))
    parts = info.prompt_id.split(":")
    step_id = parts[1] if len(parts) > 1 else ""
    suffix = parts[2] if len(parts) > 2 else ""
    number = (info.step_index or 0) + 1
    if suffix == "between":
        return gettext("Step %(n)s '%(id)s': between turns", n=number, id=step_id)
    if suffix == "reminder":
        return gettext("Step %(n)s '%(id)s': gentle reminder", n=number, id=step_id)
    if suffix == "wrap_up":
        return gettext("Step %(n)s '%(id)s': wrap-up", n=number, id=step_id)
    if suffix == "notes":
        return gettext("Step %(n)s '%(id)s': facilitator note", n=number, id=step_id)
    return gettext("Step %(n)s '%(id)s'", n=number, id=step_id)


# Strings defined in device/ that the page shows; listed so `pybabel extract` finds them.
# (device/faults.py, device/script.py and device/language.py mark their own with N_.)
# The page-walk test (tests/test_admin_languages.py) fails when one of them shows untranslated.
_FOREIGN = (
    # device/actions.py ACTIONS: the panel's button tooltips
    N_("Next. Moves on: to the next person in a round, or to the next step."),
    N_("Skip. Ends the whole step now, even in the middle of a round."),
    N_("Repeat. Says the current instruction again."),
    N_("Back. Goes back to the start of the previous step."),
    N_("Pause. Pauses the circle. Press again to carry on."),
    N_("Help. Pauses everything, plays a calm message and lights the help light. Press again to carry on."),
    N_("Explain. After this, press any button to hear what it does."),
    N_("Louder."),
    N_("Softer."),
    N_("Start. Begins the circle from the first step."),
    N_("Stop. Ends the circle now."),
    # device/usage.py why_a_test_run
    N_("no core step delivered"),
    N_("no step delivered"),
    # device/runtime.py choose_meeting: the box's refusals the panel shows (panel.course_session)
    N_("a circle is running: choose another session after it ends (or stop it first)"),
    N_("the box is not running a course (set one on the admin page)"),
    N_("the box is busy; try again"),
)

__all__ = [
    "N_",
    "choose_language",
    "current_language",
    "error_text",
    "gettext",
    "init_app",
    "language_choices",
    "language_in_words",
    "lazy_gettext",
    "local_datetime",
    "local_number",
    "message_label",
    "ngettext",
    "page_languages",
    "plain_fault",
    "problem_text",
    "prompt_label",
    "prompt_problem_text",
    "translated",
]
