"""The admin page through the VM's forwarded port, as a phone's browser uses its forms
(cookies, the form's CSRF token), with the standard library only."""

from __future__ import annotations

import http.cookiejar
import re
import time
import urllib.error
import urllib.parse
import urllib.request

CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


class AdminPage:
    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path: str) -> tuple[int, str, str]:
        """Status, final URL (after redirects) and body."""
        try:
            with self.opener.open(self.base + path, timeout=60) as r:
                return r.status, r.geturl(), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.geturl(), e.read().decode()

    def post_form(self, path: str, fields: dict[str, str], token_from: str | None = None) -> tuple[int, str, str]:
        """Submit a form with the CSRF token of the page it is on (`token_from`, default `path`)."""
        _, _, page = self.get(token_from or path)
        token = CSRF.search(page)
        data = dict(fields)
        if token:
            data["csrf_token"] = token[1]
        body = urllib.parse.urlencode(data).encode()
        try:
            with self.opener.open(self.base + path, data=body, timeout=120) as r:
                return r.status, r.geturl(), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.geturl(), e.read().decode()

    def wait_until_up(self, timeout: float = 600.0) -> tuple[int, str, str]:
        end = time.monotonic() + timeout
        while True:
            try:
                return self.get("/")
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                if time.monotonic() > end:
                    raise
                time.sleep(2)
