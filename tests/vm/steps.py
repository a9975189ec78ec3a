"""Steps the VM test modules share: settle systemd, set the admin password with the console's
setup code, press on the panel, wait to hear a prompt in QEMU's WAV, read a unit's journal."""

from __future__ import annotations

import re
import time

import numpy as np

from vm.admin_client import AdminPage
from vm.qemu_box import QemuBox, VmError
from vm.speaker import MATCH, heard, speaker_samples, what_played

PASSWORD = "vm-test-password-1"


def settle(box: QemuBox) -> None:
    """Boot finished (every unit started or failed), then circlebox.service no longer starting."""
    box.console.check("systemctl is-system-running --wait || true", timeout=600)
    if settled_state(box, "circlebox") != "active":
        raise VmError("circlebox.service is not running after boot:\n"
                      + box.console.run("systemctl --failed --no-legend; journalctl -b -p warning -o cat "
                                        "--no-pager | grep -v 'underrun occurred' | tail -20")[1])


def settled_state(box: QemuBox, unit: str, timeout: float = 300.0) -> str:
    """The unit's ActiveState once it is no longer starting (or restarting)."""
    end = time.monotonic() + timeout
    while True:
        state = box.console.run(f"systemctl is-active {unit}")[1]
        if state not in ("activating", "reloading") or time.monotonic() > end:
            return state
        time.sleep(2)


def set_up_admin(box: QemuBox) -> AdminPage:
    """The technician's first visit: the setup code read on the console, then a password."""
    shown = box.console.check("circlebox firstboot --show")
    code = re.search(r"setup code\D*(\d{6})", shown)
    if not code:
        raise VmError(f"no setup code on the console: {shown}")
    admin = AdminPage(box.admin_url)
    admin.wait_until_up()
    status, url, page = admin.post_form("/setup", {"code": code[1], "password": PASSWORD, "confirm": PASSWORD})
    if not (status == 200 and url.endswith("/panel/")):
        raise VmError(f"setup did not log in: {status} {url} {page[:300]}")
    return admin


def log_in(box: QemuBox) -> AdminPage:
    admin = AdminPage(box.admin_url)
    admin.wait_until_up()
    status, url, page = admin.post_form("/login", {"password": PASSWORD})
    if status != 200 or "/login" in url:
        raise VmError(f"login failed: {status} {url} {page[:300]}")
    return admin


def press(admin: AdminPage, action: str) -> None:
    fields = {"action": action, **({"confirm": "yes"} if action == "stop" else {})}  # the page asks first
    status, _, page = admin.post_form("/panel/press", fields, token_from="/panel/")
    if status not in (200, 204):
        raise VmError(f"panel press {action!r}: {status} {page[:300]}")


def panel_status(admin: AdminPage) -> dict:
    """What the panel shows of the box now (its status.json)."""
    import json

    status, _, body = admin.get("/panel/status.json")
    if status != 200:
        raise VmError(f"/panel/status.json: {status} {body[:300]}")
    return json.loads(body)


def wait_box_state(admin: AdminPage, wanted: str, timeout: float = 180.0) -> dict:
    """Until the box is in state `wanted` (e.g. "waiting": a step's words said whole)."""
    end = time.monotonic() + timeout
    while True:
        status = panel_status(admin)
        if status.get("state") == wanted:
            return status
        if time.monotonic() > end:
            raise VmError(f"the box never reached {wanted!r}: {status}")
        time.sleep(2)


def count_every_circle(admin: AdminPage) -> None:
    """Settings > DHIS2: "Shortest circle counted" 0 minutes, so the test's short circles are
    circles held (exported), not test runs (as a technician sets it on the page)."""
    status, url, page = admin.submit("/settings/", "dhis2", {"min_circle_minutes": "0"})
    if status != 200 or "Saved." not in page:
        raise VmError(f"saving the DHIS2 settings failed: {status} {url} {page[:500]}")


CIRCLE_RUNNING = ("/opt/circlebox/venv/bin/python -c 'import sys; from pathlib import Path; "
                  "from device.update.seams import circle_running_from_lock as running; "
                  "sys.exit(3 if running(Path(\"/var/lib/circlebox/circle.lock\"))() else 0)'")


