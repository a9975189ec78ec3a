"""The new release's self-test, run before the box switches to it: the release's own hook
(through an interpreter: the data partition is noexec), and for content, every script loads.
A slow hook is not silence: the narrator heartbeats while it runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from device.update.announce import Narrator
from device.update.box import Box
from device.update.manifest import Manifest

SELF_TEST_HOOK = "hooks/self-test"  # a shell script, or hooks/self-test.py for Python


def _hook_command(release: Path) -> list[str] | None:
    """How to run the release's self-test through an interpreter: the data partition is
    mounted noexec, so the hook is read by /bin/sh or by this Python, never exec'd itself."""
    if (release / f"{SELF_TEST_HOOK}.py").is_file():
        return [sys.executable, str(release / f"{SELF_TEST_HOOK}.py")]
    if (release / SELF_TEST_HOOK).is_file():
        return ["/bin/sh", str(release / SELF_TEST_HOOK)]
    return None


def self_test(release: Path, manifest: Manifest, box: Box, narr: Narrator) -> str | None:
    """The release's own hook (hooks/self-test), for content every script and course must load, and a
    language pack or voice release must be playable (device.update.payload_checks)."""
    from device.update.payload_checks import KIND_CHECKS

    check = KIND_CHECKS.get(manifest.kind)
    problem = check(release) if check is not None else None
    if problem:
        return problem[:300]
    if manifest.kind == "content":
        from device.script import ScriptError, load_script

        for script in sorted((release / "scripts").glob("*.y*ml")):
            try:
                load_script(script)
            except ScriptError as exc:
                return str(exc)[:300]
        from device.course import CourseError, load_course

        for course in sorted((release / "courses").glob("*.y*ml")):
            try:
                load_course(course)
            except CourseError as exc:
                return str(exc)[:300]
    command = _hook_command(release)
    return _run_hook(command, release, box, narr) if command else None


def _run_hook(command: list[str], release: Path, box: Box, narr: Narrator) -> str | None:
    """Run the hook with a timeout, heartbeating while it runs (a slow test is not silence)."""
    env = {**os.environ, "CIRCLEBOX_RELEASE": str(release)}
    try:
        proc = subprocess.Popen(
            command,
            cwd=release,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a timeout kills its children too
        )
    except OSError as exc:
        return f"self-test: {exc}"
    deadline = time.monotonic() + box.self_test_timeout_s
    while True:
        try:
            output, _ = proc.communicate(timeout=1.0)
            break
        except subprocess.TimeoutExpired:
            narr.work()
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                return f"self-test took longer than {box.self_test_timeout_s:.0f} s"
    if proc.returncode != 0:
        tail = output.strip().splitlines()[-3:]
        return f"self-test exited {proc.returncode}: {' | '.join(tail)}"[:300]
    return None
