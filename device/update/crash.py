"""Crash injection for the power-cut tests: CIRCLEBOX_UPDATE_CRASH_AT=<step> SIGKILLs the
updater at that step. Harmless in production (the variable is never set there)."""

from __future__ import annotations

import os
import signal

ENV = "CIRCLEBOX_UPDATE_CRASH_AT"


def crashpoint(step: str) -> None:
    if os.environ.get(ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)
