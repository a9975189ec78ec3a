"""Could the box end more of the turns it did not hear clearly? (issue 13; BENCHMARKS.md, "Could
the box end more of the unclear turns itself?"). Three ways, none adopted, on the open-loop
replay rooms of bench/bench_listening_replay.py (real people reading, Silero's answers cached):

- `gaps`: in turns heard clearly and not, the longest stretch inside a turn the box would have
  counted as silence after an end of speech (to the next speech heard, or to the turn's true
  end): how long a fallback that ends an unclear turn on silence would have to wait.
- `quiet`: end an unclear turn only when each 0.9 s of the silence the box counted stood at
  most T dB over the noise floor at its median (else leave it to the facilitator, as now):
  turns ended by the box and cut-ins against the rule as it is, for each T.
- `pitch`: a harmonicity probe (normalised autocorrelation peak over 80-400 Hz of 150-1500 Hz
  audio, per 30 ms frame): speech frames Silero did not hear against the room alone.

    .venv/bin/python bench/bench_listening_unclear.py gaps --levels=-40,-37,-34,-31
    .venv/bin/python bench/bench_listening_unclear.py quiet --levels=-46,-40,-37,-34,-31 --seed-base 2990
    .venv/bin/python bench/bench_listening_unclear.py pitch --levels=-31 --rooms 10
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT / "tests"), str(ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import audio_fixtures as af  # noqa: E402
import real_speech as rs  # noqa: E402

from bench.bench_listening_replay import (  # noqa: E402
    END_ON_SILENCE_S,
    OUT,
    ReplayDetector,
    add_room_arguments,
    answers_for,
    rooms_by_level,
)
from bench.bench_listening_sweep import RoomScore, frames_of, score, turn_starts  # noqa: E402
from device.listening import (  # noqa: E402
    FRAME_S,
    Listener,
    MaybeSpeech,
    MaybeSpeechEnded,
    SpeechEnded,
    SpeechStarted,
    VoiceLevels,
    heard_clearly,
    listening_settings,
)

WINDOW = round(0.9 / FRAME_S)  # frames a median of the counted silence is taken over
SR = af.SR


@dataclass
class Replayed:
    """One room through the listener on Silero's cached answers, frame by frame."""

    scene: af.Scene
    run: af.Run
    over_floor: np.ndarray  # each frame's level over the noise floor, dB
    probability: np.ndarray  # the detector's answer the listener used for each frame


def replay_room(spec: rs.RoomSpec, maker: af.SpeechMaker) -> Replayed:
    scene = rs.build_room(spec, maker)
    frames = frames_of(scene)
    listener = Listener(listening_settings({}), vad=ReplayDetector(answers_for(spec, frames)))
    run, over, prob = af.Run([]), [], []
    for frame, playing in frames:
        for e in listener.process(frame, playing):
            run.events.append((listener.t, e))
        over.append(listener.level_db - listener.noise_floor_db)
        prob.append(listener.speech_probability)
    for e in listener.flush():
        run.events.append((listener.t, e))
    return Replayed(scene, run, np.array(over), np.array(prob))


def loudest_stretch_db(over: np.ndarray, start: float, end: float) -> float:
    """The highest median, over WINDOW frames, of the level over the floor from start to end."""
    part = over[round(start / FRAME_S):round(end / FRAME_S)]
    if len(part) < WINDOW:
        return float("inf")
    return float(np.max(np.median(np.lib.stride_tricks.sliding_window_view(part, WINDOW), axis=1)))


def quiet_turn_ends(room: Replayed, quiet_db: float | None) -> af.TurnEnds:
    """`audio_fixtures.turn_ends` as it was when this was measured (before the engine waited
    for an unsure sound to be over), except that an unclear turn is ended on silence when its
    counted silence stayed at the room's level (`quiet_db`; None: never, the rule as it was)."""
    out, starts = af.TurnEnds(), sorted(turn_starts(room.scene))
    pending = counted_from = None
    held = left = unclear = False
    voice = VoiceLevels()

    def decide() -> bool:
        """At `pending`: end the turn (True), or leave it to the facilitator."""
        if not unclear or (quiet_db is not None
                           and loudest_stretch_db(room.over_floor, counted_from, pending) <= quiet_db):
            out.decisions.append(pending)
            return True
        out.left.append(counted_from)
        return False

    for emitted, e in room.run.events:
        if pending is not None and emitted >= pending:
            if decide():
                voice = VoiceLevels()
            else:
                left = True
            pending = None
        while starts and starts[0] <= emitted:
            if left:  # the facilitator's NEXT as the next person begins
                left, voice = False, VoiceLevels()
            starts.pop(0)
        if isinstance(e, SpeechEnded):
            voice = voice + e.voice
            unclear = not heard_clearly(voice)
            if not left:
                counted_from, pending = e.t, e.t + END_ON_SILENCE_S
        elif isinstance(e, SpeechStarted):
            pending, held = None, False
        elif isinstance(e, MaybeSpeech) and pending is not None:
            pending, held = None, True
        elif isinstance(e, MaybeSpeechEnded) and held:
            counted_from, pending, held = e.t, e.t + END_ON_SILENCE_S, False
    if pending is not None:
        decide()
    return out


