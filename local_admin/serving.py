"""The admin page's server: waitress with limits that hold before anyone logs in.

Waitress reads a request's whole body (into memory, then a temporary file) before the app
sees it, and serves a fixed number of connections. So the limits that must hold for a
stranger on the hotspot live here, in front of the app:

- Body size by route, decided from the request line, the headers and the session cookie
  before a byte of the body is read (`local_admin.limits.body_limit`, the same table the app
  uses): a visitor who is not logged in can send 64 KB; a larger Content-Length is answered
  413 at once. Bodies bigger than waitress's in-memory buffer go to a temporary file on the
  data partition's upload inbox (bundles) or the usual temporary folder (a logged-in admin's
  recordings), never a stranger's.
- Connections: when every connection is taken and someone new is waiting, the connection
  that has waited longest for its client (a half-sent request or an idle keep-alive) is
  closed to make room, taken from the address that holds the most. A request being served
  is never closed. So slow clients cannot keep a login out, however many they open.
- Time: a request's headers must arrive within `header_s`, its body at `min_body_rate`;
  an idle keep-alive connection closes after `idle_s`.
"""

from __future__ import annotations

import contextlib
import select
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from waitress.adjustments import Adjustments
from waitress.buffers import OverflowableBuffer, TempfileBasedBuffer
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import MultiSocketServer, TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher
from waitress.utilities import RequestEntityTooLarge
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_cookie

from device.update.inbox import inbox_dir
from local_admin.limits import (
    BUNDLE_ENDPOINT,
    FILE_ROUTES,
    FORM_BYTES,
    VISITOR_BYTES,
    body_limit,
    too_big_message,
)
from local_admin.security import logged_in


@dataclass(frozen=True)
class ServeLimits:
    """The server's limits (see the module doc); the defaults are the box's."""

    connections: int = 200  # open connections at once (poll(), so not bound by select's 1024)
    header_s: float = 10.0  # to send the request line and headers
    body_s: float = 30.0  # plus this, plus the body at min_body_rate, to send the body
    min_body_rate: int = 16 * 1024  # bytes a second: a slow phone on the hotspot manages this
    idle_s: float = 60.0  # an idle keep-alive connection
    check_every_s: float = 2.0  # how often deadlines are checked


class Gate:
    """Decides, from what came before the body, how many body bytes a request may send."""

    def __init__(self, app: Flask):
        self.app = app
        self.cookie_name = app.config["SESSION_COOKIE_NAME"]
        self.spool_dir = inbox_dir(app.extensions["circlebox"].data_dir)
        with contextlib.suppress(OSError):  # on the box tmpfiles.d makes it (root's mode)
            self.spool_dir.mkdir(parents=True, exist_ok=True)

    def endpoint(self, method: str, path: str) -> str | None:
        try:
            endpoint, _args = self.app.url_map.bind("localhost").match(path, method=method)
        except HTTPException:
            return None
        return endpoint

    def is_logged_in(self, cookie_header: str) -> bool:
        value = parse_cookie(cookie_header).get(self.cookie_name)
        if not value:
            return False
        serializer = self.app.session_interface.get_signing_serializer(self.app)
        if serializer is None:
            return False
        try:
            session = serializer.loads(
                value, max_age=int(self.app.permanent_session_lifetime.total_seconds())
            )
        except Exception:  # a bad signature, an expired or mangled cookie: not logged in
            return False
        return isinstance(session, dict) and logged_in(session, self.app.extensions["circlebox"].passwords)

    def limit(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, str | None]:
        """(most body bytes, endpoint) for this request."""
        endpoint = self.endpoint(method, path)
        return body_limit(endpoint, self.is_logged_in(headers.get("COOKIE", ""))), endpoint


class _SpoolFile(TempfileBasedBuffer):
    """An unnamed temporary file in `spool_dir` (O_TMPFILE: nothing to list or clean up)."""

    def __init__(self, from_buffer: Any, spool_dir: Path):
        self.spool_dir = spool_dir
        super().__init__(from_buffer)

    def newfile(self):
        return tempfile.TemporaryFile("w+b", dir=self.spool_dir)


class _SpooledBuffer(OverflowableBuffer):
    """Waitress's body buffer, overflowing into `spool_dir` (the data partition) not /tmp."""

    def __init__(self, overflow: int, spool_dir: Path):
        super().__init__(overflow)
        self.spool_dir = spool_dir

    def _set_large_buffer(self):
        oldbuf = self.buf
        self.buf = _SpoolFile(oldbuf, self.spool_dir)
        if hasattr(oldbuf, "close"):
            oldbuf.close()
        self.overflowed = True


class _RequestAdjustments:
    """The server's adjustments with this one request's body limit (waitress checks
    `max_request_body_size` right after the headers, and while a chunked body arrives)."""

    def __init__(self, adj: Adjustments, max_body: int):
        self._adj = adj
        self.max_request_body_size = max_body + 1  # waitress refuses at >=

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adj, name)


