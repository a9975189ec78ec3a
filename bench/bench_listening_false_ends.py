"""Why the listener cut in: per-frame detector probability, level and noise floor around every
false end (a turn-end decision inside a turn) of the open-loop replay rooms
(bench/bench_listening_replay.py: Silero's answers cached per room, so this is fast and every
run gives the same frames).

    .venv/bin/python bench/bench_listening_false_ends.py --levels=-40,-34,-31 --rooms 10
    .venv/bin/python bench/bench_listening_false_ends.py --seed 128 --noise -40
    .venv/bin/python bench/bench_listening_false_ends.py --seed-base 990 --levels=-46,-31

For each false end: the utterances around it (truth), the end of speech the listener reported
and the frames from 1 s before that end to the decision, one line per 30 ms frame: time,
level, floor, p (`#` sure speech, `?` not sure, `.` sure silence), and the listener's state.
Each false end also says how much of the voice in the silence the box counted the detector
heard, and how far the unheard rest stood out of the room's noise (BENCHMARKS.md: the cut-ins
left are voices at the level of the room's own noise). Used to find a general rule against
cut-ins (docs/listening.md, "Speech ends only when the silence is certain").
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT / "tests"), str(ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import audio_fixtures as af  # noqa: E402
import numpy as np  # noqa: E402
import real_speech as rs  # noqa: E402

from bench.bench_listening_replay import (  # noqa: E402
    OUT,
    ReplayDetector,
    add_room_arguments,
    answers_for,
    rooms_by_level,
)
from bench.bench_listening_sweep import (  # noqa: E402
    frames_of,
    turn_starts,
)
from device.listening import Listener, listening_settings  # noqa: E402
from device.listening.events import FRAME_S  # noqa: E402

END_ON_SILENCE_S = 3.0
@dataclass(frozen=True)
class Anatomy:
    """What of a speaker's voice fell in the silence the box counted before a false end."""

    voice_s: float  # the truth: seconds of someone speaking
    heard_s: float  # of those, frames the detector was at least not sure about (p >= 0.3)
    unheard_over_floor_db: float  # median level of the rest over the room's noise floor

    def sentence(self) -> str:
        return (f"{self.voice_s:.2f} s of voice, {self.heard_s:.2f} s of it heard (p >= 0.3), "
                f"the rest a median {self.unheard_over_floor_db:+.1f} dB over the room's floor")


ANATOMY: list[Anatomy] = []
ROOM_OVER: list[float] = []  # every room's own frames (nobody speaking): level over the floor


def room_alone(rows: list[tuple], scene: af.Scene, clear_s: float = 0.3) -> list[float]:
    """The level over the floor of the frames where only the room is heard: no utterance
    within `clear_s`, the box not speaking."""
    return [lvl - floor for t, lvl, floor, _p, _in_speech, muted in rows
            if not muted and not any(a - clear_s <= t < b + clear_s for a, b, _ in scene.utterances)]


def heard_of_voice(rows: list[tuple], scene: af.Scene, quiet_from: float,
                   decision: float) -> Anatomy:
    """How much voice there was in [quiet_from, decision), how much of it the detector heard,
    and how far the unheard rest stood out of the room's noise."""
    voice = heard = 0
    unheard_over: list[float] = []
    for t, lvl, floor, p, _in_speech, _muted in rows:
        if not quiet_from <= t < decision:
            continue
        if any(a <= t < b for a, b, _ in scene.utterances):
            voice += 1
            if p >= 0.3:
                heard += 1
            else:
                unheard_over.append(lvl - floor)
    median = float(np.median(unheard_over)) if unheard_over else float("nan")
    return Anatomy(voice * FRAME_S, heard * FRAME_S, median)


def probe(spec: rs.RoomSpec, maker: af.SpeechMaker, show_all: bool = False) -> int:
    """Print every false end of this room with its frames; return how many there were."""
    scene = rs.build_room(spec, maker)
    frames = frames_of(scene)
    listener = Listener(listening_settings({}), vad=ReplayDetector(answers_for(spec, frames)))
    rows, events = [], []
    for frame, playing in frames:
        t = listener.t
        got = listener.process(frame, playing)
        rows.append((t, listener.level_db, listener.noise_floor_db, listener.speech_probability,
                     listener.in_speech, listener.muted))
        events += [(listener.t, e) for e in got]
    events += [(listener.t, e) for e in listener.flush()]
    ROOM_OVER.extend(room_alone(rows, scene))
    found = 0
    for decision in af.turn_end_decisions(af.Run(events), END_ON_SILENCE_S, turn_starts(scene)):  # the engine's model
        quiet_from = decision - END_ON_SILENCE_S  # an end of speech, or of a half-heard voice
        turn = next(((a, b) for a, b in scene.turns if a <= decision < b), None)
        if turn is None and not show_all:
            continue
        found += turn is not None
        where = f"INSIDE turn {turn[0]:.2f}-{turn[1]:.2f}" if turn else "ok"
        print(f"\n## {spec.name}: silence counted from {quiet_from:.2f}, decision {decision:.2f}, "
              f"{where}")
        for a, b, k in scene.utterances:
            if a - 4 <= decision and b >= quiet_from - 4:
                print(f"   utterance {a:7.2f} - {b:7.2f} (turn {k})")
        for emitted, e in events:
            if quiet_from - 4 <= emitted <= decision:
                print(f"   event at {emitted:7.2f}: {e}")
        anatomy = heard_of_voice(rows, scene, quiet_from, decision)
        ANATOMY.append(anatomy)
        print("   in the silence the box counted: " + anatomy.sentence())
        for t, lvl, floor, p, in_sp, muted in rows:
            if quiet_from - 1.0 <= t <= decision + 0.3:
                mark = "#" if p >= 0.5 else "?" if p >= 0.3 else "."
                print(f"   {t:7.2f} lvl {lvl:6.1f} floor {floor:6.1f} +{lvl - floor:5.1f} "
                      f"p {p:4.2f} {mark}{' speech' if in_sp else ''}{' muted' if muted else ''}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_room_arguments(parser, levels="-40,-34,-31")
    parser.add_argument("--seed", type=int, help="only this seed (with --noise)")
    parser.add_argument("--noise", type=float)
    args = parser.parse_args()
    maker = af.SpeechMaker(OUT / "speech-cache")
    total = 0
    for level, specs in rooms_by_level(args):
        for spec in specs:
            if args.seed is not None and (spec.seed != args.seed or level != args.noise):
                continue
            total += probe(spec, maker)
    print(f"\nfalse ends: {total}")
    if ANATOMY:
        most_heard = max(a.heard_s for a in ANATOMY)
        medians = [a.unheard_over_floor_db for a in ANATOMY if not np.isnan(a.unheard_over_floor_db)]
        print(f"in the silence counted before each: at most {most_heard:.2f} s of voice heard; "
              f"the unheard voice a median {min(medians):+.1f} to {max(medians):+.1f} dB over "
              "the room's floor")
        room = np.array(ROOM_OVER)
        print(f"the room alone (nobody speaking), in the same rooms: a median "
              f"{np.median(room):+.1f} dB over its floor, a quarter of its frames over "
              f"{np.percentile(room, 75):+.1f} dB, a tenth over {np.percentile(room, 90):+.1f} dB")


if __name__ == "__main__":
    main()
