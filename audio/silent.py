"""A speaker for a box whose sound card is missing: sounds "play" for their real length.

The circle keeps its pace (and the admin page shows the fault) instead of racing through
instructions nobody can hear or stopping dead.
"""

from __future__ import annotations

from collections.abc import Callable

from audio.bank import SoundBank


class SilentSpeaker:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._bank: SoundBank | None = None
        self._current: str | None = None
        self._ends: float = 0.0
        self._paused_left: float | None = None
        self.volume = 1.0

    def load(self, bank: SoundBank) -> None:
        self._bank = bank

    def play(self, sound_id: str) -> None:
        assert self._bank is not None
        self._current = sound_id
        self._ends = self._clock() + self._bank.duration_s(sound_id)
        self._paused_left = None

    def stop(self) -> None:
        self._current = None
        self._paused_left = None

    def pause(self) -> None:
        if self._current is not None and self._paused_left is None:
            self._paused_left = max(0.0, self._ends - self._clock())

    def resume(self) -> None:
        if self._paused_left is not None:
            self._ends = self._clock() + self._paused_left
            self._paused_left = None

    def set_volume(self, level: float) -> None:
        self.volume = level

    def poll(self, now: float) -> str | None:
        if self._current is not None and self._paused_left is None and now >= self._ends:
            done, self._current = self._current, None
            return done
        return None

    def close(self) -> None:
        self._current = None
