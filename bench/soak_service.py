"""Soak of the real service in wall-clock time: `circlebox run` as the Pi runs it (pygame mixer
on SDL's disk driver, gpiozero's mock pins and their threads, the control socket, the mic
thread and listener) with circles driven back to back for as long as asked.

The virtual-time soak (`bench/soak.py`) covers the engine, sounds, usage store and listener for
an eight-hour day in minutes; this one covers the adapters around them, for real hours:

- **the room**: `arecord` on the service's PATH is a stand-in at the process boundary that
  streams `bench.soak.room_scene` (people speaking 1.5 to 8 s at a time, with thinking pauses
  of 1 to 12 s, over a fan; 16 kHz S16LE) in real time, looped. With `--mic-drop-s N` each
  arecord stops after N s, as an unplugged or crashed mic would; the runtime reports it, keeps
  the buttons, and restarts it 10 s later.
- **the facilitator**: over the control socket (the path the admin panel's buttons take) a
  circle is started, then moved on with NEXT and SKIP 0.2 to 2.5 s apart (prompts play partly),
  with PAUSE and resume, HELP and resume, REPEAT and volume now and then; in a round the room
  is left to end its turns by silence for a while (15 to 60 s) before SKIP closes it.
- **sampled** after every circle, once the mic is up, from /proc: the service's resident
  memory, open files and threads; the status must answer with no faults but the mic's own.

Pass: the service never dies, every circle started reaches session_finished and is in the
usage store as ended, SIGTERM stops it cleanly (exit 0), every file in the data dir is whole,
and (the first circle is warm-up) the median of the later half of the samples is at most
`RSS_BOUND_MB` above that of the earlier half for resident memory, and 0 above for open files
and threads.

    .venv/bin/python -m bench.soak_service --minutes 60 --mic-drop-s 300   # prints the section
"""

from __future__ import annotations

import contextlib
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.service import PYTHON, ROOT, RuntimeProcess, check_files, prepare_data, proc_sample, wait_ready
from bench.soak import RSS_BOUND_MB, room_scene

GROWTH_BOUNDS = {"rss_mb": RSS_BOUND_MB, "fds": 0, "threads": 0}
CIRCLE_TIMEOUT_S = 300.0
SPEECH_LONGEST_S = 8.0  # a turn's speech: 1.5 to 8 s between thinking pauses of 1 to 12 s
FAKE_ARECORD = '''#!{python}
"""arecord stand-in (bench/soak_service.py): {scene} in real time, looped, to stdout."""
import os, sys, time
scene = open({scene!r}, "rb").read()
drop = float(os.environ.get("CIRCLEBOX_SOAK_MIC_DROP_S") or 0)
out, frame, n, t0 = sys.stdout.buffer, 960, 0, time.monotonic()
pos = (os.getpid() * 7919 % (len(scene) // frame)) * frame  # each restart hears another part of the room
try:
    while not drop or n * 0.03 < drop:
        if pos + frame > len(scene):
            pos = 0
        out.write(scene[pos:pos + frame])
        out.flush()
        pos, n = pos + frame, n + 1
        time.sleep(max(0.0, t0 + n * 0.03 - time.monotonic()))
except (BrokenPipeError, KeyboardInterrupt):
    pass
'''
MOVES = ["next"] * 6 + ["skip"] * 3 + ["pause", "help", "repeat", "volume_up", "volume_down"]


def install_room(work: Path, data: Path, seed: int) -> Path:
    """A bin dir whose `arecord` streams the room; returns it (goes first on the service's PATH)."""
    return install_microphone(work, room_scene(data, seed, longest_s=SPEECH_LONGEST_S))


def install_microphone(work: Path, pcm: bytes) -> Path:
    """A bin dir whose `arecord` streams `pcm` (16 kHz mono S16LE) in real time, looped: the
    room at the process boundary, for a real `circlebox run`. Returns the dir (first on PATH)."""
    scene = work / "room.raw"
    scene.write_bytes(pcm)
    bin_dir = work / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    arecord = bin_dir / "arecord"
    arecord.write_text(FAKE_ARECORD.format(python=PYTHON, scene=str(scene)), encoding="utf-8")
    arecord.chmod(0o755)
    return bin_dir


