"""End rules compared on the very same detector answers: Silero runs once per room (cached),
then the listener replays its probabilities, so a difference between two runs of this bench
(before and after a change to the end rule) is the rule's, not the noise of a closed loop (in
the box, a turn ended earlier moves the box's next prompt, which restarts the detector at
another moment and changes its later answers).

    .venv/bin/python bench/bench_listening_replay.py --save bench/out/replay-before.json
    (change device/listening/listener.py)
    .venv/bin/python bench/bench_listening_replay.py --against bench/out/replay-before.json
    .venv/bin/python bench/bench_listening_replay.py --voice-db=-40,-30 --levels=-46,-40,-34,-31
    .venv/bin/python bench/bench_listening_replay.py --seed-base 990   (rooms held out)

Rooms: tests/real_speech.py with the box's prompts at fixed times (open loop), the sweep's seeds
for the first three rooms of each level; `--voice-db=-40,-30`: softer speakers than the
issue's -34 to -24 dBFS. Per room and per level: ends found, false ends, delay p50 / p95 / max
beyond `end_on_silence_s`, turns left to the facilitator (the box waited for her NEXT after a
voice it did not hear clearly), and the closest call: the smallest time by which a speaker who
picked up after a pause inside a turn beat the box's end decision (negative: a false end).
`--against`: also every end of speech dated differently from the saved run. The detector's
answers are the box's detector's (Silero behind `listening.noise_suppression`), cached in
bench/out/listening-replay-ns1 (the default level 1; bench/out/listening-replay: plain Silero,
the figures before noise suppression).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT / "tests"), str(ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import audio_fixtures as af  # noqa: E402
import real_speech as rs  # noqa: E402

from bench.bench_listening_sweep import (  # noqa: E402
    RoomScore,
    frames_of,
    listen_run,
    pct,
    score,
    turn_starts,
)
from device.listening import Listener, SpeechEnded, SpeechStarted, listening_settings  # noqa: E402
from device.listening.detectors import build_detector  # noqa: E402

OUT = ROOT / "bench" / "out"
END_ON_SILENCE_S = 3.0
CYCLE = (("hum", "knocks", "babble", "prompts"), ("knocks", "prompts"), ("hum", "babble"))


def box_detector() -> Any:
    """The detector the box builds from its default settings (Silero behind noise suppression)."""
    settings = listening_settings({})
    return build_detector(settings.detector, settings.vad_aggressiveness,
                          settings.noise_suppression)


def box_cache() -> Path:
    """Where the box detector's answers are cached: one folder per noise suppression level, so
    a change of the default never replays another detector's answers."""
    level = listening_settings({}).noise_suppression
    return OUT / ("listening-replay" if level == 0 else f"listening-replay-ns{level}")


def add_room_arguments(parser: argparse.ArgumentParser,
                       levels: str = "-52,-46,-40,-37,-34,-31") -> None:
    """The replay benches' choice of rooms: `rooms_by_level` reads them back."""
    parser.add_argument("--levels", default=levels, help="steady noise levels (dBFS)")
    parser.add_argument("--rooms", type=int, default=10, help="rooms a level")
    parser.add_argument("--voice-db", default="-34,-24", help="speakers' level range (dBFS)")
    parser.add_argument("--seed-base", type=int, default=100,
                        help="100: the sweep's rooms (the end rule was tuned on them); 990 and "
                             "1990: rooms held out to check a rule")


def rooms_by_level(args: argparse.Namespace) -> Iterator[tuple[float, list[rs.RoomSpec]]]:
    """Each level of `--levels` with its rooms (`add_room_arguments`)."""
    lo, hi = (float(v) for v in args.voice_db.split(","))
    for level in (float(v) for v in args.levels.split(",")):
        yield level, [spec_for(level, k, (lo, hi), args.seed_base) for k in range(args.rooms)]


def spec_for(level: float, k: int, voice_db: tuple[float, float],
             seed_base: int = 100) -> rs.RoomSpec:
    """The replay bench's k-th room at `level`: seeds from 100 are the sweep's rooms (the rule
    was tuned on them), from 990 and 1990 rooms held out to check it."""
    index = rs.NOISE_SWEEP_DB.index(level) if level in rs.NOISE_SWEEP_DB else 10 + int(-level)
    return rs.RoomSpec(seed=seed_base + 10 * index + k, noise_db=level,
                       extras=CYCLE[k % len(CYCLE)], voice_db=voice_db)


class RecordingDetector:
    """The box's detector (or `detector`, e.g. plain Silero or Silero behind a filter), keeping
    every answer in the order the listener asked."""

    def __init__(self, detector: Any = None) -> None:
        self._det = detector if detector is not None else box_detector()
        self.answers: list[float] = []

    def probability(self, frame: bytes) -> float:
        p = self._det.probability(frame)
        self.answers.append(p)
        return p

    def reset(self) -> None:
        self._det.reset()
        self.answers.append(-1.0)  # a reset, replayed as one


