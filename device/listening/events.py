"""Frame format, the events the listener emits, and the microphone protocol.

Kept free of heavy imports: the session engine imports these types without loading numpy,
webrtcvad or vosk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

SAMPLE_RATE = 16000  # Hz, mono
FRAME_S = 0.03  # one frame is 30 ms of audio
FRAME_SAMPLES = 480  # SAMPLE_RATE * FRAME_S
FRAME_BYTES = 960  # S16LE: two bytes a sample

# How clearly the box hears a voice (issue 13). A voice's level is how far the loud part of it
# (the VOICE_PERCENTILE of its sure-speech frames) stood above the room's noise; it is measured
# once there is VOICE_MEASURE_MIN_S of sure speech (a cough or a knock says nothing of a
# voice). In rooms of real people from -40 to -31 dBFS, a box ending every turn on silence cut
# into none of the 602 turns whose voice stood CLEAR_VOICE_DB or more over the room, and into
# 15 of the 518 below it (four sets of rooms; on two sets built later, 2 of the 305 turns at or
# over it and 2 of the 255 below).
# Below it the box cannot be sure a silence is not a soft voice under the noise, so it leaves
# that turn's end to the facilitator (`heard_clearly`; bench/bench_listening_voice_check.py,
# BENCHMARKS.md). The admin page's voice check draws the same line for placing the box.
CLEAR_VOICE_DB = 15.0
VOICE_MEASURE_MIN_S = 0.5
VOICE_PERCENTILE = 98.0
VOICE_BIN_DB = 0.5  # levels are kept in bins this wide, from VOICE_LOW_DB to VOICE_HIGH_DB
VOICE_LOW_DB, VOICE_HIGH_DB = -10.0, 50.0
VOICE_BINS = int((VOICE_HIGH_DB - VOICE_LOW_DB) / VOICE_BIN_DB) + 1


def voice_bin(over_floor_db: float) -> int:
    """The bin of a frame `over_floor_db` above the room's noise (clipped to the range)."""
    clipped = min(VOICE_HIGH_DB, max(VOICE_LOW_DB, over_floor_db))
    return int((clipped - VOICE_LOW_DB) / VOICE_BIN_DB)


@dataclass(frozen=True, repr=False)
class VoiceLevels:
    """How far the sure-speech frames of an utterance, or of a whole turn (add them), stood
    above the room's noise: a count of frames per VOICE_BIN_DB bin. Levels only, in memory:
    nothing of what was said or of who said it."""

    counts: tuple[int, ...] = ()

    @classmethod
    def steady(cls, over_floor_db: float, seconds: float) -> VoiceLevels:
        """`seconds` of sure speech all at one level (tests, simulations)."""
        counts = [0] * (voice_bin(over_floor_db) + 1)
        counts[-1] = round(seconds / FRAME_S)
        return cls(tuple(counts))

    def __repr__(self) -> str:
        return f"VoiceLevels({self.frames} frames, loud part {self.percentile(VOICE_PERCENTILE)} dB)"

    def __add__(self, other: VoiceLevels) -> VoiceLevels:
        a, b = self.counts, other.counts
        if len(a) < len(b):
            a, b = b, a
        return VoiceLevels(tuple(x + (b[i] if i < len(b) else 0) for i, x in enumerate(a)))

    @property
    def frames(self) -> int:
        return sum(self.counts)

    def percentile(self, p: float) -> float | None:
        """The level (dB over the room) that `p` % of the frames are at or under; None if none."""
        total = self.frames
        if total == 0:
            return None
        rank, seen = math.ceil(p / 100.0 * total), 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                return VOICE_LOW_DB + index * VOICE_BIN_DB
        return VOICE_HIGH_DB

    @property
    def level_db(self) -> float | None:
        """How far the loud part stood above the room (VOICE_PERCENTILE), once there was
        VOICE_MEASURE_MIN_S of sure speech; None before."""
        if self.frames < max(1, round(VOICE_MEASURE_MIN_S / FRAME_S)):
            return None
        return self.percentile(VOICE_PERCENTILE)


def heard_clearly(voice: VoiceLevels) -> bool:
    """Whether the box heard this voice (an utterance's levels, or a turn's added together)
    clearly enough to take a silence after it for the end of what was being said: its loud
    part stood at least CLEAR_VOICE_DB above the room's noise. Too little to measure (only
    short sounds) is not clearly. A turn's utterances are judged together: on five sets of
    rooms that left fewer turns to the facilitator than judging each utterance, and cut into
    none more (bench/bench_listening_replay.py)."""
    level = voice.level_db
    return level is not None and level >= CLEAR_VOICE_DB


@dataclass(frozen=True)
class SpeechStarted:
    """Someone started speaking. `t` is back-dated to the first speech frame (audio seconds)."""

    t: float


@dataclass(frozen=True)
class SpeechEnded:
    """Speech stopped. `t` is where the sure silence began; it is emitted one hangover later.
    `voice`: how far the utterance's sure-speech frames stood above the room's noise."""

    t: float
    duration_s: float
    voice: VoiceLevels

    @property
    def voice_db(self) -> float | None:
        """How far the utterance stood above the room (`VoiceLevels.level_db`)."""
        return self.voice.level_db


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
class UnsureSound:
    """Between utterances, after an end of speech, one frame the listener is not sure is silence
    (the same frames `MaybeSpeech` counts), after `UNSURE_QUIET_S` without one: it may be a
    speaker picking up again, too new to tell. A silence that comes due meanwhile is not taken
    for the end of a turn until `UnsureSoundEnded` (or `UNSURE_WAIT_MAX_S`): the box does not
    end a turn in the middle of a sound it is still hearing. `t`: that frame."""

    t: float


@dataclass(frozen=True)
class UnsureSoundEnded:
    """`UNSURE_QUIET_S` without a frame the listener is not sure is silence; `t`: now."""

    t: float


@dataclass(frozen=True)
class RoomNoiseChanged:
    """The room's steady noise crossed `too_noisy_db`, either way (`too_noisy` says which).
    Above it a soft voice can go wholly unheard, so a turn nobody was heard in is not passed
    by the box but left to the facilitator (issue 13: at -28 dBFS the box "passed" two turns
    whose speakers it never heard, while they spoke)."""

    t: float
    too_noisy: bool


# How long the listener must hear only sure silence before an unsure sound is over, and how
# much longer than its silence the engine waits for that at most (issue 13: two of the three
# cut-ins left in rooms of real people were a speaker picking up after a thinking pause whom
# the detector had begun to half hear when the box's 3 s came due; BENCHMARKS.md).
UNSURE_QUIET_S = 0.45
UNSURE_WAIT_MAX_S = 0.6


@dataclass(frozen=True)
class CommandHeard:
    """A configured command phrase was heard, as a whole utterance, above the confidence floor."""

    t: float
    phrase: str
    action: str
    confidence: float


ListenEvent = (SpeechStarted | SpeechEnded | MaybeSpeech | MaybeSpeechEnded | UnsureSound
               | UnsureSoundEnded | RoomNoiseChanged | CommandHeard)


class MicError(RuntimeError):
    """The microphone could not be opened, or failed while reading."""


class MicSource(Protocol):
    def read_frame(self) -> bytes | None:
        """One 30 ms frame (960 bytes, 16 kHz mono S16LE); None at the end of a file."""
        ...

    def close(self) -> None: ...
