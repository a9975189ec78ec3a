"""Taking an update bundle (hundreds of MB) from the System page without holding it anywhere
but the inbox: never whole in memory, never spooled to /tmp, never parsed before the login
guard and the CSRF check have passed.

Two ways in, both streamed in 1 MiB reads:
- the page's script sends the file itself as the body (`application/octet-stream`, CSRF token
  in the X-CSRFToken header): `device.update.upload.receive_upload`, which also checks the
  size against the free space before reading;
- without JavaScript the browser sends the form (`multipart/form-data`): read here with
  werkzeug's streaming decoder; the CSRF token field comes before the file in the page's form
  and is checked before a byte of the file is kept.
The route is exempt from CSRFProtect (which would parse, and spool, the whole form first);
`check_token` here is the same flask-wtf check.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from flask_wtf.csrf import CSRFError, validate_csrf
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData
from wtforms import ValidationError

from device.update.inbox import CHUNK, MAX_UPLOAD, UploadRefused, accept_upload
from device.update.upload import receive_upload

FIELD_BYTES = 4096  # the token and any other small field of the form
FILE_FIELD = "bundle"


def check_token(token: str | None) -> None:
    """The session's CSRF token, or CSRFError (the app answers 400 "form refused")."""
    try:
        validate_csrf(token)
    except ValidationError as exc:
        raise CSRFError(str(exc)) from exc


def take_raw(stream: BinaryIO, length: int | None, token: str | None, data_dir: Path) -> Path:
    check_token(token)
    return receive_upload(stream, length, data_dir)


def take_form(stream: BinaryIO, boundary: str, data_dir: Path) -> Path:
    """The `bundle` file of a multipart form, streamed into the inbox."""
    return accept_upload(_file_chunks(stream, boundary.encode("latin-1")), data_dir, max_bytes=MAX_UPLOAD)


def _events(stream: BinaryIO, boundary: bytes):
    """The form's parts, read in CHUNK reads (field sizes are bounded in `_file_chunks`)."""
    decoder = MultipartDecoder(boundary)
    while True:
        event = decoder.next_event()
        if isinstance(event, NeedData):
            if decoder.complete:
                raise UploadRefused("the upload stopped before the whole file arrived; try again")
            decoder.receive_data(stream.read(CHUNK) or None)
            continue
        yield event
        if isinstance(event, Epilogue):
            return


def _file_chunks(stream: BinaryIO, boundary: bytes) -> Iterator[bytes]:
    fields: dict[str, bytes] = {}
    current: str | None = None
    in_file = False
    seen_file = False
    for event in _events(stream, boundary):
        if isinstance(event, Field):
            current, in_file = event.name, False
            fields[current] = b""
        elif isinstance(event, File):
            current, in_file = event.name, event.name == FILE_FIELD and not seen_file
            if in_file:
                seen_file = True
                if not event.filename:
                    raise UploadRefused("choose an update file (.cbx) first")
                # the token comes first in the page's form: checked before any file byte is kept
                check_token(fields.get("csrf_token", b"").decode("utf-8", "replace") or None)
        elif isinstance(event, Data):
            if in_file:
                if event.data:
                    yield event.data
            elif current is not None and current in fields:
                fields[current] += event.data
                if len(fields[current]) > FIELD_BYTES:
                    raise UploadRefused("the form has a field that is far too long")
    if not seen_file:
        check_token(fields.get("csrf_token", b"").decode("utf-8", "replace") or None)
        raise UploadRefused("choose an update file (.cbx) first")
