"""A margin for soft speakers (issue 13), several variants on the very same detector answers.

Like bench/bench_listening_replay.py (same rooms, same cached Silero answers, open loop), but
each room is built once and replayed with every variant of the end rule, so a table of
variants costs one replay run:

    .venv/bin/python bench/bench_listening_soft_margin.py
    .venv/bin/python bench/bench_listening_soft_margin.py --voice-db=-40,-30 --rooms 5 \
        --levels=-46,-40,-34,-31

A variant is a `listening` settings override (`soft_margin_s`) and the listener's constants
for how loud an utterance is against the room (`LOUD_SNR_DB`, `SOFT_SNR_DB`,
`SNR_PERCENTILE`). Per level and variant: ends found, false ends, delay p50 / p95 /
max beyond `end_on_silence_s`.
"""

from __future__ import annotations

import argparse
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
from bench.bench_listening_replay import END_ON_SILENCE_S, ReplayDetector, answers_for  # noqa: E402
from bench.bench_listening_sweep import RoomScore, frames_of, listen_run, pct, score  # noqa: E402
from device.listening import Listener, listening_settings  # noqa: E402

OUT = ROOT / "bench" / "out"

def _variant(margin_s: float, soft_db: float, loud_db: float,
             percentile: float) -> tuple[dict[str, Any], dict[str, Any]]:
    return ({"soft_margin_s": margin_s}, {"SOFT_SNR_DB": soft_db, "LOUD_SNR_DB": loud_db,
                                          "SNR_PERCENTILE": percentile})


# name: (settings override, listener constants); every name says all it sets
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "off": ({"soft_margin_s": 0.0}, {}),
    "p90 5-15 dB, 1 s": _variant(1.0, 5.0, 15.0, 90.0),
    "p90 5-15 dB, 2 s": _variant(2.0, 5.0, 15.0, 90.0),
    "p90 3-10 dB, 2 s": _variant(2.0, 3.0, 10.0, 90.0),
    "p90 3-5 dB, 1 s": _variant(1.0, 3.0, 5.0, 90.0),
    "p90 4-6 dB, 1 s": _variant(1.0, 4.0, 6.0, 90.0),
    "p95 4-6 dB, 0.7 s": _variant(0.7, 4.0, 6.0, 95.0),
    "p95 4-6 dB, 1 s": _variant(1.0, 4.0, 6.0, 95.0),
    "p98 4-6 dB, 1 s": _variant(1.0, 4.0, 6.0, 98.0),
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
    parser.add_argument("--levels", default="-52,-46,-40,-37,-34,-31")
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--voice-db", default="-34,-24", help="speakers' level range (dBFS)")
    parser.add_argument("--only", default="", help="variant names, separated by ;")
    args = parser.parse_args()
    lo, hi = (float(v) for v in args.voice_db.split(","))
    names = [n for n in VARIANTS if not args.only or n in args.only.split(";")]
    maker = af.SpeechMaker(OUT / "speech-cache")
    cycle = (("hum", "knocks", "babble", "prompts"), ("knocks", "prompts"), ("hum", "babble"))
    table: dict[tuple[float, str], RoomScore] = {}
    for level in (float(v) for v in args.levels.split(",")):
        index = rs.NOISE_SWEEP_DB.index(level) if level in rs.NOISE_SWEEP_DB else 10 + int(-level)
        for k in range(args.rooms):
            spec = rs.RoomSpec(seed=100 + 10 * index + k, noise_db=level,
                               extras=cycle[k % len(cycle)], voice_db=(lo, hi))
            scene = rs.build_room(spec, maker)
            frames = frames_of(scene)
            answers = answers_for(spec, frames)
            line = []
            for name in names:
                override, constants = VARIANTS[name]
                s = score(af.turn_end_decisions(replay(frames, answers, override, constants),
                                                END_ON_SILENCE_S), scene)
                table.setdefault((level, name), RoomScore()).add(s)
                line.append(f"{name}: {s.found}/{s.turns} F{s.false_ends} "
                            f"max {max(s.delays, default=0):+.2f}")
            print(f"# {spec.name}: " + " | ".join(line), flush=True)
        for name in names:
            t = table[(level, name)]
            print(f"{level:g} dBFS {name:22s} found {t.found}/{t.turns} false {t.false_ends} "
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