class ReplayDetector:
    """The recorded answers, in order."""

    def __init__(self, answers: np.ndarray) -> None:
        self._answers = iter(answers.tolist())

    def probability(self, frame: bytes) -> float:
        return next(self._answers)

    def reset(self) -> None:
        assert next(self._answers) == -1.0, "the replay left the recorded run"


def answers_for(spec: rs.RoomSpec, frames: list[tuple[bytes, bool]],
                cache: Path | None = None,
                make_detector: Callable[[], Any] | None = None) -> np.ndarray:
    """The box detector's answers on this room (cached in `box_cache()`), or `make_detector()`'s
    (cached in its own `cache`), keyed by the room's samples: a room changes when its
    recordings or the box's prompts do."""
    import hashlib

    lo, hi = spec.voice_db
    audio = hashlib.sha256(b"".join(f for f, _ in frames)).hexdigest()[:12]
    if cache is None:
        cache = box_cache()
    path = cache / f"{spec.seed}_{spec.noise_db:g}_{lo:g}_{hi:g}_{audio}.npy"
    if path.exists():
        return np.load(path)
    det = RecordingDetector(make_detector() if make_detector is not None else None)
    listener = Listener(listening_settings({}), vad=det)
    for frame, playing in frames:
        listener.process(frame, playing)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.array(det.answers))
    return np.array(det.answers)


def replay(frames: list[tuple[bytes, bool]], answers: np.ndarray) -> af.Run:
    """The listener as it is now, on the recorded answers."""
    return listen_run(Listener(listening_settings({}), vad=ReplayDetector(answers)), frames)


def closest_call(run: af.Run, scene: af.Scene, left: list[float]) -> float:
    """For every end of speech dated inside a turn (a pause): the end decision's due time
    minus when the speaker was heard again (SpeechStarted emitted); the smallest of them. Ends
    after which the box waited for the facilitator (`left`) are no call at all."""
    calls = []
    for i, (_, e) in enumerate(run.events):
        turn = next(((a, b) for a, b in scene.turns if a <= e.t < b), None)
        if not isinstance(e, SpeechEnded) or turn is None or e.t in left:
            continue
        heard = next((t for t, f in run.events[i + 1:] if isinstance(f, SpeechStarted)), None)
        if heard is not None and heard <= turn[1] + 0.3:  # the same speaker, same turn
            calls.append(e.t + END_ON_SILENCE_S - heard)
    return min(calls, default=float("inf"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_room_arguments(parser)
    parser.add_argument("--save", type=Path, help="write every room's ends of speech here")
    parser.add_argument("--against", type=Path, help="a --save of an earlier run to compare")
    args = parser.parse_args()
    lo, hi = (float(v) for v in args.voice_db.split(","))
    earlier = json.loads(args.against.read_text()) if args.against else {}
    saved: dict[str, list[float]] = {}
    maker = af.SpeechMaker(OUT / "speech-cache")
    for level, specs in rooms_by_level(args):
        total, closest = RoomScore(), float("inf")
        for spec in specs:
            scene = rs.build_room(spec, maker)
            frames = frames_of(scene)
            run = replay(frames, answers_for(spec, frames))
            decided = af.turn_ends(run, END_ON_SILENCE_S, turn_starts(scene))
            s = score(decided, scene)
            total.add(s)
            call = closest_call(run, scene, decided.left)
            closest = min(closest, call)
            key = f"{spec.name}, voices {lo:g} to {hi:g} dBFS"
            ends = [round(e.t, 3) for _, e in run.events if isinstance(e, SpeechEnded)]
            saved[key] = ends
            print(f"# {spec.name}: {s.found}/{s.turns} left {s.left} false {s.false_ends} closest {call:+.2f} "
                  "delays " + " ".join(f"{d:+.2f}" for d in s.delays), flush=True)
            if key in earlier:
                moved = [(a, b) for a, b in zip(earlier[key], ends, strict=False) if a != b]
                if moved or len(earlier[key]) != len(ends):
                    print("#   ends moved: " + ", ".join(f"{a:.2f} -> {b:.2f}" for a, b in moved)
                          + ("" if len(earlier[key]) == len(ends) else " (and their number)"))
        print(f"{level:g} dBFS: found {total.found}/{total.turns}, left to the facilitator "
              f"{total.left}, false ends {total.false_ends}, "
              f"delay p50 {pct(total.delays, 50):+.2f} p95 {pct(total.delays, 95):+.2f} max "
              f"{max(total.delays):+.2f}, closest call {closest:+.2f} s", flush=True)
    if args.save:
        args.save.write_text(json.dumps(saved, indent=1))


if __name__ == "__main__":
    main()
