"""Frames in, events out: a speech detector with hysteresis, an adaptive noise floor, a
conservative end of speech, self-mute.

Time is counted in frames (30 ms each), never read from a clock, so a WAV replays the same
decisions every run. A frame is looked at once and dropped; the only audio kept is a ring of
about half a second before a speech start, and only when spoken commands are on (vosk needs
the first syllable). Nothing is written anywhere.

The end rule, because being cut off is the worst thing the box can do to a person:

- Hysteresis. Speech is entered when the detector's probability reaches `speech_enter_prob`
  in most of a `speech_start_s` window (and the frame stands out of the room's noise); it is
  left only after frames below `speech_exit_prob`. A frame in between is "not sure", and
  counts as speech for staying in it. The same start rule holds for a speaker picking up
  after a pause: a knock or a few syllables from the next room do not re-open speech.
- A silence, once begun, is broken only by `BREAK_S` of not-silence within `BREAK_WINDOW_S`
  (a person speaking on, even softly), not by one or two frames of "maybe" (a cup, a chair).
- No back-dating. `SpeechEnded.t` is where the run of surely-silent frames began, never the
  last frame that was surely speech: a soft last syllable the detector half-heard is not
  turned into extra silence (that made a 2.2 s thinking pause look like 3 s).
- A margin that grows with the noise: 0 in a quiet room (floor at or below -50 dBFS), up to
  `end_margin_s` at `too_noisy_db`, and `too_noisy_margin_s` in a louder room, where the box
  says it is too noisy to be sure (`too_noisy`) and waits longer rather than cut in.
- A margin for soft voices: the closer an utterance is to the room's noise floor, the longer
  the box waits before it takes a quiet moment for its end (`soft_margin_s` when the loud
  part of it stands at most SOFT_SNR_DB over the floor, nothing from LOUD_SNR_DB up): some of
  a soft speaker's words are under the noise and go unheard, a clear speaker's are not. Judged
  per utterance, in memory, forgotten at its end: nothing about a person is kept.
- A frame LOUD_OVER_FLOOR_DB above the floor is never sure silence: the detector hears some
  real voices only as "probably not" even far above a quiet room.
- A half-heard voice after an end: `MaybeSpeech` when, after speech has ended, MAYBE_S of
  "not sure" frames (each MAYBE_OVER_FLOOR_DB over the floor) come within MAYBE_WINDOW_S,
  and `MaybeSpeechEnded` dated at the first of a hangover of frames without one. Most often
  the same speaker going on under the noise: the engine holds her turn open meanwhile. Not a
  start of speech (no command is fed), but a turn nobody was heard in does not pass
  while it lasts.
- A sound it is still hearing: the same unsure frames one by one, `UnsureSound` at the first
  and `UnsureSoundEnded` after UNSURE_QUIET_S without one. A silence that comes due meanwhile
  waits for the end (the engine, UNSURE_WAIT_MAX_S at most): a speaker picking up after a
  thinking pause is heard first like that.
- The noise floor learns only from frames the detector is sure are not speech, so a quiet
  speaker who talks on without a dip is never taken for the room's noise.

How clearly a voice was heard: each `SpeechEnded` carries how far its utterance's sure-speech
frames stood out of the room (`voice`, levels only); the engine adds up a turn's and leaves
the end of a turn it did not hear clearly to the facilitator (`events.heard_clearly`). The last of them
(`last_voice_db`) stays on the admin page's meter until the next one replaces it, for placing
the box. One number about a voice, never who spoke; nothing is written by the listener.
"""

from __future__ import annotations

import math
from collections import deque
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np

from device.listening.detectors import SpeechDetector, WebrtcDetector, build_detector
from device.listening.events import (
    CLEAR_VOICE_DB,
    FRAME_BYTES,
    FRAME_S,
    UNSURE_QUIET_S,
    VOICE_BIN_DB,
    VOICE_BINS,
    VOICE_LOW_DB,
    VOICE_PERCENTILE,
    CommandHeard,
    ListenEvent,
    MaybeSpeech,
    MaybeSpeechEnded,
    RoomNoiseChanged,
    SpeechEnded,
    SpeechStarted,
    UnsureSound,
    UnsureSoundEnded,
    VoiceLevels,
    voice_bin,
)
from device.listening.settings import ListeningSettings

