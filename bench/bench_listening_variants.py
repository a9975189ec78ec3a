"""Variants of the end rule (issue 13) on the very same detector answers.

Like bench/bench_listening_replay.py (same rooms, same cached Silero answers, open loop), but
each room is built once and replayed with every variant, so a table of variants costs one
replay run:

    .venv/bin/python bench/bench_listening_variants.py --levels=-46,-40,-37,-34,-31
    .venv/bin/python bench/bench_listening_variants.py --seed-base 990    (rooms held out)
    .venv/bin/python bench/bench_listening_variants.py --seed-base 1990   (rooms held out)
    .venv/bin/python bench/bench_listening_variants.py --voice-db=-40,-30 --rooms 5 \
        --levels=-46,-40,-34,-31

A variant is a `listening` settings override and the listener's constants: the soft-voice
margin (`soft_margin_s`; `LOUD_SNR_DB`, `SOFT_SNR_DB`, `VOICE_PERCENTILE`), the half-heard voice
after an end (`MAYBE_S`, `MAYBE_WINDOW_S`, `MAYBE_OVER_FLOOR_DB`) and the loud-frame rule
(`LOUD_OVER_FLOOR_DB`). Per level and variant: ends found, false ends, delay p50 / p95 / max
beyond `end_on_silence_s`. The rule was tuned on the rooms from seed 100; 990 and 1990 are
other rooms (new talkers' turns, pauses and noise), to check that a rule is not fitted to
the first ones.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT / "tests"), str(ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import audio_fixtures as af  # noqa: E402
import real_speech as rs  # noqa: E402

import device.listening.listener as listener_module  # noqa: E402
from bench.bench_listening_replay import (  # noqa: E402
    END_ON_SILENCE_S,
    ReplayDetector,
    add_room_arguments,
    answers_for,
    rooms_by_level,
)
from bench.bench_listening_sweep import (  # noqa: E402
    RoomScore,
    frames_of,
    listen_run,
    pct,
    score,
    turn_starts,
)
from device.listening import Listener, listening_settings  # noqa: E402

OUT = ROOT / "bench" / "out"

NO_MAYBE = {"MAYBE_S": 1000.0}  # a "maybe" stretch can never be that long
NO_LOUD = {"LOUD_OVER_FLOOR_DB": math.inf}

# name: (settings override, listener constants); every name says all it changes from today's
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "today": ({}, {}),
    "no half-heard voice, no loud-frame rule (before)": ({}, {**NO_MAYBE, **NO_LOUD}),
    "no half-heard voice": ({}, NO_MAYBE),
    "no loud-frame rule": ({}, NO_LOUD),
    "maybe 0.15 s in 0.3 s, any level": ({}, {"MAYBE_S": 0.15, "MAYBE_WINDOW_S": 0.3,
                                             "MAYBE_OVER_FLOOR_DB": -math.inf}),
    "maybe at any level": ({}, {"MAYBE_OVER_FLOOR_DB": -math.inf}),
    "maybe at 4 dB": ({}, {"MAYBE_OVER_FLOOR_DB": 4.0}),
    "maybe 0.45 s in 0.9 s": ({}, {"MAYBE_S": 0.45}),
    "no soft margin": ({"soft_margin_s": 0.0}, {}),
    "soft margin p95, 4-6 dB, 1 s": ({}, {"VOICE_PERCENTILE": 95.0}),
    # how far waiting longer goes (the margin grows with the noise up to this at -31 dBFS)
    "end margin up to 1 s": ({"end_margin_s": 1.0}, {}),
    "end margin up to 2 s": ({"end_margin_s": 2.0}, {}),
}


def replay(frames: list[tuple[bytes, bool]], answers: Any, override: dict[str, Any],
           constants: dict[str, Any]) -> af.Run:
    """The listener with this variant, on the recorded answers."""
    saved = {k: getattr(listener_module, k) for k in constants}
    for k, v in constants.items():
        setattr(listener_module, k, v)
    try:
        return listen_run(Listener(listening_settings(override), vad=ReplayDetector(answers)), frames)
    finally:
        for k, v in saved.items():
            setattr(listener_module, k, v)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_room_arguments(parser)
    parser.add_argument("--only", default="", help="variant names, separated by ;")
    args = parser.parse_args()
    names = [n for n in VARIANTS if not args.only or n in args.only.split(";")]
    maker = af.SpeechMaker(OUT / "speech-cache")
    table: dict[tuple[float, str], RoomScore] = {}
    for level, specs in rooms_by_level(args):
        for spec in specs:
            scene = rs.build_room(spec, maker)
            frames = frames_of(scene)
            answers = answers_for(spec, frames)
            line = []
            for name in names:
                override, constants = VARIANTS[name]
                s = score(af.turn_ends(replay(frames, answers, override, constants),
                                       END_ON_SILENCE_S, turn_starts(scene)), scene)
                table.setdefault((level, name), RoomScore()).add(s)
                line.append(f"{name}: {s.found}/{s.turns} F{s.false_ends} "
                            f"max {max(s.delays, default=0):+.2f}")
            print(f"# {spec.name}: " + " | ".join(line), flush=True)
        for name in names:
            t = table[(level, name)]
            print(f"{level:g} dBFS {name:48s} found {t.found}/{t.turns} false {t.false_ends} "
                  f"p50 {pct(t.delays, 50):+.2f} p95 {pct(t.delays, 95):+.2f} "
                  f"max {max(t.delays):+.2f}", flush=True)
    print("\n| variant | " + " | ".join(f"{lv} dBFS" for lv in args.levels.split(","))
          + " | false ends |")
    print("|---" * (len(args.levels.split(",")) + 2) + "|")
    for name in names:
        cells, falses = [], 0
        for level in (float(v) for v in args.levels.split(",")):
            t = table[(level, name)]
            falses += t.false_ends
            cells.append(f"{t.found}/{t.turns} F{t.false_ends} p95 {pct(t.delays, 95):+.2f}")
        print(f"| {name} | " + " | ".join(cells) + f" | {falses} |")


if __name__ == "__main__":
    main()