def wait_circle_over(box: QemuBox, timeout: float = 90.0) -> None:
    """Until the runtime lets go of the circle lock (the updater's own test: it stages while a
    circle holds it)."""
    end = time.monotonic() + timeout
    while True:
        rc, out = box.console.run(CIRCLE_RUNNING)
        if rc == 0:
            return
        if rc != 3 or time.monotonic() > end:
            raise VmError(f"the circle did not end (exit {rc}): {out}\n" + journal(box, "circlebox", 20))
        time.sleep(2)


def wav_end(box: QemuBox) -> int:
    """Where QEMU's WAV ends now: what plays from here on is read from this byte."""
    return max(box.wav.stat().st_size if box.wav and box.wav.exists() else 0, 44)


def wait_heard(box: QemuBox, prompts: dict[str, np.ndarray], name: str, rate: int, since: int,
               timeout: float = 120.0) -> float:
    """Poll the WAV from byte `since` until prompt `name` is heard; its best score."""
    deadline = time.monotonic() + timeout
    score = 0.0
    while time.monotonic() < deadline:
        score = heard(speaker_samples(box.wav, rate, since), prompts[name], rate)
        if score >= MATCH:
            return score
        time.sleep(2)
    return score


def played_summary(box: QemuBox, prompts: dict[str, np.ndarray], rate: int, since: int) -> str:
    """The best-scoring prompts since byte `since` (for a failure message)."""
    found = what_played(speaker_samples(box.wav, rate, since), prompts, rate)[:4]
    return ", ".join(f"{name} {score:.2f}" for name, score in found)


def journal(box: QemuBox, unit: str, lines: int = 60) -> str:
    """The unit's journal this boot, without ALSA's underrun lines (emulation is slow)."""
    return box.console.run(f"journalctl -b -u '{unit}' -o cat --no-pager | grep -v 'underrun occurred' "
                           f"| tail -{lines}")[1]


def usage_sessions(box: QemuBox) -> list[dict]:
    """The usage store's circles, read as the runtime's own user (root would leave root-owned
    WAL files the runtime could not open)."""
    import json

    out = box.console.check(
        "runuser -u circlebox -- /opt/circlebox/venv/bin/python -c \"import json, sqlite3; "
        "c = sqlite3.connect('/var/lib/circlebox/usage.sqlite'); c.row_factory = sqlite3.Row; "
        "print(json.dumps([dict(r) for r in c.execute('select id, script, started_at, ended_at from sessions')]))\"")
    return json.loads(out.splitlines()[-1])


DOCTOR = "circlebox doctor --button-timeout 1 --confirm-timeout 60 --mic-seconds 2"


def doctor_lines(box: QemuBox, system_prompts: dict[str, np.ndarray] | None = None, rate: int = 0,
                 timeout: float = 900.0) -> dict[str, str]:
    """`circlebox doctor` on the console, each check's line by name. The speaker check asks the
    technician whether they heard it: the answer is "y" only if "Speaker works." is in the WAV."""
    import threading

    since_wav, since = wav_end(box), box.console.mark()
    result: dict[str, object] = {}
    worker = threading.Thread(target=lambda: result.update(out=box.console.run(DOCTOR, timeout)))
    worker.start()
    asked = re.compile(r"type y and Enter")
    while worker.is_alive() and not asked.search(box.console.text, since):
        time.sleep(1)
    if system_prompts is not None and worker.is_alive() and wait_heard(
            box, system_prompts, "system sys:doctor_speaker_works", rate, since_wav, 60) >= MATCH:
        box.console.send("y")
    worker.join(timeout + 30)
    _rc, out = result["out"]  # type: ignore[misc]
    lines = {}
    for line in out.splitlines():
        found = re.match(r"\s*\[(PASS|WARN|FAIL|SKIP)\] ([^:]+):", line)
        if found:
            lines.setdefault(found[2], line.strip())
    if not lines:
        raise VmError(f"`{DOCTOR}` on the box ran no checks (exit {_rc}):\n{out[-1500:]}")
    return lines
