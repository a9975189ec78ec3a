"""Runtime figures: press-to-play latency (software path), start-up to READY, resident memory.

Run: .venv/bin/python -m bench.bench_runtime   (renders the default circle first if needed)
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("SDL_AUDIODRIVER", "disk")
os.environ.setdefault("SDL_DISKAUDIOFILE", "/dev/null")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "out" / "data"


def prepare() -> None:
    from device.content import cache_dir, ensure_rendered, resolve_script

    loaded = resolve_script("three-step-circle", DATA)
    ensure_rendered(loaded, cache_dir(DATA), voices_dir=None, sample_rate=22050, loudness_lufs=-18.0)


def config():
    from device.config import load_config

    return load_config(etc_path=None, environ={},
                       overrides={"paths": {"data_dir": str(DATA)}, "buttons": {"pin_factory": "mock"}})


def press_latency(presses: int = 200) -> list[float]:
    """From the button's release (a short press is recognised then) to pygame's Channel.play()."""
    from gpiozero.pins.mock import MockFactory

    from device.runtime import Runtime

    runtime = Runtime(config(), pin_factory=MockFactory(), control=False, listening=False)
    runtime.start()
    loop = threading.Thread(target=runtime.run, daemon=True)
    loop.start()
    speaker = runtime.box.speaker
    played = threading.Event()
    real_play = speaker.play
    stamps: list[float] = []

    def timed_play(sound: str) -> None:
        real_play(sound)
        stamps.append(time.perf_counter())
        played.set()

    speaker.play = timed_play
    pin = runtime.buttons.pin("repeat")
    latencies = []
    for _ in range(presses):
        played.clear()
        pin.drive_low()
        time.sleep(0.02)
        t0 = time.perf_counter()
        pin.drive_high()
        if not played.wait(2):
            raise RuntimeError("no sound after a press")
        latencies.append(stamps[-1] - t0)
        time.sleep(0.03)
    runtime.stop()
    loop.join(5)
    runtime.close()
    return latencies


def startup_to_ready(runs: int = 5) -> tuple[list[float], int]:
    """Spawn `circlebox run` as systemd would and time the READY=1 datagram; RSS when ready."""
    times, rss = [], 0
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "notify")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(path)
            sock.settimeout(60)
            env = {**os.environ, "NOTIFY_SOCKET": path, "CIRCLEBOX_PATHS__DATA_DIR": str(DATA),
                   "CIRCLEBOX_BUTTONS__PIN_FACTORY": "mock"}
            t0 = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", "device.cli", "run"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while b"READY=1" not in sock.recv(4096):
                pass
            times.append(time.perf_counter() - t0)
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = max(rss, int(line.split()[1]))
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise RuntimeError("circlebox run did not stop within 20 s of SIGTERM") from None
            sock.close()
    return times, rss


def main() -> None:
    prepare()
    lat = press_latency()
    ms = sorted(x * 1000 for x in lat)
    ready, rss_kb = startup_to_ready()
    buffer_ms = 512 / 22050 * 1000
    print("## Runtime (device service)\n")
    print("| measure | figure |")
    print("|---|---|")
    print(f"| press to `Channel.play()` (software path, {len(ms)} presses) | median {statistics.median(ms):.2f} ms, "
          f"95th {ms[int(len(ms) * 0.95)]:.2f} ms, max {ms[-1]:.2f} ms |")
    print(f"| + mixer buffer until the first sample leaves (512 samples at 22.05 kHz) | ≤ {buffer_ms:.1f} ms |")
    print(f"| start-up to READY=1 (`circlebox run`, {len(ready)} runs) | median {statistics.median(ready):.2f} s, "
          f"max {max(ready):.2f} s |")
    print(f"| resident memory when ready (default circle preloaded) | {rss_kb / 1024:.0f} MiB |")


if __name__ == "__main__":
    main()
