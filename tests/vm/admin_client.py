"""The admin page through the VM's forwarded port, as a phone's browser uses its forms
(cookies, the form's CSRF token), with the standard library only."""

from __future__ import annotations

import http.cookiejar
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser

CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


class _FormReader(HTMLParser):
    """The fields a browser would send for the form with id `form_id`: inputs (checkboxes only
    when checked), each select's selected (or first) option, textareas' text."""

    def __init__(self, form_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = False
        self.fields: dict[str, str] = {}
        self._select: str | None = None
        self._option: tuple[str | None, bool] | None = None  # its value= (None: its text), selected
        self._text = ""
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        if not self.inside:
            return
        if tag == "input" and "name" in a and (a.get("type") not in ("checkbox", "radio") or "checked" in a):
            self.fields[a["name"]] = a.get("value", "on" if a.get("type") in ("checkbox", "radio") else "")
        elif tag == "select" and "name" in a:
            self._select = a["name"]
        elif tag == "option" and self._select:
            self._end_option()
            self._option, self._text = (a.get("value"), "selected" in a), ""
        elif tag == "textarea" and "name" in a:
            self._textarea = a["name"]
            self.fields[a["name"]] = ""

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.fields[self._textarea] += data
        elif self._option:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag in ("option", "select"):
            self._end_option()
            if tag == "select":
                self._select = None
        elif tag == "textarea":
            self._textarea = None

    def _end_option(self) -> None:
        if self._option and self._select:
            value, selected = self._option
            if selected or self._select not in self.fields:
                self.fields[self._select] = value if value is not None else self._text.strip()
        self._option = None


def form_fields(page: str, form_id: str) -> dict[str, str]:
    reader = _FormReader(form_id)
    reader.feed(page)
    return reader.fields


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

    def submit(self, path: str, form_id: str, changes: dict[str, str]) -> tuple[int, str, str]:
        """Change some fields of one form on the page at `path` and send it, the rest as shown
        (as a technician does in the browser)."""
        _, _, page = self.get(path)
        fields = form_fields(page, form_id)
        if not fields:
            raise AssertionError(f"no form #{form_id} on {path}: {page[:300]}")
        body = urllib.parse.urlencode({**fields, **changes}).encode()
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