if TYPE_CHECKING:
    from device.listening.commands import CommandRecognizer

_SILENT_DB = -100.0
_WARMUP_S = 1.0  # the floor rises quickly during the first second it hears
_WARMUP_RISE_S = 0.2
QUIET_ROOM_DB = -50.0  # at or below this floor the end of speech needs no extra margin
# Above this floor a soft voice can go unheard and be cut off (issue 13: none of 280 turns at
# -46 dBFS, 15 of 1120 from -40 to -31 dBFS in rooms of real people; BENCHMARKS.md): the
# admin page's meter says so, and how to place the box.
LOUD_ROOM_DB = -43.0

# A silence that has begun is broken only by this much not-silence within the last
# BREAK_WINDOW_S: a knock, a cup or one syllable from the next room (a frame or two of "maybe
# a voice") does not start the silence again; a person speaking on, even softly, does.
BREAK_WINDOW_S = 0.3
BREAK_S = 0.15
_DIGITAL_SILENCE_DB = -80.0  # frames this quiet are not given to the detector (CPU)
# A soft voice against the room (issue 13): how far an utterance stands out of the noise floor.
# At LOUD_SNR_DB or more it needs no extra wait; at SOFT_SNR_DB or less the whole
# `soft_margin_s`: some of its words are near or under the floor and may go unheard. Chosen
# by bench/bench_listening_variants.py (BENCHMARKS.md): 7 cut-ins in 420 turns became 5,
# p95 delay still at most +0.5 s through the box; a wider band (5-15 dB), a lower percentile
# or the last second only delayed most turns in a -34 dBFS room.
LOUD_SNR_DB = 6.0
SOFT_SNR_DB = 4.0
# A frame this far above the noise floor is never sure silence, whatever the detector says:
# some real voices are heard by Silero only as p 0.1-0.3 even 18 dB above a quiet room.
LOUD_OVER_FLOOR_DB = 10.0
# A half-heard voice between utterances (issue 13): MAYBE_S of frames the detector is not sure
# are silence, each at least MAYBE_OVER_FLOOR_DB above the floor, within MAYBE_WINDOW_S, after
# an end of speech. Shorter or fainter, next-room talk held turns open for seconds (p95 delay
# +2.6 s at -40 dBFS). With these and LOUD_OVER_FLOOR_DB, 21 cut-ins in 1050 turns became 12
# (rooms from seeds 100, 990 and 1990, -46 to -31 dBFS), p95 delay within 0.11 s of before
# (bench/bench_listening_variants.py, BENCHMARKS.md).
MAYBE_S = 0.3
MAYBE_WINDOW_S = 0.9
MAYBE_OVER_FLOOR_DB = 2.0


class RoomNoise(StrEnum):
    """The room's steady noise, for hearing the circle."""

    QUIET = "quiet"  # at or below LOUD_ROOM_DB
    LOUD = "loud"  # a soft voice may go unheard: place the box closer, or pace with buttons
    TOO_NOISY = "too_noisy"  # above `too_noisy_db`: the box waits longer after every turn


def frame_level_db(frame: bytes) -> float:
    """RMS level of a S16 frame in dBFS (a full-scale sine is about -3 dB)."""
    x = np.frombuffer(frame, dtype="<i2").astype(np.float32)
    power = float(np.dot(x, x)) / (len(x) * 32768.0 * 32768.0)
    return 10.0 * math.log10(power) if power > 1e-10 else _SILENT_DB


def _frames(seconds: float) -> int:
    return max(0, round(seconds / FRAME_S))


