"""The box's real seams, run against stand-ins for systemctl and mount on PATH, and a real
flock: the code the Pi runs, minus the Pi."""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path

import pytest

from device.update import crash
from device.update.seams import SystemdService, circle_running_from_lock, free_bytes
from device.update.usb import remounted_rw

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_bin(tmp_path, monkeypatch):
    """A PATH dir whose systemctl/mount/sync log their arguments and answer from files."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    props = tmp_path / "props"
    props.write_text("ActiveState=active\nSubState=running\nNRestarts=0\nInvocationID=aa\n")
    for name in ("systemctl", "mount", "sync"):
        script = bin_dir / name
        script.write_text(
            f'#!/bin/sh\necho "{name} $*" >> {log}\n'
            + (f'[ "$1" = show ] && cat {props}\n' if name == "systemctl" else "")
            + "exit 0\n"
        )
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return log, props


def test_systemd_health_needs_active_running_and_no_restart_since(fake_bin):
    log, props = fake_bin
    service = SystemdService("circlebox.service")
    service.restart("app")
    calls = log.read_text().splitlines()
    assert calls[0] == "systemctl reset-failed circlebox.service"  # a used-up start limit
    assert calls[-2:] == [
        "systemctl restart --no-block circlebox.service",
        "systemctl try-restart --no-block circlebox-admin.service",
    ]
    service.restart("content")  # content does not concern the admin process
    assert log.read_text().splitlines()[-1] == "systemctl restart --no-block circlebox.service"
    assert service.health() is False  # still the old process: the restart job has not run
    props.write_text("ActiveState=activating\nSubState=start\nNRestarts=0\nInvocationID=bb\n")
    assert service.health() is False  # not ready yet
    props.write_text("ActiveState=active\nSubState=running\nNRestarts=0\nInvocationID=bb\n")
    assert service.health() is True
    assert service.health() is True  # stays up
    props.write_text("ActiveState=active\nSubState=running\nNRestarts=1\nInvocationID=cc\n")
    assert service.health() is False  # it crashed and systemd restarted it: a crash loop
    service.restart("app")  # a new restart (the rollback) starts a new watch
    assert service.health() is False  # cc is the invocation from before this restart
    props.write_text("ActiveState=active\nSubState=running\nNRestarts=0\nInvocationID=dd\n")
    assert service.health() is True


def test_circle_lock(tmp_path):
    lock = tmp_path / "circle.lock"
    running = circle_running_from_lock(lock)
    assert running() is False  # no file: no circle
    lock.touch()
    assert running() is False
    with open(lock) as held:  # the runtime holds a shared lock for the whole circle
        fcntl.flock(held, fcntl.LOCK_SH)
        assert running() is True
        fcntl.flock(held, fcntl.LOCK_UN)
        assert running() is False


def test_free_bytes_of_a_path_not_made_yet(tmp_path):
    assert free_bytes(tmp_path / "not" / "yet") == free_bytes(tmp_path) > 0


def test_stick_is_writable_only_inside_the_block(fake_bin, tmp_path):
    log, _ = fake_bin
    with remounted_rw(tmp_path / "stick"):
        assert log.read_text().splitlines() == [f"mount -o remount,rw,nosuid,nodev,noexec {tmp_path / 'stick'}"]
    calls = log.read_text().splitlines()
    assert calls[-1] == f"mount -o remount,ro,nosuid,nodev,noexec {tmp_path / 'stick'}"
    assert "sync" in calls[-2]


def test_every_crash_point_is_exercised_by_the_power_cut_tests():
    import test_update_crash as t

    source = "".join(p.read_text() for p in (REPO / "device" / "update").glob("*.py"))
    points = set(re.findall(r'crashpoint\("([a-z_]+)"\)', source))
    assert points == set(t.INSTALL_STEPS) | set(t.ROLLBACK_STEPS) | {"staged"}
    assert crash.ENV == "CIRCLEBOX_UPDATE_CRASH_AT"
