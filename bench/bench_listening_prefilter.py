"""Does a noise pre-filter on the audio handed to Silero let it hear soft voices under room
noise (issue 13)? The listener replays Silero's answers (bench/bench_listening_replay.py), once
on the raw frames (the replay bench's cached answers: the baseline) and once per variant on the
frames filtered by bench/prefilter.py (cached in bench/out/listening-prefilter/
<variant>/, same key as the replay bench's answers). The listener's level and noise floor see
the unfiltered audio in every variant.

    .venv/bin/python bench/bench_listening_prefilter.py --cutins
    .venv/bin/python bench/bench_listening_prefilter.py --variants=hp200,hp300x4,nsup
    .venv/bin/python bench/bench_listening_prefilter.py --voice-db=-40,-30 --levels=-40,-37,-34,-31 --rooms 5
    .venv/bin/python bench/bench_listening_prefilter.py --cpu --variants=hp200,hp300x4,nsup

`--cutins`: the five rooms where the box cut in (voices -34 to -24 dBFS): per variant, whether
the false end is still there, and Silero's p per frame over the stretch it lost, raw and
filtered. Default: per level and variant, ends found, false ends, delay p50 / p95 / max beyond
3 s and the closest call, next to the baseline. `--cpu`: CPU per audio second of each filter
alone and of Silero on raw and on filtered frames, over the first 60 s of a -31 dBFS room.

Result (2026-11-28, listener.py 6333902b0abe, 420 turns at -52..-31 dBFS): no filter helps.
Unfiltered 417/420 ends found, 4 false ends; hp200 416, 6; hp300x4 408, 14; nsup 406, 22. A
filter that lifts a soft voice in one room lets noise or babble hold turns open, or hides a
soft voice, in others.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Callable
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
    closest_call,
    replay,
    rooms_by_level,
    spec_for,
)
from bench.bench_listening_sweep import (  # noqa: E402
    RoomScore,
    frames_of,
    pct,
    score,
    turn_starts,
)
from bench.prefilter import (  # noqa: E402
    Chain,
    FilteredDetector,
    HighPass,
    NoiseSuppressor,
    PreFilter,
)
from device.listening import Listener, SpeechEnded, SpeechStarted, listening_settings  # noqa: E402
from device.listening.detectors import SileroDetector  # noqa: E402
from device.listening.events import FRAME_S  # noqa: E402

VARIANTS: dict[str, Callable[[], PreFilter]] = {
    "hp200": lambda: HighPass(200.0, 2),
    "hp300x4": lambda: HighPass(300.0, 4),
    "nsup": lambda: NoiseSuppressor(),
    "hp200+nsup": lambda: Chain(HighPass(200.0, 2), NoiseSuppressor()),
}
BASELINE = "none"
CUTINS = ((-40.0, 5), (-37.0, 6), (-34.0, 5), (-34.0, 9), (-31.0, 8))  # seeds 125 136 145 149 158


def answers_with(variant: str, spec: rs.RoomSpec, frames: list[tuple[bytes, bool]]) -> np.ndarray:
    """Silero's answers on this room through `variant`'s filter (the raw answers for the
    baseline), cached like the replay bench's."""
    if variant == BASELINE:  # plain Silero, as the box was before noise suppression
        return answers_for(spec, frames, OUT / "listening-replay", SileroDetector)
    return answers_for(spec, frames, OUT / "listening-prefilter" / variant,
                       lambda: FilteredDetector(SileroDetector(), VARIANTS[variant]()))


def frame_probabilities(frames: list[tuple[bytes, bool]], answers: np.ndarray) -> list[float]:
    """Silero's p for every frame (0 where the listener did not ask: muted or digital
    silence), by replaying the listener on the answers."""
    listener = Listener(listening_settings({}), vad=ReplayDetector(answers))
    out = []
    for frame, playing in frames:
        listener.process(frame, playing)
        out.append(listener.speech_probability)
    return out


def false_end_decisions(run: af.Run, scene: af.Scene) -> list[float]:
    """The engine's turn-end decisions that fall inside a turn (the cut-ins `score` counts)."""
    return [d for d in af.turn_end_decisions(run, END_ON_SILENCE_S)
            if any(a <= d < b for a, b in scene.turns)]


def unheard_ends(run: af.Run, scene: af.Scene) -> list[float]:
    """Ends of speech (dated) whose 3 s ran out inside a turn before the speaker was heard
    again: bench_listening_false_ends.py's rule (a MaybeSpeech may still hold the decision)."""
    out = []
    for i, (_, e) in enumerate(run.events):
        decision = e.t + END_ON_SILENCE_S if isinstance(e, SpeechEnded) else None
        if decision is None or not any(a <= decision < b for a, b in scene.turns):
            continue
        heard = next((t for t, f in run.events[i + 1:] if isinstance(f, SpeechStarted)), None)
        if heard is None or heard > decision:
            out.append(e.t)
    return out


def mark(p: float) -> str:
    return "#" if p >= 0.5 else "?" if p >= 0.3 else "."


