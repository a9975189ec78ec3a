"""Admin page: response times of the main pages and the admin service's resident memory.

Runs the real `circlebox admin` (waitress) as its own process on loopback, with a data folder
holding usage records and a small stand-in runtime behind the real control socket, logs in like
a browser (cookies, CSRF token) and times each page. Memory is the process's VmRSS from /proc:
idle after start, after every page, and after one "Listen" (which loads Piper and the voice).

    .venv/bin/python bench/bench_admin.py [--n 30] [--sessions 300]
"""

from __future__ import annotations

import argparse
import http.cookiejar
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

PASSWORD = "bench password for the box"
PAGES = ["/panel/", "/panel/status.json", "/circles/", "/circles/three-step-circle/edit",
         "/settings/", "/usage/", "/usage/export.csv", "/system/"]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def seed(data_dir: Path, sessions: int) -> None:
    from device.usage import UsageStore

    store = UsageStore(data_dir / "usage.sqlite")
    for i in range(sessions):
        day = 1 + i % 28
        month = 1 + (i // 28) % 12
        store.upsert({
            "id": f"b{i}", "box": "bench", "script": "three-step-circle", "script_version": 1,
            "started_at": f"2026-{month:02d}-{day:02d}T09:00:00+00:00", "duration_s": 3600.0,
            "completed": True, "steps_planned": 6, "steps_delivered": 6, "core_planned": 4,
            "core_delivered": 4, "repeats": 1, "pauses": 0, "help_count": i % 3,
            "attendance": 8 + i % 7, "clock_trusted": True,
            "rounds": [{"step": "share", "turns": 10, "passes": 1}],
        })
    store.close()


def fake_runtime(data_dir: Path):
    from device.control import ControlServer, socket_path

    status = {"state": "waiting", "step": "share", "step_title": "Sharing round", "step_index": 2,
              "steps_total": 6, "turn": 3, "led": "solid", "session_elapsed_s": 900, "volume": 0.7,
              "last_input": None, "listening": {"level_db": -40, "noise_floor_db": -60,
                                                "in_speech": False, "commands": "on"},
              "health": {"speaker": "ok", "mic": "ok", "buttons": "ok", "voices": "ok", "vosk": "ok"},
              "faults": []}
    return ControlServer(socket_path(data_dir), lambda: status, lambda a, s: None).start()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=30, help="requests per page")
    parser.add_argument("--sessions", type=int, default=300, help="usage records in the store")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-admin-"))
    data = tmp / "data"
    data.mkdir()
    seed(data, args.sessions)
    control = fake_runtime(data)
    proc = subprocess.Popen([sys.executable, "-m", "device.cli", "--data", str(data), "admin",
                             "--host", "127.0.0.1", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        port = re.search(r":(\d+)/", line)[1]
        base = f"http://127.0.0.1:{port}"
        time.sleep(0.5)
        idle = rss_mb(proc.pid)
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

        def get(path: str) -> bytes:
            with opener.open(base + path, timeout=60) as r:
                return r.read()

        def post(path: str, fields: dict) -> bytes:
            body = urllib.parse.urlencode(fields).encode()
            with opener.open(base + path, data=body, timeout=300) as r:
                return r.read()

        page = get("/setup").decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]
        code = (data / "secrets" / "setup-code").read_text().strip()
        post("/setup", {"csrf_token": token, "code": code, "password": PASSWORD, "confirm": PASSWORD})
        # the CSRF secret is renewed at login: take the token from a page of the new session
        token = re.search(r'name="csrf_token" value="([^"]+)"', get("/circles/").decode())[1]
        results = {}
        for path in PAGES:
            get(path)  # warm (templates compiled, modules imported)
            times = []
            for _ in range(args.n):
                start = time.perf_counter()
                get(path)
                times.append((time.perf_counter() - start) * 1000)
            results[path] = (statistics.median(times), max(times))
        pages_rss = rss_mb(proc.pid)
        start = time.perf_counter()
        post("/circles/three-step-circle/listen.json?step=0", {
            "csrf_token": token, "nsteps": "1", "language": "en_US", "voice": "en_US-joe-medium",
            "s0_id": "welcome", "s0_kind": "say", "s0_text": "Welcome, everyone. This is a listening circle.",
            "s0_then": "wait_for_next"})
        listen_s = time.perf_counter() - start
        start = time.perf_counter()
        post("/circles/three-step-circle/listen.json?step=0", {
            "csrf_token": token, "nsteps": "1", "language": "en_US", "voice": "en_US-joe-medium",
            "s0_id": "welcome", "s0_kind": "say", "s0_text": "Welcome, everyone. This is a listening circle.",
            "s0_then": "wait_for_next"})
        listen_cached_s = time.perf_counter() - start
        piper_rss = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
        control.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"Admin page, waitress on loopback, {args.n} requests per page, {args.sessions} usage records")
    print("| page | median ms | max ms |")
    print("|---|---:|---:|")
    for path, (median, worst) in results.items():
        print(f"| `{path}` | {median:.1f} | {worst:.1f} |")
    print(f"| Listen (first: loads Piper + voice, renders one sentence) | {listen_s * 1000:.0f} | |")
    print(f"| Listen again (same text: served from the cache) | {listen_cached_s * 1000:.0f} | |")
    print()
    print(f"Resident memory (VmRSS): idle after start {idle:.0f} MB; after every page {pages_rss:.0f} MB; "
          f"after a Listen (Piper loaded) {piper_rss:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