class NoiseFloor:
    """The room's background level in dB, learnt from frames that are surely not speech.

    An asymmetric average (falls within about a second, rises over several seconds, quickly in
    the first second), and a guard: the lowest level heard over the last few seconds of
    not-speech frames lifts the average to it, so a fan switched on is learnt within
    `noise_window_s`. Frames the detector calls speech never reach either part: a quiet speaker
    who talks without a dip cannot become "the room". With a detector that is fooled by steady
    noise (webrtc) the guard takes every frame, as a fan never dips while speech does.
    """

    BLOCK_FRAMES = 10

    def __init__(self, settings: ListeningSettings, guard_all_frames: bool = False):
        self.value: float | None = None
        self._rise = 1.0 - math.exp(-FRAME_S / settings.noise_rise_s)
        self._fall = 1.0 - math.exp(-FRAME_S / settings.noise_fall_s)
        self._warm_rise = 1.0 - math.exp(-FRAME_S / _WARMUP_RISE_S)
        self._warmup_left = _frames(_WARMUP_S)
        self._guard_all = guard_all_frames
        n_blocks = max(1, math.ceil(settings.noise_window_s / (self.BLOCK_FRAMES * FRAME_S)))
        self._blocks: deque[float] = deque(maxlen=n_blocks)
        self._block_min = math.inf
        self._block_n = 0

    def update(self, level: float, speechy: bool) -> None:
        if self._guard_all or not speechy:
            self._block_min = min(self._block_min, level)
            self._block_n += 1
            if self._block_n == self.BLOCK_FRAMES:
                self._blocks.append(self._block_min)
                self._block_min, self._block_n = math.inf, 0
        if self.value is None:
            if speechy and not self._guard_all:
                return
            self.value = level
            return
        if not speechy:
            rate = self._fall
            if level > self.value:
                rate = self._warm_rise if self._warmup_left > 0 else self._rise
            self.value += rate * (level - self.value)
            if self._warmup_left > 0:
                self._warmup_left -= 1
        if len(self._blocks) == self._blocks.maxlen:
            window_min = min(min(self._blocks), self._block_min)
            if window_min > self.value:
                self.value = window_min


class UtteranceLoudness:
    """How far the current utterance stands out of the room (dB over the noise floor), from its
    sure-speech frames (the bins of `events.VoiceLevels`). Held in memory for one utterance
    only and cleared at its end, when its `levels()` go out with `SpeechEnded`: a property of
    what is being said now, never of a person."""

    def __init__(self) -> None:
        self._counts = np.zeros(VOICE_BINS, dtype=np.int64)

    def clear(self) -> None:
        self._counts[:] = 0

    @property
    def frames(self) -> int:
        """Sure-speech frames heard in this utterance."""
        return int(self._counts.sum())

    def add(self, over_floor_db: float) -> None:
        self._counts[voice_bin(over_floor_db)] += 1

    def snr_db(self) -> float | None:
        """The utterance's level over the floor (VOICE_PERCENTILE), or None before any sure
        speech."""
        total = int(self._counts.sum())
        if total == 0:
            return None
        rank = math.ceil(VOICE_PERCENTILE / 100.0 * total)
        index = int(np.searchsorted(np.cumsum(self._counts), rank))
        return VOICE_LOW_DB + index * VOICE_BIN_DB

    def levels(self) -> VoiceLevels:
        """The utterance so far, as it goes out with `SpeechEnded` (trailing empty bins cut)."""
        nonzero = np.flatnonzero(self._counts)
        last = int(nonzero[-1]) + 1 if len(nonzero) else 0
        return VoiceLevels(tuple(int(c) for c in self._counts[:last]))


def _as_detector(vad: Any, settings: ListeningSettings) -> SpeechDetector:
    """The detector to use: `vad` given by a test or bench (a SpeechDetector, or anything with
    webrtcvad's is_speech), else the one `listening.detector` names."""
    if vad is None:
        return build_detector(settings.detector, settings.vad_aggressiveness,
                              settings.noise_suppression)
    if hasattr(vad, "probability"):
        return vad
    return WebrtcDetector(vad=vad)


