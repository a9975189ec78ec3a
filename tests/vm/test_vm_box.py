"""The built image, booted in QEMU: first boot, the services under systemd, the admin page,
a circle heard from the USB speaker, a second boot on a read-only root.

Run by `make vm-test` (builds the image first). The tests share one VM and run in order.
"""

from __future__ import annotations

import re
import time

import pytest

from vm.admin_client import AdminPage
from vm.speaker import MATCH, rendered_prompts, speaker_samples, what_played

pytestmark = pytest.mark.vm

CIRCLE = "three-step-circle"
WELCOME = f"{CIRCLE} step:welcome"
PASSWORD = "vm-test-password-1"
SECRETS = "/var/lib/circlebox/secrets"


def secrets_fingerprint(console) -> str:
    return console.check(f"sha256sum {SECRETS}/setup-code {SECRETS}/admin-session-key "
                         f"{SECRETS}/hotspot-passphrase")


def test_first_boot_makes_the_secrets(box):
    console = box.console
    console.check("systemctl is-system-running --wait || true", timeout=600)
    state = console.check("systemctl show circlebox-firstboot -p ActiveState -p Result")
    assert "ActiveState=active" in state and "Result=success" in state, state
    listing = console.check(f"ls -A {SECRETS}")
    for name in ("setup-code", "admin-session-key", "hotspot-passphrase", ".done"):
        assert name in listing.split(), listing
    box.first_secrets = secrets_fingerprint(console)


def test_data_partition_is_mounted(box):
    out = box.console.check("findmnt -n -o SOURCE,FSTYPE,OPTIONS /var/lib/circlebox")
    assert "ext4" in out and "nosuid" in out and "noexec" in out, out
    source = out.split()[0]
    assert box.console.check(f"lsblk -no LABEL {source}") == "CBDATA"


def settled_state(console, unit: str, timeout: float = 300.0) -> str:
    """The unit's ActiveState once it is no longer starting (or restarting)."""
    end = time.monotonic() + timeout
    while True:
        state = console.run(f"systemctl is-active {unit}")[1]
        if state not in ("activating", "reloading") or time.monotonic() > end:
            return state
        time.sleep(2)


def test_runtime_is_ready_under_systemd_with_its_watchdog(box):
    settled_state(box.console, "circlebox")
    out = box.console.check("systemctl show circlebox -p Type -p ActiveState -p SubState "
                            "-p WatchdogUSec -p NRestarts -p ActiveEnterTimestampMonotonic")
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert props["Type"] == "notify"
    assert (props["ActiveState"], props["SubState"]) == ("active", "running"), \
        box.console.check("journalctl -b -u circlebox --no-pager | tail -40")
    assert props["WatchdogUSec"] == "15s"
    box.ready_monotonic_us = int(props["ActiveEnterTimestampMonotonic"])


def test_admin_page_takes_the_setup_code_from_the_console(box):
    shown = box.console.check("circlebox firstboot --show")
    code = re.search(r"setup code\D*(\d{6})", shown)
    assert code, shown
    admin = AdminPage(box.admin_url)
    status, url, _ = admin.wait_until_up()
    assert status == 200 and url.endswith("/setup"), (status, url)
    status, url, page = admin.post_form("/setup", {"code": "000000" if code[1] != "000000" else "111111",
                                                   "password": PASSWORD, "confirm": PASSWORD})
    assert status == 400 and "not the box's setup code" in page.replace("&#39;", "'")
    status, url, page = admin.post_form("/setup", {"code": code[1], "password": PASSWORD,
                                                   "confirm": PASSWORD})
    assert status == 200 and url.endswith("/panel/"), (status, url, page[:500])
    box.admin = admin


def test_a_circle_started_on_the_panel_is_heard(box, image_cache):
    prompts, rate = rendered_prompts(image_cache, CIRCLE)
    start_byte = box.wav.stat().st_size if box.wav.exists() else 0
    pressed = time.monotonic()
    status, _, page = box.admin.post_form("/panel/press", {"action": "start"}, token_from="/panel/")
    assert status in (200, 204), (status, page[:500])
    deadline = time.monotonic() + 120
    score = 0.0
    while time.monotonic() < deadline:
        out = speaker_samples(box.wav, rate, max(start_byte, 44))
        score = dict(what_played(out, {WELCOME: prompts[WELCOME]}, rate))[WELCOME]
        if score >= MATCH:
            break
        time.sleep(2)
    box.press_to_sound_s = time.monotonic() - pressed  # an upper bound (polling every 2 s)
    out = speaker_samples(box.wav, rate, max(start_byte, 44))
    assert score >= MATCH, (f"the welcome was not heard on the USB speaker (best {score:.2f}); "
                            f"what played: {what_played(out, prompts, rate)[:3]}; "
                            + box.console.check("journalctl -b -u circlebox --no-pager | tail -30"))


def test_second_boot_keeps_the_secrets_on_a_read_only_root(box):
    box.shutdown()
    box.start()
    console = box.login()
    console.check("systemctl is-system-running --wait || true", timeout=600)
    assert secrets_fingerprint(console) == box.first_secrets
    root = console.check("findmnt -n -o FSTYPE,OPTIONS /")
    lower = console.run("findmnt -n -o OPTIONS /media/root-ro")[1]
    assert root.startswith("overlay") and lower.startswith("ro"), (root, lower)
    rc, _ = console.run("touch /media/root-ro/should-fail")
    assert rc != 0
    assert console.check("systemctl is-active circlebox") == "active"
