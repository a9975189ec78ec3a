"""Power cuts and a course: where the course stands survives a SIGKILL of the real `circlebox run`
right after a session ended and between sessions, and a kill in the middle of writing the
position never leaves it half-written (device.fsutil's atomic write)."""

from __future__ import annotations

import contextlib
import json
import random
import signal
import subprocess
import time
from pathlib import Path

from course_fixtures import COURSE_ID

from bench.service import PYTHON, ROOT, RuntimeProcess, box_env, check_files, wait_ready
from device.control import BoxNotRunning, ControlClient, socket_path


def start(data: Path, log_dir: Path, n: int) -> tuple[RuntimeProcess, dict]:
    proc = RuntimeProcess(data, log_dir, n, CIRCLEBOX_SESSION__COURSE=COURSE_ID)
    status = wait_ready(socket_path(data), proc.proc)
    assert status is not None, "".join(proc.lines)
    return proc, status


def hold_session(proc: RuntimeProcess, client: ControlClient) -> None:
    """NEXT, then SKIP through the steps until the journal says the session ended."""
    client.dispatch("next")
    end = time.monotonic() + 30
    while not proc.finished and time.monotonic() < end:
        with contextlib.suppress(BoxNotRunning, ValueError):
            if client.status()["state"] not in ("idle", "finished"):
                client.dispatch("skip")
        time.sleep(0.1)
    assert proc.finished == [True], "".join(proc.lines)


def test_the_course_position_survives_kills_after_a_session_and_between_sessions(course_data, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    proc, status = start(course_data, logs, 0)
    assert status["course"]["position"] == 0
    hold_session(proc, ControlClient(socket_path(course_data)))
    proc.kill()  # the instant the journal said session 1 ended
    assert check_files(course_data) == []
    proc, status = start(course_data, logs, 1)
    assert status["course"]["position"] == 1 and status["course"]["label"] == "Session 2 of 3"
    assert status["course"]["plan"][0]["held"] is True and not status["faults"]
    time.sleep(0.5)
    proc.kill()  # between sessions, idle
    proc, status = start(course_data, logs, 2)
    try:
        assert status["course"]["position"] == 1 and status["script"] == "tiny-circle"
    finally:
        proc.kill()


WRITER = r"""
import sys
from device.course import resolve_course
from device.course_position import PositionStore
data = sys.argv[1]
store = PositionStore(resolve_course(sys.argv[2], data).course, data)
print("ready", flush=True)
n = 0
while True:
    store.held(n % 4, "2026-01-01T00:00:00+00:00", True)  # moves to (n % 4) + 1, with a growing history
    n += 1
"""


def test_a_kill_while_the_position_is_written_never_loses_it(course_data):
    from device.course import resolve_course
    from device.course_position import read_position

    course = resolve_course(COURSE_ID, course_data).course
    rng = random.Random(5)
    for _ in range(12):
        child = subprocess.Popen([str(PYTHON), "-c", WRITER, str(course_data), COURSE_ID], cwd=ROOT,
                                 env=box_env(course_data), stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.0, 0.3))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        reading = read_position(course_data, course)
        assert reading.fault is None, reading.fault
        raw = json.loads((course_data / "state" / f"course-{COURSE_ID}.json").read_text())
        assert raw["position"] == raw["held"][-1]["index"] + 1  # a whole write: position and history agree
