"""Errors whose message is the whole story for the person at the console."""


class UserFacingError(Exception):
    """Printed as `circlebox: <message>` with exit code 2; no traceback."""