class _GatedParser(HTTPRequestParser):
    def __init__(self, adj: Adjustments, gate: Gate):
        super().__init__(adj)
        self.gate = gate
        self.started = time.monotonic()
        self.body_limit = 0

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        self.body_limit, endpoint = self.gate.limit(self.command, self.path, self.headers)
        self.adj = _RequestAdjustments(self.adj, self.body_limit)
        receiver = self.body_rcv
        if receiver is not None and endpoint == BUNDLE_ENDPOINT and self.gate.spool_dir.is_dir():
            receiver.buf = _SpooledBuffer(self.adj.inbuf_overflow, self.gate.spool_dir)

    def received(self, data: bytes) -> int:
        consumed = super().received(data)
        if isinstance(self.error, RequestEntityTooLarge):
            self.error = RequestEntityTooLarge(too_big_message(self.body_limit))
        return consumed

    def deadline(self, limits: ServeLimits) -> float:
        if not self.headers_finished:
            return self.started + limits.header_s
        return self.started + limits.header_s + limits.body_s + self.content_length / limits.min_body_rate


class _GatedChannel(HTTPChannel):
    def parser_class(self, adj: Adjustments) -> _GatedParser:  # waitress calls parser_class(adj)
        return _GatedParser(adj, self.server.gate)

    def waiting_on_client(self) -> bool:
        """Nothing of ours is running or unsent: we only wait for the client to send more."""
        return not self.requests and not self.total_outbufs_len and not self.will_close


class AdminServer(TcpWSGIServer):
    """Waitress's TCP server with the connection and time limits of the module doc."""

    channel_class = _GatedChannel

    def __init__(self, *args: Any, gate: Gate, limits: ServeLimits, **kwargs: Any):
        self.gate = gate
        self.limits = limits
        super().__init__(*args, **kwargs)

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # idle keep-alive connections (channel_timeout)
        clock = time.monotonic()
        for channel in list(self.active_channels.values()):
            request = channel.request
            if isinstance(request, _GatedParser) and not channel.requests and clock > request.deadline(self.limits):
                channel.will_close = True

    def readable(self) -> bool:
        now = time.time()
        if now >= self.next_channel_cleanup:
            self.next_channel_cleanup = now + self.adj.cleanup_interval
            self.maintenance(now)
        if not self.accepting:
            return False
        open_now = [c for c in self.active_channels.values() if not c.will_close]
        if len(open_now) < self.limits.connections:
            return True
        if not self._someone_waiting():
            return False
        victim = self._victim(open_now)
        if victim is None:
            return False  # every connection is being served: the newcomer waits a moment
        victim.will_close = True
        return True

    def _someone_waiting(self) -> bool:
        try:
            ready, _w, _x = select.select([self.socket], [], [], 0)
        except (OSError, ValueError):
            return False
        return bool(ready)

    @staticmethod
    def _victim(channels: list) -> Any:
        """The longest-waiting connection of the address that holds the most."""
        idle = [c for c in channels if isinstance(c, _GatedChannel) and c.waiting_on_client()]
        if not idle:
            return None
        per_address = Counter(_address(c) for c in idle)
        busiest = max(per_address.values())
        candidates = [c for c in idle if per_address[_address(c)] == busiest]
        return min(candidates, key=lambda c: c.last_activity)


def _address(channel: Any) -> str:
    addr = channel.addr
    return str(addr[0]) if isinstance(addr, tuple) else str(addr)


def make_server(
    app: Flask, host: str, port: int, *, threads: int = 4, limits: ServeLimits | None = None
):
    """The admin page's server on host:port (one socket per address the host resolves to)."""
    limits = limits or ServeLimits()
    adj = Adjustments(
        host=host,
        port=port,
        threads=max(1, threads),
        ident="circlebox",
        clear_untrusted_proxy_headers=True,
        connection_limit=limits.connections,
        channel_timeout=int(limits.idle_s),
        cleanup_interval=int(limits.check_every_s),
        asyncore_use_poll=True,
        max_request_body_size=max_body_anywhere(),
    )
    gate = Gate(app)
    socket_map: dict = {}
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    servers = [
        AdminServer(app, socket_map, dispatcher=dispatcher, adj=adj, sockinfo=sockinfo, gate=gate, limits=limits)
        for sockinfo in adj.listen
    ]
    if len(servers) == 1:
        return servers[0]
    listen = [(s.effective_host, s.effective_port) for s in servers]
    return MultiSocketServer(socket_map, adj, listen, dispatcher)


def max_body_anywhere() -> int:
    """Waitress's own ceiling; each request gets its route's limit (`_GatedParser`)."""
    return max(VISITOR_BYTES, FORM_BYTES, *FILE_ROUTES.values())
