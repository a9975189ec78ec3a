"""What the box hears after a turn's last word: per-frame level, noise floor and detector
probability around the slowest turn ends, through the real box (bench/bench_listening_box.py);
and a quick check of the end rule on more rooms than the sweep, levels of your choice.

    .venv/bin/python bench/bench_listening_tails.py --seed 140 --noise -34
    .venv/bin/python bench/bench_listening_tails.py --check --levels=-37,-34,-31 --rooms 5
    .venv/bin/python bench/bench_listening_tails.py --check --levels=-46,-40,-34 --rooms 5 \
        --voice-db=-40,-30          # softer speakers: more soft words near the noise

Probe (default): for each turn, the decision's delay beyond `end_on_silence_s`, and (for turns
slower than `--slower-than`) one line per 30 ms frame from just before the true end to where
the box dated the end of speech: time after the true end, level, floor, Silero's p, and the
listener's state. Used to study why a turn end was late before changing the end rule
(docs/listening.md). `--check`: the box's figures per level (ends found, false ends, delay
p50 / p95 / max) on the sweep's rooms (same seeds as bench_listening_sweep.py for the first
three of each level).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT / "tests"), str(ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import audio_fixtures as af  # noqa: E402
import real_speech as rs  # noqa: E402

from bench.bench_listening_box import BoxRoom  # noqa: E402
from device.listening import FRAME_S, Listener, ListenEvent, SpeechEnded  # noqa: E402

OUT = ROOT / "bench" / "out"
END_ON_SILENCE_S = 3.0
EXTRAS = {"full": ("hum", "knocks", "babble", "prompts"), "knocks": ("knocks", "prompts"),
          "babble": ("hum", "babble")}


class RecordingListener(Listener):
    """The box's listener, also keeping one row per frame (for this bench only)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rows: list[tuple[float, float, float, float, bool, int | None, bool]] = []
        self.ends: list[float] = []

    def process(self, frame: bytes, box_playing: bool) -> list[ListenEvent]:
        t = self.t
        events = super().process(frame, box_playing)
        self.rows.append((t, self.level_db, self.noise_floor_db, self.speech_probability,
                          self.in_speech, self._silence_from, self.muted))
        self.ends += [e.t for e in events if isinstance(e, SpeechEnded)]
        return events


def check(levels: list[float], rooms: int, voice_db: tuple[float, float]) -> None:
    """The box's figures per level on `rooms` rooms a level (the sweep's seeds)."""
    from bench.bench_listening_sweep import RoomScore, pct, run_room

    box = BoxRoom(OUT / "listening-box")
    maker = af.SpeechMaker(OUT / "speech-cache")
    cycle = [EXTRAS["full"], EXTRAS["knocks"], EXTRAS["babble"]]
    for level in levels:
        index = rs.NOISE_SWEEP_DB.index(level) if level in rs.NOISE_SWEEP_DB else len(
            rs.NOISE_SWEEP_DB) + int(-level)
        total = RoomScore()
        for k in range(rooms):
            spec = rs.RoomSpec(seed=100 + 10 * index + k, noise_db=level,
                               extras=cycle[k % len(cycle)], voice_db=voice_db)
            s = run_room(spec, maker, ("circlebox",), box=box)["circlebox"]
            total.add(s)
            print(f"# {spec.name}: found {s.found}/{s.turns}, false ends {s.false_ends}, delays "
                  + " ".join(f"{d:+.2f}" for d in s.delays), flush=True)
        print(f"{level:g} dBFS: found {total.found}/{total.turns}, false ends "
              f"{total.false_ends}, delay p50 {pct(total.delays, 50):+.2f} p95 "
              f"{pct(total.delays, 95):+.2f} max {max(total.delays):+.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=140)
    parser.add_argument("--noise", type=float, default=-34.0)
    parser.add_argument("--extras", choices=sorted(EXTRAS), default="full")
    parser.add_argument("--slower-than", type=float, default=0.45,
                        help="print frames for turns whose delay is above this (s)")
    parser.add_argument("--check", action="store_true", help="figures per level, not frames")
    parser.add_argument("--levels", default="-37,-34,-31", help="steady noise levels (dBFS)")
    parser.add_argument("--rooms", type=int, default=5, help="rooms per level for --check")
    parser.add_argument("--voice-db", default="-34,-24", help="speakers' level range (dBFS)")
    args = parser.parse_args()
    lo, hi = (float(v) for v in args.voice_db.split(","))
    if args.check:
        check([float(v) for v in args.levels.split(",")], args.rooms, (lo, hi))
        return
    spec = rs.RoomSpec(seed=args.seed, noise_db=args.noise, extras=EXTRAS[args.extras],
                       voice_db=(lo, hi))
    box = BoxRoom(OUT / "listening-box")
    probe: list[RecordingListener] = []

    def make(settings):
        probe.append(RecordingListener(settings))
        return probe[0]

    run = box.run(spec, af.SpeechMaker(OUT / "speech-cache"), make_listener=make)
    listener = probe[0]
    print(f"# {spec.name}")
    offset = run.room_t0
    for i, (a, b) in enumerate(run.scene.turns):
        later = [d for d in run.decisions if d >= b]
        for d in (d for d in run.decisions if a <= d < b):
            print(f"turn {i + 1}: FALSE END at {d:.2f} s (end of speech dated "
                  f"{d - END_ON_SILENCE_S:.2f} s)")
            _print_frames(listener, offset, d - END_ON_SILENCE_S - 1.0, d - END_ON_SILENCE_S + 1.0,
                          d - END_ON_SILENCE_S)
        delay = later[0] - b - END_ON_SILENCE_S if later else float("nan")
        last_utt = max(u for u in run.scene.utterances if u[2] == i)
        print(f"turn {i + 1}: {a:7.2f}-{b:7.2f} s, last utterance from {last_utt[0]:.2f}, "
              f"delay {delay:+.2f} s")
        if not later or delay <= args.slower_than:
            continue
        _print_frames(listener, offset, b - 0.3, later[0] - END_ON_SILENCE_S + 0.1, b)


def _print_frames(listener: RecordingListener, offset: float, lo: float, hi: float,
                  ref: float) -> None:
    """One line per frame between `lo` and `hi` (room clock), times relative to `ref`."""
    print("   after ref  level  floor     p  state")
    for t, level, floor, p, in_speech, silence_from, muted in listener.rows:
        rt = t - offset
        if lo <= rt <= hi:
            state = ("muted" if muted else "silence from %+.2f" % (
                silence_from * FRAME_S - offset - ref) if silence_from is not None
                else "speech" if in_speech else "-")
            band = "sure" if p >= 0.5 else "unsure" if p >= 0.3 else ""
            print(f"   {rt - ref:+7.2f}  {level:5.1f}  {floor:5.1f}  {p:4.2f}  {band:6s} {state}")


if __name__ == "__main__":
    main()