@dataclass
class ServiceSoakResult:
    minutes: float
    circles_started: int = 0
    circles_finished: int = 0
    stored_ended: int = 0
    wall_s: float = 0.0
    exit_code: int | None = None
    heard: dict = field(default_factory=dict)  # journal counts: speech, turn ends, mic restarts
    samples: list[dict] = field(default_factory=list)  # {"t", "circle", "rss_mb", "fds", "threads"}
    faults: list[str] = field(default_factory=list)
    log: Path | None = None  # the service's journal (stderr)

    def growth(self, key: str) -> float:
        """How much the typical figure rose: the median of the later half of the samples minus the
        median of the earlier half, the first circle being warm-up. Samples are taken after each
        circle with the mic up, so like is compared with like; a leak moves the median, a single
        sample caught with a blink thread ending or a mic pipe closing does not. (A first rule,
        the rise of the floor, failed a 90-minute run on one such low sample in the earlier half.)"""
        after = self.samples[1:]
        half = len(after) // 2
        if half == 0:
            return 0.0
        return statistics.median(s[key] for s in after[-half:]) - statistics.median(s[key] for s in after[:half])

    def spread(self, key: str) -> tuple[float, float]:
        values = [s[key] for s in self.samples] or [0]
        return min(values), max(values)

    @property
    def passed(self) -> bool:
        return (not self.faults and self.circles_started > 0 and self.exit_code == 0
                and self.circles_finished == self.circles_started == self.stored_ended
                and all(self.growth(k) <= bound for k, bound in GROWTH_BOUNDS.items()))


def _drive_one_circle(client, proc: RuntimeProcess, rng: random.Random, result: ServiceSoakResult,
                      round_s: tuple[float, float]) -> None:
    """Start a circle and move it on until session_finished (or say it got stuck). In a round the
    room is mostly left to end its turns by silence; elsewhere the facilitator moves on."""
    from device.control import BoxNotRunning

    before = len(proc.finished)
    deadline = time.monotonic() + CIRCLE_TIMEOUT_S

    def press(action: str) -> None:
        with contextlib.suppress(BoxNotRunning, ValueError):  # a busy socket: the next press goes
            client.dispatch(action, source="soak")

    def status() -> dict:
        with contextlib.suppress(BoxNotRunning, ValueError):
            return client.status()
        return {}

    press("next")
    result.circles_started += 1
    round_since: float | None = None
    round_for = 0.0
    while len(proc.finished) == before:
        if time.monotonic() > deadline or proc.proc.poll() is not None:
            result.faults.append(f"circle {result.circles_started} stuck or service gone: "
                                 f"exit {proc.proc.poll()}, state {status().get('state')!r}")
            return
        now = status()
        if now.get("state") == "in_round":
            if now.get("turn") is None:  # the round's prompt is still playing
                time.sleep(0.5)
                continue
            if round_since is None:
                round_since, round_for = time.monotonic(), rng.uniform(*round_s)
            if time.monotonic() - round_since < round_for:
                time.sleep(rng.uniform(1.0, 4.0))  # the room speaks; its turns end by silence
                continue
            press("skip")  # the facilitator closes the round
            round_since = None
            continue
        round_since = None
        move = rng.choice(MOVES)
        press(move)
        if move in ("pause", "help"):  # a tea break or a word with the facilitator, then on
            time.sleep(rng.uniform(0.3, 2.0))
            press("pause" if move == "pause" else "next")
        time.sleep(rng.uniform(0.2, 2.5))
    result.circles_finished += 1


def _when_the_mic_is_up(client, timeout: float = 15.0) -> dict:
    """The status once the microphone is listening (it restarts 10 s after a drop), so every
    sample sees the same parts running: arecord's pipes open, the same LED pattern."""
    from device.control import BoxNotRunning

    end = time.monotonic() + timeout
    status: dict = {}
    while time.monotonic() < end:
        with contextlib.suppress(BoxNotRunning, ValueError):
            status = client.status()
            if status.get("listening_active"):
                return status
        time.sleep(0.2)
    return status


