"""The one exception of the updater: a refusal with a result code and a precise detail."""

from __future__ import annotations

from device.update import messages


class Refusal(Exception):
    """The bundle is not installed: `code` is what the box says, `detail` says exactly why."""

    def __init__(self, code: str, detail: str, kind: str | None = None, version: int | None = None):
        super().__init__(f"{code} {messages.text(code, version='?')} {detail}")
        self.code, self.detail, self.kind, self.version = code, detail, kind, version