class Listener:
    """Frames in, events out; counts audio time in frames, never wall time."""

    def __init__(
        self,
        settings: ListeningSettings,
        vad: Any = None,
        commands: CommandRecognizer | None = None,
        start_t: float = 0.0,
    ):
        self.settings = settings
        self.commands = commands
        self._detector = _as_detector(vad, settings)
        self._binary = isinstance(self._detector, WebrtcDetector)
        self._enter_p = settings.speech_enter_prob
        self._exit_p = settings.speech_exit_prob
        if self._binary:  # webrtc answers 0 or 1: only 1 is speech, only 0 is silence
            self._enter_p, self._exit_p = 1.0, 0.5
        self._start_t = float(start_t)
        self._n = 0
        self._start_frames = max(1, _frames(settings.speech_start_s))
        self._start_needed = max(
            1, math.ceil(settings.speech_start_ratio * self._start_frames - 1e-9)
        )
        self._hangover = max(1, _frames(settings.speech_end_hangover_s))
        self._tail = _frames(settings.self_mute_tail_s)
        # The level gate (a frame must stand `noise_margin_db` out of the room) is for webrtc,
        # which takes a fan for speech (config_sections.WEBRTC_ONLY). Silero tells them apart
        # itself, and the gate would swallow a quiet speaker in a loud room (-36 dBFS speech
        # adds 1 dB to -31 dBFS noise).
        self._margin_db = settings.noise_margin_db if self._binary else -math.inf
        self._min_db = settings.min_speech_db
        self._floor = NoiseFloor(settings, guard_all_frames=self._binary)
        self._window: deque[tuple[int, bool, float]] = deque(maxlen=self._start_frames)
        # Pre-roll ring: audio before a start, kept only for the command recogniser.
        ring = self._start_frames + _frames(settings.preroll_s) if commands is not None else 0
        self._preroll: deque[bytes] = deque(maxlen=ring)
        self._max_cmd_frames = _frames(commands.max_command_s) if commands is not None else 0
        self._preroll_frames = _frames(settings.preroll_s)
        # Non-speech inside a command segment is held back (at most one hangover) and fed only
        # if speech resumes; at the end only `tail_s` of it goes to the recogniser: it turns
        # long stretches of room noise into extra words, which would reject a good command.
        self._cmd_tail = _frames(commands.tail_s) if commands is not None else 0
        self._cmd_pending: list[bytes] = []
        self._mute_left = 0
        self._in_speech = False
        self._seg_start = 0
        self._loudness = UtteranceLoudness()
        self._silence_from: int | None = None  # first frame of the run of sure silence
        # The voice check: the last utterance's level over the room and the frame it ended at.
        # One number, replaced by the next utterance's: nothing about who spoke.
        self._last_voice_db: float | None = None
        self._last_voice_end = 0
        self._cmd_active = False
        # Between utterances (after a first end of speech): "not sure" frames (MAYBE_S within
        # MAYBE_WINDOW_S) are reported as MaybeSpeech, so that the engine holds a decision that
        # needs silence; it is over after one hangover of frames without one.
        self._after_speech = False
        self._maybe = False
        self._maybe_quiet_from: int | None = None
        self._unsure: deque[bool] = deque(maxlen=max(1, _frames(MAYBE_WINDOW_S)))
        self._maybe_frames = max(1, _frames(MAYBE_S))
        # The same frames, one at a time: an unsure sound lasts until UNSURE_QUIET_S of sure
        # silence (UnsureSound / UnsureSoundEnded), so no turn ends in the middle of one.
        self._sound = False
        self._sound_last = 0
        self._sound_quiet = max(1, _frames(UNSURE_QUIET_S))
        # One start rule, also for a speaker picking up after a pause: a shorter one let
        # knocks and next-room voices re-open speech after a turn had ended (bench sweep).
        self._recent: deque[bool] = deque(maxlen=max(1, _frames(BREAK_WINDOW_S)))
        self._break_frames = max(1, _frames(BREAK_S))
        self._level = _SILENT_DB
        self._too_noisy = False  # as last told (RoomNoiseChanged)
        self._prob = 0.0
        self._muted = False
        self._was_muted = False

    # -- live meter for the admin page ------------------------------------------------------
    @property
    def t(self) -> float:
        """Audio time processed so far (seconds)."""
        return self._start_t + self._n * FRAME_S

    @property
    def level_db(self) -> float:
        return self._level

    @property
    def noise_floor_db(self) -> float:
        return self._floor.value if self._floor.value is not None else _SILENT_DB

    @property
    def speech_probability(self) -> float:
        return self._prob

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def muted(self) -> bool:
        return self._muted

    @property
    def commands_enabled(self) -> bool:
        return self.commands is not None

    @property
    def too_noisy(self) -> bool:
        """The room is louder than `too_noisy_db`: the box cannot be sure of silence, so it
        waits longer (`too_noisy_margin_s`) before it takes a quiet moment for a turn's end."""
        return self.noise_floor_db > self.settings.too_noisy_db

    @property
    def room_noise(self) -> RoomNoise:
        """How the room's steady noise stands for hearing the circle (the admin page's meter
        says it in the reader's words)."""
        if self.too_noisy:
            return RoomNoise.TOO_NOISY
        if self.noise_floor_db > LOUD_ROOM_DB:
            return RoomNoise.LOUD
        return RoomNoise.QUIET

    def end_margin_s(self) -> float:
        """Extra silence required before speech is over, for the room's noise now."""
        floor = self.noise_floor_db
        s = self.settings
        if floor > s.too_noisy_db:
            return s.too_noisy_margin_s
        share = (floor - QUIET_ROOM_DB) / max(1e-6, s.too_noisy_db - QUIET_ROOM_DB)
        return s.end_margin_s * min(1.0, max(0.0, share))

    def soft_margin_s(self) -> float:
        """Extra silence required for the utterance in progress: none for a voice well clear of
        the room, up to `soft_margin_s` for one close to it (its soft words may go unheard)."""
        if self.settings.soft_margin_s <= 0:
            return 0.0
        snr = self._loudness.snr_db()
        if snr is None:
            return self.settings.soft_margin_s
        share = (LOUD_SNR_DB - snr) / (LOUD_SNR_DB - SOFT_SNR_DB)
        return self.settings.soft_margin_s * min(1.0, max(0.0, share))

    @property
    def last_voice_db(self) -> float | None:
        """How far the last utterance (of at least VOICE_MEASURE_MIN_S of sure speech) stood
        out of the room's noise, in dB; None before one."""
        return self._last_voice_db

    @property
    def last_voice_age_s(self) -> float | None:
        """Audio time since that utterance ended."""
        if self._last_voice_db is None:
            return None
        return (self._n - self._last_voice_end) * FRAME_S

    def status(self) -> dict[str, Any]:
        """The live meter as the runtime publishes it (admin page): the level now, the room's,
        how the room stands for hearing soft voices, and the voice check (the last voice over
        the room, how long ago, and the level the box hears well)."""
        voice, age = self.last_voice_db, self.last_voice_age_s
        return {"level_db": round(self.level_db, 1), "noise_floor_db": round(self.noise_floor_db, 1),
                "in_speech": self.in_speech, "too_noisy": self.too_noisy,
                "room_noise": self.room_noise.value, "too_noisy_db": self.settings.too_noisy_db,
                "last_voice_db": round(voice, 1) if voice is not None else None,
                "last_voice_age_s": round(age, 1) if age is not None else None,
                "clear_voice_db": CLEAR_VOICE_DB}

    def _time(self, frame_index: int) -> float:
        return self._start_t + frame_index * FRAME_S

    # -- the work ----------------------------------------------------------------------------
    def process(self, frame: bytes, box_playing: bool) -> list[ListenEvent]:
        """Look at one 30 ms frame (960 bytes, 16 kHz mono S16LE); return what happened."""
        if len(frame) != FRAME_BYTES:
            raise ValueError(
                f"a frame is {FRAME_BYTES} bytes (30 ms of 16 kHz mono S16), not {len(frame)}"
            )
        idx = self._n
        self._n += 1
        level = frame_level_db(frame)
        self._level = level
        if box_playing:
            self._mute_left = self._tail
            muted = True
        elif self._mute_left > 0:
            self._mute_left -= 1
            muted = True
        else:
            muted = False
        self._muted = muted
        events: list[ListenEvent] = []
        if muted:
            # The mic hears the box and its echo: no speech can start from these frames, and
            # a speech in progress (the box was started by a button) ends here.
            if self._in_speech:
                events.append(self._end_speech(command=False, end_index=idx))
            if self._maybe:
                events.append(self._end_maybe(idx))
            if self._sound:
                self._sound = False
                events.append(UnsureSoundEnded(t=round(self._time(idx), 6)))
            self._unsure.clear()
            self._window.clear()
            self._preroll.clear()
            self._was_muted = True
            self._prob = 0.0
            return events
        if self._was_muted:  # the detector heard nothing of the box: start it afresh
            self._detector.reset()
            self._was_muted = False

        p = self._detector.probability(frame) if level > _DIGITAL_SILENCE_DB else 0.0
        self._prob = p
        floor = self._floor.value if self._floor.value is not None else _SILENT_DB
        detector_sure = p < self._exit_p
        # the floor learns from what the detector calls silence (a fan switched on is learnt);
        # the end of speech also needs the frame to be no louder than the room's noise allows
        sure_silence = detector_sure and level < floor + LOUD_OVER_FLOOR_DB
        enters = p >= self._enter_p and level >= max(floor + self._margin_db, self._min_db)
        self._floor.update(level, speechy=not detector_sure)
        if self.too_noisy != self._too_noisy:
            self._too_noisy = self.too_noisy
            events.append(RoomNoiseChanged(t=round(self._time(idx), 6), too_noisy=self._too_noisy))
        if self._preroll.maxlen:
            self._preroll.append(frame)

        if not self._in_speech:
            if self._after_speech:
                events.extend(self._follow_unsure(idx, sure_silence, level - floor))
            self._window.append((idx, enters, level - floor))
            if (len(self._window) == self._start_frames
                    and sum(f for _, f, _ in self._window) >= self._start_needed):
                first = next(i for i, f, _ in self._window if f)
                self._loudness.clear()
                for _, f, over in self._window:
                    if f:
                        self._loudness.add(over)
                self._in_speech = True
                self._seg_start = first
                self._silence_from = None
                self._window.clear()
                self._recent.clear()
                self._maybe, self._maybe_quiet_from = False, None
                self._unsure.clear()
                self._sound = False  # speech supersedes it
                events.append(SpeechStarted(t=round(self._time(first), 6)))
                self._begin_command(first, idx)
            return events

        self._recent.append(not sure_silence)
        if p >= self._enter_p:
            self._loudness.add(level - floor)
        if sure_silence:
            if self._silence_from is None:
                self._silence_from = idx
        elif sum(self._recent) >= self._break_frames:
            self._silence_from = None  # speech, or not sure: the silence starts again later
        if self._cmd_active:
            assert self.commands is not None
            if idx - self._seg_start >= self._max_cmd_frames:
                self.commands.abort()  # a long utterance is talk, not a command
                self._cmd_active = False
                self._cmd_pending.clear()
            elif not sure_silence:
                for held in self._cmd_pending:
                    self.commands.feed(held)
                self._cmd_pending.clear()
                self.commands.feed(frame)
            else:
                self._cmd_pending.append(frame)
        if self._silence_from is not None:
            run = idx + 1 - self._silence_from
            margin = _frames(self.end_margin_s() + self.soft_margin_s())
            if run >= max(self._hangover, margin):
                events.extend(self._finish_segment(self._silence_from + margin))
        return events

    def _follow_unsure(self, idx: int, sure_silence: bool, over_floor_db: float) -> list[ListenEvent]:
        """Between utterances: report a voice the detector half hears (MaybeSpeech), and the
        first of a hangover of frames without it (MaybeSpeechEnded, dated there)."""
        unsure = not sure_silence and over_floor_db >= MAYBE_OVER_FLOOR_DB
        events = self._follow_sound(idx, unsure)
        self._unsure.append(unsure)
        if not self._maybe:
            if sum(self._unsure) < self._maybe_frames:
                return events
            self._maybe, self._maybe_quiet_from = True, None
            first = idx - len(self._unsure) + 1 + self._unsure.index(True)
            return [*events, MaybeSpeech(t=round(self._time(first), 6))]
        if unsure:
            self._maybe_quiet_from = None
        elif self._maybe_quiet_from is None:
            self._maybe_quiet_from = idx
        elif idx + 1 - self._maybe_quiet_from >= self._hangover:
            return [*events, self._end_maybe(self._maybe_quiet_from)]
        return events

    def _follow_sound(self, idx: int, unsure: bool) -> list[ListenEvent]:
        """An unsure frame starts an unsure sound at once (UnsureSound); UNSURE_QUIET_S of sure
        silence ends it (UnsureSoundEnded, dated at the end of that quiet)."""
        if unsure:
            self._sound_last = idx
            if not self._sound:
                self._sound = True
                return [UnsureSound(t=round(self._time(idx), 6))]
        elif self._sound and idx - self._sound_last >= self._sound_quiet:
            self._sound = False
            return [UnsureSoundEnded(t=round(self._time(idx + 1), 6))]
        return []

    def _end_maybe(self, quiet_from: int) -> MaybeSpeechEnded:
        self._maybe, self._maybe_quiet_from = False, None
        self._unsure.clear()
        return MaybeSpeechEnded(t=round(self._time(quiet_from), 6))

    def _begin_command(self, first: int, idx: int) -> None:
        if self.commands is None:
            return
        self.commands.begin()
        # From `preroll_s` before the first speech frame: more room noise before an utterance
        # tends to come out as an extra word (measured: 20 of 35 commands vs 17 of 35).
        oldest = idx - len(self._preroll) + 1  # frame index of the oldest frame in the ring
        for i, f in enumerate(self._preroll):
            if oldest + i >= first - self._preroll_frames:
                self.commands.feed(f)
        self._preroll.clear()
        self._cmd_pending.clear()
        self._cmd_active = True

    def _end_speech(self, command: bool, end_index: int) -> SpeechEnded:
        end_t = self._time(end_index)
        start_t = self._time(self._seg_start)
        self._in_speech = False
        self._after_speech = True
        self._silence_from = None
        self._window.clear()
        voice = self._loudness.levels()
        if voice.level_db is not None:
            self._last_voice_db = voice.level_db
            self._last_voice_end = end_index
        self._loudness.clear()
        if self._cmd_active and not command:
            assert self.commands is not None
            self.commands.abort()
            self._cmd_active = False
            self._cmd_pending.clear()
        return SpeechEnded(t=round(end_t, 6), duration_s=round(end_t - start_t, 6), voice=voice)

    def _finish_segment(self, end_index: int) -> list[ListenEvent]:
        ended = self._end_speech(command=True, end_index=end_index)
        events: list[ListenEvent] = [ended]
        if self._cmd_active:
            assert self.commands is not None
            self._cmd_active = False
            for held in self._cmd_pending[: self._cmd_tail]:
                self.commands.feed(held)
            self._cmd_pending.clear()
            match = self.commands.finish()
            if match is not None:
                events.append(
                    CommandHeard(
                        t=ended.t,
                        phrase=match.phrase,
                        action=match.action,
                        confidence=round(match.confidence, 3),
                    )
                )
        return events

    def flush(self) -> list[ListenEvent]:
        """End of input: close a speech in progress (its command, if any, is judged)."""
        if not self._in_speech:
            return []
        end = self._silence_from if self._silence_from is not None else self._n
        return self._finish_segment(end)
