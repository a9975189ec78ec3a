"""The audio-out seam: what the runtime asks of a speaker, and the pygame one for the box.

One output stream is opened at start-up and kept open until close(): SDL feeds it silence
between sounds, so an I2S amplifier (MAX98357A) never pops and the first syllable is never
clipped by a waking sink. Sounds are preloaded from the SoundBank, so play() is a pointer swap.
The virtual speaker for `circlebox simulate` is audio.timeline.TimelineSpeaker.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any, Protocol

from audio.bank import SoundBank


class Speaker(Protocol):
    def load(self, bank: SoundBank) -> None: ...  # preload everything into the output library
    def play(self, sound_id: str) -> None: ...  # stop what plays, start this from the beginning
    def stop(self) -> None: ...
    def pause(self) -> None: ...  # keep position
    def resume(self) -> None: ...
    def set_volume(self, level: float) -> None: ...  # 0..1, applied to everything that plays
    def poll(self, now: float) -> str | None: ...  # id of a sound that played to its end, once
    def close(self) -> None: ...


class NoAudioDevice(RuntimeError):
    """No audio output could be opened (no sound card, or the driver is missing)."""


def clamp_volume(level: float) -> float:
    return min(1.0, max(0.0, float(level)))


def _import_pygame_quickly() -> Any:
    """pygame's pkgdata imports pkg_resources, if it can, only to find pygame's own fonts.

    That costs about half a second here (seconds on a Pi) at every start-up and the box uses
    no fonts; pygame falls back cleanly when the import fails, so we make it fail, just once.
    """
    import sys

    if "pygame" in sys.modules or "pkg_resources" in sys.modules:
        import pygame

        return pygame
    sys.modules["pkg_resources"] = None  # type: ignore[assignment]
    try:
        import pygame
    finally:
        del sys.modules["pkg_resources"]
    return pygame


class PygameSpeaker:
    """pygame's mixer with one dedicated channel for prompts and bells."""

    def __init__(
        self, sample_rate: int = 22050, buffer_samples: int = 512, driver: str | None = None
    ):
        if driver:
            os.environ["SDL_AUDIODRIVER"] = driver
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        pygame = _import_pygame_quickly()

        self._pygame = pygame
        self.sample_rate = sample_rate
        # allowedchanges=0: SDL converts for the device if it must, and our buffers stay
        # exactly 16-bit mono at sample_rate (Sound(buffer=...) is raw frames in that format).
        pygame.mixer.pre_init(sample_rate, -16, 1, buffer_samples, allowedchanges=0)
        from audio.library_noise import without_library_noise

        try:
            with without_library_noise():  # SDL's disk-driver banner, ALSA's own error printing
                pygame.mixer.init()
        except pygame.error as exc:
            which = os.environ.get("SDL_AUDIODRIVER") or "the default driver"
            raise NoAudioDevice(f"no audio output could be opened with {which}: {exc}") from exc
        got = pygame.mixer.get_init()
        if not got or tuple(got) != (sample_rate, -16, 1):
            pygame.mixer.quit()
            raise NoAudioDevice(f"audio output opened as {got}, not ({sample_rate}, -16, 1)")
        pygame.mixer.set_reserved(1)  # nothing else may grab our channel
        self._channel = pygame.mixer.Channel(0)
        self._sounds: dict[str, Any] = {}
        self._volume = 1.0
        self._current: str | None = None
        self._paused = False
        self._finished: deque[str] = deque()

    def load(self, bank: SoundBank) -> None:
        if bank.sample_rate != self.sample_rate:
            raise ValueError(
                f"sounds are at {bank.sample_rate} Hz, the output is open at {self.sample_rate} Hz"
            )
        make = self._pygame.mixer.Sound
        self._sounds = {sound_id: make(buffer=bank.pcm(sound_id)) for sound_id in bank.ids()}

    def _note_if_finished(self) -> None:
        if self._current is not None and not self._paused and not self._channel.get_busy():
            self._finished.append(self._current)
            self._current = None

    def play(self, sound_id: str) -> None:
        try:
            sound = self._sounds[sound_id]
        except KeyError:
            raise KeyError(f"no sound '{sound_id}' loaded in the speaker") from None
        self._note_if_finished()
        self._channel.play(sound)
        self._channel.set_volume(self._volume)  # play() may reset a channel's volume
        self._current = sound_id
        self._paused = False

    def stop(self) -> None:
        self._note_if_finished()
        self._channel.stop()
        self._current = None
        self._paused = False

    def pause(self) -> None:
        if self._current is not None and not self._paused:
            self._channel.pause()
            self._paused = True

    def resume(self) -> None:
        if self._paused:
            self._channel.unpause()
            self._paused = False

    def set_volume(self, level: float) -> None:
        self._volume = clamp_volume(level)
        self._channel.set_volume(self._volume)

    @property
    def volume(self) -> float:
        return self._volume

    def poll(self, now: float) -> str | None:
        self._note_if_finished()
        return self._finished.popleft() if self._finished else None

    def close(self) -> None:
        if self._pygame.mixer.get_init():
            self._channel.stop()
            self._pygame.mixer.quit()
        self._sounds = {}
