"""A take sent from the studio pages (a circle's prompts, the box's own messages): the upload
read from the form, checked, trimmed and normalised by audio.takes at the box's rate and
loudness. One place for both studios, so a take is judged the same way everywhere."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from flask import flash, request

from audio.recording import MAX_RECORDING_S
from local_admin import state
from local_admin.i18n import error_text
from local_admin.i18n import gettext as _


@dataclass(frozen=True)
class ReadyTake:
    wav: bytes
    digest: str  # sha256 of the WAV: names the file, so a new take never overwrites a played one


def make_ready(data: bytes, filename: str) -> ReadyTake:
    """Check, trim and normalise one recording; raises audio.takes.TakeError (a ValueError)
    saying what is wrong and what to do."""
    from audio.takes import make_take

    audio = state().config.audio
    take = make_take(data, filename, audio.sample_rate, audio.loudness_lufs, max_seconds=MAX_RECORDING_S,
                     phone_formats=True)  # a phone's own recorder: M4A, 3GP, WebM (audio.phone_decode)
    return ReadyTake(take.wav, hashlib.sha256(take.wav).hexdigest())


def uploaded_take(label: str) -> ReadyTake | None:
    """The form's `take` file made ready for the box; None after flashing, in plain words and
    naming the prompt (`label`), why it cannot be used."""
    upload = request.files.get("take")
    if upload is None or not upload.filename:
        flash(_("%(prompt)s: record something first (the Record button), then send it.", prompt=label), "error")
        return None
    try:
        return make_ready(upload.read(), upload.filename)
    except ValueError as exc:  # error_text: a Problem (phone_decode's refusals) in the reader's words
        flash(_("%(prompt)s: %(why)s", prompt=label, why=error_text(exc)), "error")
        return None


__all__ = ["ReadyTake", "make_ready", "uploaded_take"]
