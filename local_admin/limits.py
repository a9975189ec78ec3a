"""How many body bytes a request may send, by route and by whether it is logged in.

One table for both places that enforce it: the app (`request.max_content_length`, set before
the login guard, CSRF or any form parsing) and the server front (`local_admin.serving`), which
checks it from the headers before reading a byte of the body. A visitor who is not logged in
can only send the small login and setup forms; large bodies are for a logged-in admin, and
only on the routes that take files.
"""

from __future__ import annotations

from flask_babel import gettext as _

from device.update.inbox import MAX_UPLOAD

KIB = 1024
MIB = 1024 * KIB

VISITOR_BYTES = 64 * KIB  # the login and setup forms (a password is at most 200 characters)
FORM_BYTES = 2 * MIB  # any page's form for a logged-in admin (the editor sends a whole circle)
RECORDING_BYTES = 16 * MIB  # the editor's forms, which carry recordings (15 minutes of MP3)
BUNDLE_ENDPOINT = "system.upload_bundle"

# Routes that take files; every other route gets FORM_BYTES once logged in.
FILE_ROUTES: dict[str, int] = {
    "circles.new": RECORDING_BYTES,
    "circles.edit": RECORDING_BYTES,
    "studio.take": RECORDING_BYTES,
    "box_messages.take": RECORDING_BYTES,
    BUNDLE_ENDPOINT: MAX_UPLOAD,  # voice bundles are hundreds of MB: streamed to the inbox
}


def body_limit(endpoint: str | None, logged_in: bool) -> int:
    """The most body bytes this request may send."""
    if not logged_in:
        return VISITOR_BYTES
    return FILE_ROUTES.get(endpoint or "", FORM_BYTES)


def too_big_message(limit: int) -> str:
    """For the person whose upload or form was refused."""
    size = f"{limit // MIB} MB" if limit >= MIB else f"{limit // KIB} KB"
    return _("What was sent is too big for this page (the limit is %(size)s). Nothing was saved.", size=size)
