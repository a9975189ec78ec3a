"""Admin page under the review's attacks: login latency while 120 slow clients hold
connections, and /tmp growth while 20 connections send 20 MB bodies before any login.

    .venv/bin/python bench/bench_admin_limits.py [--before]

Runs the real `circlebox admin` (waitress) over loopback. `--before` serves the same app the
way it was served before issue 12 (plain waitress, one 21 MB body limit) for comparison.
Prints one JSON line; figures go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from admin_process import AdminProcess, half_sent  # noqa: E402

BEFORE = '''
import sys
from pathlib import Path
from waitress import create_server
from device.config import load_config
from local_admin import create_app
data = Path(sys.argv[sys.argv.index("--data") + 1])
port = int(sys.argv[sys.argv.index("--port") + 1])
app = create_app(load_config(etc_path=None, overrides={"paths": {"data_dir": str(data)}}, environ={}))
server = create_server(app, host="127.0.0.1", port=port, threads=4, ident="circlebox",
                       max_request_body_size=21 * 1024 * 1024, clear_untrusted_proxy_headers=True)
print(f"circlebox admin: http://localhost:{server.effective_port}/", flush=True)
server.run()
'''
MIB = 1024 * 1024


def login_latencies(admin: AdminProcess, n: int, timeout: float) -> list[float | None]:
    """Seconds for GET /login + POST /login (None: no answer within `timeout`)."""
    out: list[float | None] = []
    for _ in range(n):
        start = time.perf_counter()
        try:
            ok = admin.browser(timeout=timeout).login() == 302
        except OSError:
            ok = False
        out.append(time.perf_counter() - start if ok else None)
    return out


def summary(values: list[float | None]) -> dict:
    done = [v for v in values if v is not None]
    return {
        "answered": f"{len(done)}/{len(values)}",
        "median_ms": round(statistics.median(done) * 1000, 1) if done else None,
        "max_ms": round(max(done) * 1000, 1) if done else None,
    }


def tmp_growth(admin: AdminProcess, connections: int, body: int) -> dict:
    """Peak bytes under the server's TMPDIR while `connections` clients each send `body`."""
    peak = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], admin.tmp_bytes())
            stop.wait(0.05)

    def send(i: int) -> None:
        path = ("/circles/new", "/login", "/system/update", "/setup")[i % 4]
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; "
            f"boundary=xyz\r\nContent-Length: {body}\r\n\r\n"
        ).encode()
        try:
            with socket.create_connection(("127.0.0.1", admin.port), timeout=60) as sock:
                sock.sendall(head)
                chunk = bytes(MIB)
                for _ in range(body // MIB):
                    sock.sendall(chunk)
                time.sleep(1.0)  # hold the connection while the peak is sampled
        except OSError:
            pass  # refused at the headers: the server closed the connection

    watcher = threading.Thread(target=watch)
    watcher.start()
    senders = [threading.Thread(target=send, args=(i,)) for i in range(connections)]
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    stop.set()
    watcher.join()
    return {"connections": connections, "body_mb": body // MIB, "peak_tmp_mb": round(peak[0] / MIB, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", action="store_true", help="serve as before issue 12")
    parser.add_argument("--slow", type=int, default=120)
    parser.add_argument("--logins", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        base = Path(work)
        argv = None
        if args.before:
            script = base / "before.py"
            script.write_text(BEFORE)
            argv = [sys.executable, str(script), "--data", str(base / "data")]
        result: dict = {"server": "before issue 12" if args.before else "circlebox admin"}
        with AdminProcess(base / "data", base / "tmp", argv=argv) as admin:
            result["login_idle"] = summary(login_latencies(admin, args.logins, 30))
            held = half_sent(admin, args.slow, b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 40\r\n")
            result[f"login_with_{args.slow}_slow_clients"] = summary(login_latencies(admin, args.logins, 30))
            for sock in held:
                sock.close()
        with AdminProcess(base / "data2", base / "tmp2", argv=argv and [*argv[:-1], str(base / "data2")]) as admin:
            result["tmp_under_20x20MB"] = tmp_growth(admin, 20, 20 * MIB)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
