"""A virtual speaker for `circlebox simulate`: lays each sound onto a timeline in virtual time.

It has no clock of its own: it is given the simulation's clock (a callable returning virtual
seconds since the session started) and reads it on every call, so the engine's commands need
no extra arguments. poll(now) uses the `now` it is given. write_wav() then holds exactly what a
real speaker would have played: the sounds where they played, scaled by the volume, silence
everywhere else. ends_at() tells the scheduler when to wake up next.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audio.bank import SoundBank
from audio.cache import wav_bytes
from audio.speaker import clamp_volume
from device.fsutil import atomic_write_bytes


@dataclass
class _Playing:
    sound_id: str
    start: int  # timeline sample where this segment starts
    offset: int  # sample of the sound that plays at `start`
    volume: float


class TimelineSpeaker:
    """Speaker protocol on a virtual timeline; `clock()` gives the current virtual time (s)."""

    def __init__(self, sample_rate: int = 22050, clock: Callable[[], float] | None = None):
        self.sample_rate = sample_rate
        self._clock = clock or (lambda: 0.0)
        self._sounds: dict[str, np.ndarray] = {}
        self._segments: list[tuple[int, np.ndarray, float]] = []  # (start, samples, volume)
        self._current: _Playing | None = None
        self._paused: tuple[str, int] | None = None  # (sound id, offset) while paused
        self._volume = 1.0
        self._finished: deque[str] = deque()

    # -- helpers ------------------------------------------------------------------------

    def _now(self, now: float | None = None) -> int:
        return round((self._clock() if now is None else now) * self.sample_rate)

    def _length(self, sound_id: str) -> int:
        return int(self._sounds[sound_id].size)

    def _settle(self, at: int) -> None:
        """If the current sound has played to its end by `at`, commit it and note the finish."""
        cur = self._current
        if cur is not None and cur.start + self._length(cur.sound_id) - cur.offset <= at:
            self._commit(cur, at)
            self._finished.append(cur.sound_id)
            self._current = None

    def _commit(self, cur: _Playing, at: int) -> int:
        """Record what `cur` played up to timeline sample `at`; return the sound offset reached."""
        samples = self._sounds[cur.sound_id]
        end = min(samples.size, cur.offset + max(0, at - cur.start))
        if end > cur.offset:
            self._segments.append((cur.start, samples[cur.offset : end], cur.volume))
        return end

    # -- the Speaker protocol ------------------------------------------------------------

    def load(self, bank: SoundBank) -> None:
        if bank.sample_rate != self.sample_rate:
            raise ValueError(f"sounds at {bank.sample_rate} Hz, speaker at {self.sample_rate} Hz")
        self._sounds = {sid: np.frombuffer(bank.pcm(sid), dtype="<i2") for sid in bank.ids()}

    def play(self, sound_id: str) -> None:
        if sound_id not in self._sounds:
            raise KeyError(f"no sound '{sound_id}' loaded in the speaker")
        at = self._now()
        self.stop()
        self._current = _Playing(sound_id, at, 0, self._volume)

    def stop(self) -> None:
        at = self._now()
        self._settle(at)
        if self._current is not None:
            self._commit(self._current, at)
        self._current = None
        self._paused = None

    def pause(self) -> None:
        at = self._now()
        self._settle(at)
        if self._current is not None:
            self._paused = (self._current.sound_id, self._commit(self._current, at))
            self._current = None

    def resume(self) -> None:
        if self._paused is not None:
            sound_id, offset = self._paused
            self._paused = None
            self._current = _Playing(sound_id, self._now(), offset, self._volume)

    def set_volume(self, level: float) -> None:
        self._volume = clamp_volume(level)
        at = self._now()
        self._settle(at)
        if self._current is not None:  # the rest of the sound plays at the new volume
            offset = self._commit(self._current, at)
            self._current = _Playing(self._current.sound_id, at, offset, self._volume)

    def poll(self, now: float) -> str | None:
        self._settle(self._now(now))
        return self._finished.popleft() if self._finished else None

    def close(self) -> None:
        pass

    # -- for the simulation --------------------------------------------------------------

    @property
    def volume(self) -> float:
        return self._volume

    def ends_at(self) -> float | None:
        """Virtual time at which the current sound will end (None if nothing is playing)."""
        cur = self._current
        if cur is None:
            return None
        return (cur.start + self._length(cur.sound_id) - cur.offset) / self.sample_rate

    def render(self, until: float) -> np.ndarray:
        """Everything played from t=0 to `until`, as int16 samples."""
        total = round(until * self.sample_rate)
        out = np.zeros(total, dtype=np.float64)
        segments = list(self._segments)
        cur = self._current
        if cur is not None:
            samples = self._sounds[cur.sound_id]
            end = min(samples.size, cur.offset + max(0, total - cur.start))
            segments.append((cur.start, samples[cur.offset : end], cur.volume))
        for start, samples, volume in segments:
            n = min(samples.size, total - start)
            if n > 0:
                out[start : start + n] = samples[:n] * volume
        return np.clip(np.round(out), -32768, 32767).astype(np.int16)

    def write_wav(self, path: Path, until: float) -> None:
        atomic_write_bytes(Path(path), wav_bytes(self.render(until), self.sample_rate))
