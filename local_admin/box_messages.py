"""The box's own messages, recorded from a phone: a language pack made on the admin page.

Outside a circle the box speaks for itself: the setup code and its digits, the technician's
self-test, what it says during a USB update. This page lists every one of those prompts for a
language (device.system_prompts.pack_prompts), says whether it is recorded on this box, comes
from an installed language pack, or is still said in English, and records, plays and deletes
takes the way the circle studio does (local_admin.takes). Takes go into the box's own pack
(device.language_packs); the runtime reads it when the box is told (`Control.reload`), for the
language `audio.system_language` names (the "Use this language" button sets it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from flask import Blueprint, abort, flash, redirect, render_template, request, send_file, url_for

from device.config import ConfigError
from device.datafolder import DataFolder
from device.language import LANGUAGE_NAMES, base_language
from device.language_packs import BOX, INSTALLED, LANGUAGE, PackError, delete_take, pack_recordings, save_take
from local_admin import state
from local_admin.i18n import gettext as _
from local_admin.i18n import language_in_words
from local_admin.i18n import lazy_gettext as _l

bp = Blueprint("box_messages", __name__, url_prefix="/system/messages")

STATUS_WORDS = {BOX: _l("Recorded on this box"), INSTALLED: _l("From the installed language pack"),
                None: _l("Said in English")}


@dataclass(frozen=True)
class MessageRow:
    """One of the box's own prompts as the page shows it."""

    prompt_id: str
    english: str  # what the box says in English: the meaning to say in the language
    origin: str | None  # BOX, INSTALLED or None (not recorded: said in English)

    @property
    def anchor(self) -> str:
        return "m-" + self.prompt_id.replace(":", "-").replace("_", "-")

    @property
    def status(self) -> str:
        return "recorded" if self.origin else "missing"


def _language(value: str | None) -> str:
    """The language asked for, else the box's; 404 for anything that is not a language code."""
    language = value or state().config.audio.system_language
    if not LANGUAGE.match(language):
        abort(404)
    return language


def _buttons() -> list[str]:
    return [b.name for b in state().config.buttons.map]


def rows(language: str) -> list[MessageRow]:
    """Every prompt of the box's own words, in the order the studio lists them."""
    from device.language_packs import recording_for
    from device.system_prompts import pack_prompts

    recordings, _problems = pack_recordings(state().data_dir, language)
    out = []
    for pid, english in pack_prompts(button_names=_buttons()).items():
        found = recording_for(pid, recordings)
        out.append(MessageRow(pid, english, found.origin if found else None))
    return out


def _row(language: str, prompt_id: str) -> MessageRow:
    for row in rows(language):
        if row.prompt_id == prompt_id:
            return row
    abort(404)


def _back(language: str, row: MessageRow | None = None) -> str:
    return url_for("box_messages.studio", language=language) + (f"#{row.anchor}" if row else "")


def _tell_box(what: str) -> str:
    from local_admin.applies import Change, tell_box

    return tell_box(state().control, Change(what))


@bp.route("/")
def studio():
    language = _language(request.args.get("language"))
    listed = rows(language)
    _found, problems = pack_recordings(state().data_dir, language)
    missing = sum(1 for r in listed if r.origin is None)
    in_use = state().config.audio.system_language
    choices = sorted(LANGUAGE_NAMES.items(), key=lambda item: item[1])
    return render_template("box_messages.html", rows=listed, language=language,
                           language_words=language_in_words(language),
                           missing=missing, in_use=in_use, in_use_words=language_in_words(in_use),
                           english=base_language(language) == "en", choices=choices, problems=problems,
                           status_words=STATUS_WORDS)


@bp.route("/take", methods=["POST"])
def take():
    """A take for one prompt: checked, trimmed, normalised (local_admin.takes), then kept as
    the box's own recording of it; the box is told if it speaks this language."""
    from local_admin.takes import uploaded_take

    language = _language(request.form.get("language"))
    row = _row(language, request.form.get("prompt", ""))
    label = f"'{row.english}'"
    ready = uploaded_take(label)
    if ready is None:
        return redirect(_back(language, row))
    try:
        save_take(state().data_dir, language, row.prompt_id, ready.wav, ready.digest)
    except (PackError, OSError) as exc:
        flash(_("%(prompt)s: the recording could not be kept: %(why)s", prompt=label, why=exc), "error")
        return redirect(_back(language, row))
    note = _tell_box(_("the new recording")) if language == state().config.audio.system_language else ""
    flash(_("%(prompt)s: recorded. %(note)s", prompt=label, note=note).strip(), "ok")
    return redirect(_back(language, row))


@bp.route("/delete", methods=["POST"])
def delete():
    language = _language(request.form.get("language"))
    row = _row(language, request.form.get("prompt", ""))
    if not delete_take(state().data_dir, language, row.prompt_id):
        abort(404)
    if language == state().config.audio.system_language:
        _tell_box(_("the change"))
    flash(_("'%(prompt)s': the recording made on this box was deleted.", prompt=row.english), "ok")
    return redirect(_back(language, row))


@bp.route("/use", methods=["POST"])
def use():
    """Make this the language of the box's own messages (`audio.system_language`)."""
    from local_admin.settings import save_layer

    language = _language(request.form.get("language"))
    try:
        save_layer({"audio": {"system_language": language}})
    except ConfigError as exc:
        flash(str(exc), "error")
    else:
        flash(_("The box's own messages are now in %(language)s. %(when)s", language=language_in_words(language),
                when=_tell_box(_("them"))), "ok")
    return redirect(_back(language))


@bp.route("/listen/<language>/<prompt_id>")
def listen(language: str, prompt_id: str):
    """One prompt as the box would say it: its recording, or the box's English."""
    from device.language_packs import recording_for

    language = _language(language)
    row = _row(language, prompt_id)
    recordings, _problems = pack_recordings(state().data_dir, language)
    found = recording_for(row.prompt_id, recordings)
    if found is not None:
        return send_file(found.path, mimetype="audio/wav", conditional=True)
    return _english(row.prompt_id)


def _english(prompt_id: str):
    """The English prompt from the box's rendered system set (`circlebox render` makes it)."""
    from device.system_prompts import system_manifest_path

    try:
        manifest = json.loads(system_manifest_path(DataFolder(state().data_dir).cache).read_text(encoding="utf-8"))
        key = manifest["prompts"][prompt_id]["key"]
    except (OSError, ValueError, KeyError, TypeError):
        abort(404)
    return redirect(url_for("circles.audio", key=key))


__all__ = ["bp", "rows"]
