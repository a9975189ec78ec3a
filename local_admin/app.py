"""`local_admin.app`: the WSGI app factory, for `circlebox demo` and WSGI servers."""

from local_admin import create_app

__all__ = ["create_app"]