def silence_gaps(room: Replayed) -> list[tuple[bool, float]]:
    """Per end of speech inside a turn: whether the turn was heard clearly so far, and how long
    the box would count silence before the speaker was heard again (or the turn truly ended)."""
    events, gaps, voice, current = room.run.events, [], VoiceLevels(), None
    for i, (_, e) in enumerate(events):
        if not isinstance(e, SpeechEnded):
            continue
        turn = next((n for n, (a, b) in enumerate(room.scene.turns) if a - 0.5 <= e.t < b + 0.3), None)
        if turn is None:
            continue
        if turn != current:
            voice, current = VoiceLevels(), turn
        voice = voice + e.voice
        end = room.scene.turns[turn][1]
        heard = next((f.t for _, f in events[i + 1:] if isinstance(f, (SpeechStarted, MaybeSpeech))), None)
        gaps.append((heard_clearly(voice), (heard if heard is not None and heard < end + 0.3 else end) - e.t))
    return gaps


def harmonicity(x: np.ndarray, window: int = 640, lags: tuple[int, int] = (40, 200)) -> np.ndarray:
    """Per 30 ms frame: the highest normalised autocorrelation over `lags` (80-400 Hz) of the
    last `window` samples, on 150-1500 Hz audio (a zero-phase FFT filter: a probe, not causal)."""
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1 / SR)
    spec[(f < 150) | (f > 1500)] = 0
    x = np.fft.irfft(spec, len(x)).astype(np.float32)
    step, lag = round(FRAME_S * SR), np.arange(lags[0], lags[1] + 1)
    out = np.zeros(len(x) // step, np.float32)
    for i in range(len(out)):
        end = (i + 1) * step
        seg = x[end - window - lags[1]:end] if end >= window + lags[1] else None
        if seg is None:
            continue
        now = seg[lags[1]:]
        energy = float(np.dot(now, now))
        if energy <= 0:
            continue
        before = np.lib.stride_tricks.sliding_window_view(seg, window)[lags[1] - lag]
        r = (before @ now) / (np.sqrt(energy * np.einsum("ij,ij->i", before, before)) + 1e-12)
        out[i] = float(np.max(r))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("gaps", "quiet", "pitch"))
    parser.add_argument("--quiet-db", default="1.0,1.5,2.0", help="T for `quiet` (dB)")
    add_room_arguments(parser, levels="-40,-37,-34,-31")
    args = parser.parse_args()
    maker = af.SpeechMaker(OUT / "speech-cache")
    thresholds = [float(v) for v in args.quiet_db.split(",")]
    gaps: dict[bool, list[float]] = {True: [], False: []}
    pitch: dict[str, list[np.ndarray]] = {"unheard speech": [], "room alone": []}
    for level, specs in rooms_by_level(args):
        rooms = [replay_room(spec, maker) for spec in specs]
        if args.what == "gaps":
            for room in rooms:
                for clear, gap in silence_gaps(room):
                    gaps[clear].append(gap)
        elif args.what == "quiet":
            line = []
            for quiet_db in (None, *thresholds):
                total = RoomScore()
                for room in rooms:
                    total.add(score(quiet_turn_ends(room, quiet_db), room.scene))
                name = "as it is" if quiet_db is None else f"T {quiet_db:g} dB"
                line.append(f"{name}: {total.found} ended by the box, {total.left} left, "
                            f"{total.false_ends} cut-ins")
            print(f"{level:g} dBFS: " + "; ".join(line), flush=True)
        else:
            for room in rooms:
                h = harmonicity(room.scene.audio)
                n = min(len(h), len(room.probability))
                t = (np.arange(n) + 1) * FRAME_S
                speech, near = np.zeros(n, bool), np.zeros(n, bool)
                for a, b, _ in room.scene.utterances:
                    speech |= (t > a + FRAME_S) & (t <= b)
                    near |= (t > a - 0.5) & (t <= b + 0.6)
                for a, b in room.scene.playing:
                    near |= (t > a - 0.6) & (t <= b + 0.6)
                pitch["unheard speech"].append(h[:n][speech & (room.probability[:n] < 0.3)])
                pitch["room alone"].append(h[:n][~near])
    if args.what == "gaps":
        for clear, name in ((True, "heard clearly"), (False, "not heard clearly")):
            longest = sorted(gaps[clear], reverse=True)[:5]
            print(f"turns {name}: {len(gaps[clear])} ends of speech; the longest silences the box "
                  "would count inside a turn: " + ", ".join(f"{g:.1f} s" for g in longest))
    elif args.what == "pitch":
        for name, parts in pitch.items():
            h = np.concatenate(parts)
            print(f"{name}: {len(h)} frames, median {np.median(h):.2f}, above 0.5: "
                  f"{100 * np.mean(h > 0.5):.1f} %")


if __name__ == "__main__":
    main()
