"""Soak: an eight-hour clinic day of circles, back to back, in virtual time.

The real engine, the real rendered sounds and the real usage store run through
`device.simulate.run_simulation` from a generated events file (buttons: start, move through the
steps, rounds of turns, pauses, help, volume, repeat; after each circle NEXT twice starts the
next). Every simulated hour the process's resident memory (VmRSS) and open file handles
(/proc/self/fd) are sampled.

Pass: no crash, every circle started reaches session_finished, RSS grows by at most 10 MB and
open files by 0 after the first hour (warm-up).

    .venv/bin/python -m bench.soak             # 8 virtual hours, prints the BENCHMARKS.md section
    .venv/bin/python -m bench.soak --hours 1   # quick look
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RSS_BOUND_MB = 10.0
FD_BOUND = 0


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def day_of_events(hours: float, seed: int = 1) -> tuple[list[dict], int]:
    """Button events for `hours` of circles back to back; returns (events, circles started)."""
    rng = random.Random(seed)
    end = hours * 3600
    events: list[dict] = []
    t = 1.0
    circles = 0

    def press(button: str, hold: bool = False) -> None:
        events.append({"t": round(t, 2), "button": button, **({"hold": True} if hold else {})})

    def extras() -> None:
        """What a facilitator also does now and then: pause, help, volume, repeat."""
        nonlocal t
        roll = rng.random()
        if roll < 0.10:
            press("pause")
            t += rng.uniform(10, 60)
            press("pause")  # resume
        elif roll < 0.15:
            press("help")
            t += rng.uniform(15, 40)
            press("pause")  # resume after help
        elif roll < 0.25:
            press("pause", hold=True)  # volume down
            t += rng.uniform(1, 5)
        elif roll < 0.30:
            press("repeat")
        t += rng.uniform(1, 5)

    while t < end - 1800:  # start a circle only if it can end before the day does
        if circles:
            press("next")  # finished -> idle
            t += rng.uniform(3, 20)
        press("next")  # start: welcome
        circles += 1
        t += rng.uniform(40, 70)
        extras()
        press("next")  # breathe (exercise)
        t += rng.uniform(100, 140)
        press("next")  # share (round)
        t += rng.uniform(25, 40)
        for _ in range(rng.randint(6, 14)):  # turns: NEXT ends each
            t += rng.uniform(30, 150)
            press("next")
            extras()
        press("next", hold=True)  # end the round: close-round
        t += rng.uniform(15, 25)
        for _ in range(rng.randint(6, 14)):
            t += rng.uniform(5, 20)
            press("next")
        # to the closing words, then the end bell: the circle ends by itself. A jump, not NEXT held,
        # so the day stays in step when listening has already ended a round by itself
        events.append({"t": round(t, 2), "action": "goto:close"})
        t += rng.uniform(90, 300)  # people leave, the next group arrives
    return events, circles


def room_scene(data: Path, seed: int = 1, longest_s: float | None = None) -> bytes:
    """A clinic room, about a minute and a half, 16 kHz S16LE mono: people speaking in turns (the
    real Piper voice's rendered prompts, quieter, with thinking pauses of 1 to 12 s) over a fan.
    `longest_s`: cut each piece of speech to 1.5 s to this many (short turns); else up to 20 s."""
    import numpy as np

    from audio.render import resample

    rng = np.random.default_rng(seed)
    wavs = sorted((data / "cache").rglob("*.wav"))[:6]
    pieces = []
    for path in wavs:
        with wave.open(str(path)) as w:
            x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768
            rate = w.getframerate()
        keep = 20.0 if longest_s is None else rng.uniform(1.5, longest_s)
        speech = resample(x, rate, 16000)[: int(16000 * keep)] * 0.3
        pieces += [speech, np.zeros(int(16000 * rng.uniform(1, 12)))]
    scene = np.concatenate(pieces)
    scene += rng.normal(0, 10 ** (-55 / 20), scene.size)  # a fan
    return (np.clip(scene, -1, 1) * 32767).astype("<i2").tobytes()


class RoomMic:
    """A microphone that hears `room_scene` for `hours`, looped, so memory stays flat on the
    harness's side."""

    def __init__(self, data: Path, hours: float, seed: int = 1) -> None:
        self.scene = room_scene(data, seed)
        self.frame_bytes = 960  # 30 ms at 16 kHz, 16-bit mono
        self.frames_left = int(hours * 3600 / 0.03)
        self.pos = 0

    def read_frame(self) -> bytes | None:
        if self.frames_left <= 0:
            return None
        self.frames_left -= 1
        if self.pos + self.frame_bytes > len(self.scene):
            self.pos = 0
        frame = self.scene[self.pos:self.pos + self.frame_bytes]
        self.pos += self.frame_bytes
        return frame

    def close(self) -> None:
        pass


@dataclass
class SoakResult:
    hours: float
    circles_started: int
    circles_finished: int
    completed: int
    final_state: str
    virtual_s: float
    wall_s: float
    samples: list[dict] = field(default_factory=list)  # {"hour", "rss_mb", "fds"}
    mic: str = "off"
    heard: dict = field(default_factory=dict)  # speech starts and ends, spoken commands

    @property
    def rss_growth_mb(self) -> float:
        after = self.samples[1:] or self.samples
        return max(s["rss_mb"] for s in after) - after[0]["rss_mb"]

    @property
    def fd_growth(self) -> int:
        after = self.samples[1:] or self.samples
        return max(s["fds"] for s in after) - after[0]["fds"]

    @property
    def passed(self) -> bool:
        return (self.circles_finished == self.circles_started and self.completed == self.circles_started
                and self.rss_growth_mb <= RSS_BOUND_MB and self.fd_growth <= FD_BOUND)


def run_soak(data: Path, hours: float = 8.0, seed: int = 1, work: Path | None = None,
             mic: bool = False) -> SoakResult:
    """`data`: a data dir with the default circle rendered (tests/conftest.py `rendered_default`)."""
    from device.buttons import ButtonMap
    from device.config import load_config
    from device.content import cache_dir, load_circle, resolve_script
    from device.simulate import read_events, run_simulation
    from device.usage import UsageStore

    config = load_config(etc_path=None, environ={}, overrides={"paths": {"data_dir": str(data)},
                                                                "buttons": {"pin_factory": "mock"}})
    circle = load_circle(resolve_script("three-step-circle", data), cache_dir(data))
    raw, started = day_of_events(hours, seed)
    room = listener = None
    mic_note = "off"
    if mic:
        from device.listening import build_listener, listening_settings

        room = RoomMic(data, hours, seed)
        listener, why_no_commands = build_listener(listening_settings(config.listening))
        mic_note = "room audio, spoken commands " + ("on" if why_no_commands is None else f"off ({why_no_commands})")
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        tmp = Path(tmp)
        events_path = tmp / "events.jsonl"
        events_path.write_text("\n".join(json.dumps(e) for e in raw) + "\n", encoding="utf-8")
        events = read_events(events_path, ButtonMap(config.buttons.map))
        usage = UsageStore(tmp / "usage.sqlite")
        samples: list[dict] = []
        counts = {"started": 0, "finished": 0, "completed": 0, "speech_started": 0, "speech_ended": 0, "command": 0}

        def sampler(event: str, fields: dict, t: float) -> None:
            if event == "session_started":
                counts["started"] += 1
            elif event == "session_finished":
                counts["finished"] += 1
                counts["completed"] += bool(fields.get("completed"))
            elif event in counts:
                counts[event] += 1
            while t >= len(samples) * 3600:  # the first event of each simulated hour
                samples.append({"hour": len(samples), "rss_mb": round(rss_mb(), 1), "fds": open_fds()})

        t0 = time.monotonic()
        with (tmp / "log.jsonl").open("w", encoding="utf-8") as log:
            result = run_simulation(config, circle, events, log_handle=log, usage=usage, extra_sinks=[sampler],
                                    mic=room, listener=listener)
        wall = time.monotonic() - t0
        samples.append({"hour": round(result.duration_s / 3600, 2), "rss_mb": round(rss_mb(), 1), "fds": open_fds()})
        stored = usage.sessions()
        usage.close()
    if len(stored) != counts["started"]:
        raise AssertionError(f"{counts['started']} circles started, {len(stored)} in the usage store")
    return SoakResult(hours=hours, circles_started=started if counts["started"] == started else counts["started"],
                      circles_finished=counts["finished"], completed=counts["completed"],
                      final_state=result.state, virtual_s=result.duration_s, wall_s=wall, samples=samples,
                      mic=mic_note, heard={k: counts[k] for k in ("speech_started", "speech_ended", "command")})


def markdown(r: SoakResult) -> str:
    rows = "\n".join(f"| {s['hour']} | {s['rss_mb']} | {s['fds']} |" for s in r.samples)
    return f"""## Soak

An eight-hour clinic day in virtual time (`python -m bench.soak`): {r.circles_started} circles back to
back through the real engine, rendered sounds and usage store (`device.simulate.run_simulation`),
driven by button events (start, steps, rounds of turns, pauses, help, volume, repeat).
{r.virtual_s / 3600:.1f} virtual hours ran in {r.wall_s:.0f} s of wall time.

| simulated hour | resident memory (MB) | open files |
|---|---|---|
{rows}

Microphone: {r.mic}; heard {r.heard or "nothing"}.
Circles started {r.circles_started}, finished {r.circles_finished} (completed {r.completed}), final state
`{r.final_state}`. Growth after the first hour: RSS {r.rss_growth_mb:+.1f} MB (bound {RSS_BOUND_MB:g}),
open files {r.fd_growth:+d} (bound {FD_BOUND}). **{"PASS" if r.passed else "FAIL"}**.
"""


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hours", type=float, default=8.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--mic", action="store_true", help="also listen: the room audio drives turn ends")
    p.add_argument("--data", type=Path, default=ROOT / ".pytest_cache" / "d" / "rendered-default",
                   help="a data dir with the default circle rendered (rendered here if missing)")
    args = p.parse_args(argv)
    from device.content import cache_dir, ensure_rendered, resolve_script

    ensure_rendered(resolve_script("three-step-circle", args.data), cache_dir(args.data), voices_dir=None,
                    sample_rate=22050, loudness_lufs=-18.0, quiet=True)
    result = run_soak(args.data, args.hours, args.seed, mic=args.mic)
    print(markdown(result))
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