def cutins(variants: list[str], maker: af.SpeechMaker,
           rooms: tuple[tuple[float, int], ...] = CUTINS) -> None:
    """The rooms with a cut-in: per variant, still there or not; p over the lost stretch."""
    for level, k in rooms:
        spec = spec_for(level, k, (-34.0, -24.0))
        scene = rs.build_room(spec, maker)
        frames = frames_of(scene)
        names = [BASELINE, *variants]
        answers = {v: answers_with(v, spec, frames) for v in names}
        print(f"\n## {spec.name}")
        stretches: list[float] = []  # the baseline's lost stretches, as dated ends of speech
        for v in names:
            run = replay(frames, answers[v])
            s = score(af.turn_ends(run, END_ON_SILENCE_S, turn_starts(scene)), scene)
            unheard = unheard_ends(run, scene)
            if v == BASELINE:
                decided = [d - END_ON_SILENCE_S for d in false_end_decisions(run, scene)]
                stretches = sorted(set(decided) | set(unheard))
            print(f"   {v:11s} found {s.found}/{s.turns} false ends {s.false_ends} (decided at "
                  + (", ".join(f"{d:.2f}" for d in false_end_decisions(run, scene)) or "-")
                  + f"), closest call {closest_call(run, scene):+.2f} s, ends of speech whose "
                  "3 s ran out inside a turn unheard: "
                  + (", ".join(f"{t:.2f}" for t in unheard) or "-"))
        probs = {v: frame_probabilities(frames, answers[v]) for v in names}
        for end in stretches:
            print(f"   stretch lost by the baseline (end dated {end:.2f}, decision "
                  f"{end + END_ON_SILENCE_S:.2f}); utterances: "
                  + ", ".join(f"{a:.2f}-{b:.2f}" for a, b, _ in scene.utterances
                              if a - 4 <= end + END_ON_SILENCE_S and b >= end - 4))
            print("      t      " + " ".join(f"{v:>12s}" for v in names))
            for i in range(len(frames)):
                t = i * FRAME_S
                if end - 0.6 <= t <= end + END_ON_SILENCE_S + 0.3:
                    print(f"   {t:7.2f} " + " ".join(f"{probs[v][i]:10.2f} {mark(probs[v][i])}"
                                                   for v in names))


def sweep(variants: list[str], args: argparse.Namespace, maker: af.SpeechMaker) -> None:
    """Per level: the baseline and each variant on the same rooms."""
    names = [BASELINE, *variants]
    table = []
    for level, specs in rooms_by_level(args):
        totals = {v: RoomScore() for v in names}
        closest = dict.fromkeys(names, float("inf"))
        for spec in specs:
            scene = rs.build_room(spec, maker)
            frames = frames_of(scene)
            line = []
            for v in names:
                run = replay(frames, answers_with(v, spec, frames))
                s = score(af.turn_ends(run, END_ON_SILENCE_S, turn_starts(scene)), scene)
                totals[v].add(s)
                closest[v] = min(closest[v], closest_call(run, scene))
                line.append(f"{v} {s.found}/{s.turns} false {s.false_ends}")
            print(f"# {spec.name}: " + "; ".join(line), flush=True)
        for v in names:
            t = totals[v]
            row = (f"{level:g} dBFS {v:11s} found {t.found}/{t.turns}, false ends {t.false_ends}, "
                   f"delay p50 {pct(t.delays, 50):+.2f} p95 {pct(t.delays, 95):+.2f} max "
                   f"{max(t.delays, default=float('nan')):+.2f}, closest call {closest[v]:+.2f} s")
            print(row, flush=True)
            table.append(row)
    print("\n" + "\n".join(table))


def cpu(variants: list[str], maker: af.SpeechMaker, seconds: float = 60.0) -> None:
    """CPU per audio second: each filter alone, Silero raw, Silero behind each filter."""
    spec = spec_for(-31.0, 8, (-34.0, -24.0))
    frames = [f for f, _ in frames_of(rs.build_room(spec, maker))][: int(seconds / FRAME_S)]
    audio_s = len(frames) * FRAME_S
    samples = [np.frombuffer(f, dtype="<i2").astype(np.float32) / 32768.0 for f in frames]

    def per_second(work: Callable[[], None]) -> float:
        c0 = time.process_time()
        work()
        return (time.process_time() - c0) / audio_s * 1000.0

    def silero(det) -> Callable[[], None]:
        return lambda: [det.probability(f) for f in frames]

    print(f"{audio_s:.0f} s of {spec.name}; ms of CPU per audio second")
    print(f"   silero raw             {per_second(silero(SileroDetector())):6.2f}")
    for v in variants:
        filt = VARIANTS[v]()
        alone = per_second(lambda filt=filt: [filt.process(x) for x in samples])
        wrapped = per_second(silero(FilteredDetector(SileroDetector(), VARIANTS[v]())))
        print(f"   {v:11s} filter alone {alone:6.2f}   silero behind it (incl. filter) {wrapped:6.2f}")
    print(f"   silero raw (again)     {per_second(silero(SileroDetector())):6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="hp200,nsup",
                        help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("--cutins", action="store_true", help="only the five cut-in rooms")
    parser.add_argument("--room", action="append", default=[], metavar="LEVEL:K",
                        help="with --cutins: this room (k-th at LEVEL dBFS) instead of the five")
    parser.add_argument("--cpu", action="store_true", help="only the CPU figures")
    add_room_arguments(parser)
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {', '.join(unknown)} (known: {', '.join(VARIANTS)})")
    maker = af.SpeechMaker(OUT / "speech-cache")
    listener_src = (ROOT / "device" / "listening" / "listener.py").read_bytes()
    print(f"listener.py sha256 {hashlib.sha256(listener_src).hexdigest()[:12]} (the end rule "
          "replayed: results move with it)", flush=True)
    if args.cutins:
        chosen = tuple((float(r.split(":")[0]), int(r.split(":")[1])) for r in args.room)
        cutins(variants, maker, chosen or CUTINS)
    elif args.cpu:
        cpu(variants, maker)
    else:
        sweep(variants, args, maker)


if __name__ == "__main__":
    main()