def run_service_soak(rendered: Path, work: Path, minutes: float, seed: int = 1,
                     mic_drop_s: float = 0.0,
                     round_s: tuple[float, float] = (15.0, 60.0)) -> ServiceSoakResult:
    """`rendered`: a data dir with the default circle rendered (tests/conftest.py `rendered_default`);
    `round_s`: how long the room has each round before the facilitator closes it."""
    import os

    from device.control import ControlClient, socket_path
    from device.usage import UsageStore, store_path

    rng = random.Random(seed)
    data = prepare_data(work / "data", rendered)
    bin_dir = install_room(work, rendered, seed)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "CIRCLEBOX_LISTENING__ENABLED": "true"}
    if mic_drop_s:
        env["CIRCLEBOX_SOAK_MIC_DROP_S"] = str(mic_drop_s)
    result = ServiceSoakResult(minutes=minutes)
    proc = RuntimeProcess(data, work, 0, **env)
    t0 = time.monotonic()
    status = wait_ready(socket_path(data), proc.proc)
    if status is None:
        proc.save_log()
        result.faults.append(f"the service did not start (log {proc.log})")
        proc.kill()
        return result
    client = ControlClient(socket_path(data), timeout=5.0)
    while time.monotonic() - t0 < minutes * 60 and proc.proc.poll() is None and not result.faults:
        _drive_one_circle(client, proc, rng, result, round_s)
        status = _when_the_mic_is_up(client)
        other = [f for f in status.get("faults", []) if not f.startswith("mic:")]
        if other:
            result.faults.append(f"after circle {result.circles_started}: faults {other}")
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            result.samples.append({"t": round(time.monotonic() - t0, 1), "circle": result.circles_started,
                                   **proc_sample(proc.proc.pid)})
    result.wall_s = time.monotonic() - t0
    alive = proc.proc.poll() is None
    result.exit_code = proc.stop() if alive else proc.proc.returncode
    if not alive:
        result.faults.append(f"the service died (exit {result.exit_code})")
    result.heard = {key: proc.count(text) for key, text in (
        ("speech_started", "speech_started"), ("turn_ended", "turn_ended"),
        ("turns_ended_by_silence", "reason=silence"), ("mic_faults", "circlebox.runtime: fault: mic:"))}
    proc.save_log()
    result.log = proc.log
    result.faults += check_files(data)
    store = UsageStore(store_path(data))
    try:
        result.stored_ended = len([r for r in store.sessions() if r["ended_at"]])
    finally:
        store.close()
    return result


def markdown(r: ServiceSoakResult) -> str:
    rows = "\n".join(f"| {s['t'] / 60:.0f} | {s['circle']} | {s['rss_mb']:.1f} | {s['fds']} | {s['threads']} |"
                     for s in _thin(r.samples, 12))
    growth = ", ".join(f"{k} {r.growth(k):+.2f} (bound {b:g})" for k, b in GROWTH_BOUNDS.items())
    spreads = ", ".join(f"{k} {lo:g} to {hi:g}" for k in GROWTH_BOUNDS for lo, hi in [r.spread(k)]) or "-"
    return f"""## Soak: the real service, wall clock

`python -m bench.soak_service --minutes {r.minutes:g}`: the real `circlebox run` (pygame on SDL's disk
driver, mock pins, control socket, mic thread with an `arecord` stand-in streaming a room of people
speaking over a fan) for {r.wall_s / 60:.0f} minutes of wall time. {r.circles_started} circles driven
over the control socket (NEXT and SKIP 0.2 to 2.5 s apart, pauses, help, repeats, volume).

| minute | circles | resident memory (MiB) | open files | threads |
|---|---|---|---|---|
{rows}

Heard (journal): {r.heard}. Circles started {r.circles_started}, finished {r.circles_finished},
ended in the usage store {r.stored_ended}; SIGTERM exit code {r.exit_code}. Growth (median of the
later half of the samples over the earlier half's, after the first circle): {growth}. Lowest and highest
of all {len(r.samples)} samples: {spreads}. Faults: {r.faults or "none"}.
**{"PASS" if r.passed else "FAIL"}**.
"""


def _thin(samples: list[dict], n: int) -> list[dict]:
    if len(samples) <= n:
        return samples
    step = (len(samples) - 1) / (n - 1)
    return [samples[round(i * step)] for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--mic-drop-s", type=float, default=300.0,
                   help="each arecord stops after this many seconds (0: never)")
    p.add_argument("--rendered", type=Path, default=ROOT / ".pytest_cache" / "d" / "rendered-default",
                   help="a data dir with the default circle rendered (rendered here if missing)")
    p.add_argument("--log", type=Path, help="keep the service's journal here")
    p.add_argument("--samples", type=Path, help="write every sample here (JSON)")
    args = p.parse_args(argv)
    from device.content import cache_dir, ensure_rendered, resolve_script

    ensure_rendered(resolve_script("three-step-circle", args.rendered), cache_dir(args.rendered), voices_dir=None,
                    sample_rate=22050, loudness_lufs=-18.0, quiet=True)
    with tempfile.TemporaryDirectory() as tmp:
        result = run_service_soak(args.rendered, Path(tmp), args.minutes, args.seed, args.mic_drop_s)
        if args.log and result.log:
            args.log.write_bytes(result.log.read_bytes())
    if args.samples:
        import json

        args.samples.write_text(json.dumps(result.samples, indent=1), encoding="utf-8")
    print(markdown(result))
    print(f"median RSS {statistics.median(s['rss_mb'] for s in result.samples):.1f} MiB" if result.samples else "")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
