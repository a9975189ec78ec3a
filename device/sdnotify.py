"""systemd's notify protocol (READY, WATCHDOG, STATUS): one datagram to $NOTIFY_SOCKET.

Small enough to write here rather than depend on an unmaintained package. Does nothing when
not started by systemd.
"""

from __future__ import annotations

import os
import socket


def notify(message: str, environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode("utf-8"))
    return True


def watchdog_interval_s(environ: dict[str, str] | None = None) -> float | None:
    """Half of systemd's WatchdogSec (WATCHDOG_USEC), the usual safe ping interval."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    if not usec or (env.get("WATCHDOG_PID") and env["WATCHDOG_PID"] != str(os.getpid())):
        return None
    return int(usec) / 2_000_000
