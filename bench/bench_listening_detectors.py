"""Which detector should the listener ask (issue 13)? The same rooms and the same end rule, one
detector after another: plain Silero (the box before noise suppression), the box's detector
(Silero behind WebRTC noise suppression at `listening.noise_suppression`), Silero behind
stronger suppression, and earshot (a small Rust detector, 16 ms frames). Each room is scored
twice: with the rule that leaves a turn whose voice the box did not hear clearly to the
facilitator (the box as it is), and without it (every turn ended on silence: how often the
detector itself lets the box cut in).

    .venv/bin/python bench/bench_listening_detectors.py --variants=silero,box --seed-base 990
    .venv/bin/python bench/bench_listening_detectors.py --variants=ns3,earshot --levels=-40,-37,-34,-31
    .venv/bin/python bench/bench_listening_detectors.py --cpu --variants=silero,box,earshot

earshot is not one of the box's dependencies: `pip install earshot` to run its variant. Rooms:
tests/real_speech.py with the box's prompts at fixed times (open loop), the replay bench's
seeds (`--seed-base`); answers cached per detector (bench/out/listening-replay: plain Silero,
listening-replay-ns1: the box's, listening-detectors/<variant>: the others).

Result (2026-11-28, 7 sets of 10 rooms a level, -40 to -31 dBFS): BENCHMARKS.md, "Noise
suppression in front of Silero".
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    add_room_arguments,
    answers_for,
    box_cache,
    box_detector,
    replay,
    rooms_by_level,
    spec_for,
)
from bench.bench_listening_sweep import RoomScore, frames_of, pct, score, turn_starts  # noqa: E402
from device.listening.detectors import (  # noqa: E402
    ChunkedDetector,
    NoiseSuppressed,
    SileroDetector,
)
from device.listening.events import FRAME_S  # noqa: E402


class EarshotDetector(ChunkedDetector):
    """earshot's score for the newest 256-sample (16 ms) chunk."""

    CHUNK = 256

    def __init__(self) -> None:
        import earshot

        self._det = earshot.Detector()
        super().__init__()

    def _score(self, chunk: np.ndarray) -> float:
        return float(self._det.predict_f32(chunk))

    def _restart(self) -> None:
        self._det.reset()


VARIANTS: dict[str, Callable[[], Any]] = {
    "silero": SileroDetector,
    "box": box_detector,
    **{f"ns{n}": (lambda n=n: NoiseSuppressed(SileroDetector(), n)) for n in (1, 2, 3, 4)},
    "earshot": EarshotDetector,
}


def cache_of(variant: str) -> Path:
    if variant == "silero":
        return OUT / "listening-replay"
    if variant == "box":
        return box_cache()
    return OUT / "listening-detectors" / variant


def sweep(variants: list[str], args: argparse.Namespace, maker: af.SpeechMaker) -> None:
    """Per level and variant: found / left / false ends / delay, with and without the rule."""
    table = []
    for level, specs in rooms_by_level(args):
        totals = {(v, rule): RoomScore() for v in variants for rule in (True, False)}
        for spec in specs:
            scene = rs.build_room(spec, maker)
            frames = frames_of(scene)
            line = []
            for v in variants:
                run = replay(frames, answers_for(spec, frames, cache_of(v), VARIANTS[v]))
                for rule in (True, False):
                    s = score(af.turn_ends(run, END_ON_SILENCE_S, turn_starts(scene),
                                           leave_unclear=rule), scene)
                    totals[v, rule].add(s)
                    if rule:
                        line.append(f"{v} {s.found}/{s.turns} left {s.left} false {s.false_ends}")
            print(f"# {spec.name}: " + "; ".join(line), flush=True)
        for v in variants:
            for rule in (True, False):
                t = totals[v, rule]
                row = (f"{level:g} dBFS {v:8s} {'as the box' if rule else 'no rule   '}: found "
                       f"{t.found}/{t.turns}, left {t.left}, false ends {t.false_ends}, delay p50 "
                       f"{pct(t.delays, 50):+.2f} p95 {pct(t.delays, 95):+.2f}")
                print(row, flush=True)
                table.append(row)
    print("\n" + "\n".join(table))


def cpu(variants: list[str], maker: af.SpeechMaker, seconds: float = 60.0) -> None:
    """CPU per audio second of each detector over the first `seconds` of a -31 dBFS room."""
    spec = spec_for(-31.0, 8, (-34.0, -24.0))
    frames = [f for f, _ in frames_of(rs.build_room(spec, maker))][: int(seconds / FRAME_S)]
    audio_s = len(frames) * FRAME_S
    print(f"{audio_s:.0f} s of {spec.name}; ms of CPU per audio second")
    for v in variants:
        det = VARIANTS[v]()
        c0 = time.process_time()
        for f in frames:
            det.probability(f)
        print(f"   {v:8s} {(time.process_time() - c0) / audio_s * 1000.0:6.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="silero,box",
                        help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("--cpu", action="store_true", help="only the CPU figures")
    add_room_arguments(parser, levels="-40,-37,-34,-31")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {', '.join(unknown)} (known: {', '.join(VARIANTS)})")
    maker = af.SpeechMaker(OUT / "speech-cache")
    if args.cpu:
        cpu(variants, maker)
    else:
        sweep(variants, args, maker)


if __name__ == "__main__":
    main()
