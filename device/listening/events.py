"""Frame format, the events the listener emits, and the microphone protocol.

Kept free of heavy imports: the session engine imports these types without loading numpy,
webrtcvad or vosk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

SAMPLE_RATE = 16000  # Hz, mono
FRAME_S = 0.03  # one frame is 30 ms of audio
FRAME_SAMPLES = 480  # SAMPLE_RATE * FRAME_S
FRAME_BYTES = 960  # S16LE: two bytes a sample


@dataclass(frozen=True)
class SpeechStarted:
    """Someone started speaking. `t` is back-dated to the first speech frame (audio seconds)."""

    t: float


@dataclass(frozen=True)
class SpeechEnded:
    """Speech stopped. `t` is the end of the last speech frame; it is emitted one hangover later."""

    t: float
    duration_s: float


@dataclass(frozen=True)
class MaybeSpeech:
    """Between utterances, after an end of speech, the listener heard something it is not sure
    is silence for a while (`MAYBE_S` within `MAYBE_WINDOW_S`): a soft voice under the room's
    noise, most often the same speaker going on, or the next room. Not a start of speech (the
    start rule did not fire), but a decision that needs silence waits: `MaybeSpeechEnded` or
    `SpeechStarted` follows. `t`: its first unsure frame."""

    t: float


@dataclass(frozen=True)
class MaybeSpeechEnded:
    """Sure silence again after `MaybeSpeech`: the silence counts from `t` (its first frame)."""

    t: float


@dataclass(frozen=True)
class CommandHeard:
    """A configured command phrase was heard, as a whole utterance, above the confidence floor."""

    t: float
    phrase: str
    action: str
    confidence: float


ListenEvent = SpeechStarted | SpeechEnded | MaybeSpeech | MaybeSpeechEnded | CommandHeard


class MicError(RuntimeError):
    """The microphone could not be opened, or failed while reading."""


class MicSource(Protocol):
    def read_frame(self) -> bytes | None:
        """One 30 ms frame (960 bytes, 16 kHz mono S16LE); None at the end of a file."""
        ...

    def close(self) -> None: ...
