"""Shared test set-up: no real sound card, no GPIO, no network, ever."""

from __future__ import annotations

import os

# pygame must never open a real device in tests: SDL's disk driver writes what was played.
os.environ.setdefault("SDL_AUDIODRIVER", "disk")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")
