"""Power cuts: the updater is SIGKILLed (CIRCLEBOX_UPDATE_CRASH_AT) at every step, in a real
subprocess. After each kill the box must boot into a complete release, and re-running the same
install must converge to the same end state as an uninterrupted run."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from test_update_helpers import Keys, good_bundle, make_box

from device.update import messages as M
from device.update.installer import apply_bundle
from device.update.release import current_release, release_problems, releases_dir, staging_dir
from device.update.state import load_state

REPO = Path(__file__).resolve().parents[1]
INSTALL_STEPS = [
    "copied",
    "verified",
    "extracting",
    "extracted",
    "renamed",
    "self_tested",
    "trial_recorded",
    "swapped",
    "restarted",
    "health_checked",
    "committed",
]
ROLLBACK_STEPS = ["health_checked", "rolling_back", "rolled_back", "rejected"]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A box with app 1 installed, the v2 bundle, and the public key file."""
    tmp = tmp_path_factory.mktemp("crash")
    keys = Keys()
    pub = tmp / "trusted.pub"
    pub.write_bytes(
        keys.public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    root = tmp / "template-root"
    files = {"app/main.py": b"v1\n", "hooks/self-test": b"#!/bin/sh\nexit 0\n"}
    assert apply_bundle(good_bundle(tmp, keys, 1, files=files), make_box(root, keys)).ok
    big = {
        "app/main.py": b"v2\n",
        "app/model.bin": os.urandom(3 << 20),
        "hooks/self-test": b"#!/bin/sh\nexit 0\n",
    }
    return root, good_bundle(tmp, keys, 2, files=big), pub


def run_apply(root: Path, bundle: Path, pub: Path, crash_at: str | None, healthy: bool):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("CIRCLEBOX_UPDATE_CRASH_AT", None)
    if crash_at:
        env["CIRCLEBOX_UPDATE_CRASH_AT"] = crash_at
    cmd = [
        sys.executable,
        "-m",
        "device.commands.bundle",
        "bundle",
        "apply",
        str(bundle),
        "--root",
        str(root),
        "--pubkey",
        str(pub),
        "--health-cmd",
        "true" if healthy else "false",
        "--ready-timeout",
        "0",
        "--stay-up",
        "0",
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=REPO)


def assert_boots_into_complete_release(root: Path) -> str:
    release = current_release(root, "app")
    assert release in ("app-1", "app-2")
    assert release_problems(root / "current" / "app") == []
    return release


def assert_converged(root: Path, version: int, rejected: list[int]) -> None:
    state = load_state(root)
    assert state.installed["app"].version == version
    assert state.trial is None and state.pending == {}
    assert state.rejected.get("app", []) == rejected
    assert current_release(root, "app") == f"app-{version}"
    assert release_problems(root / "current" / "app") == []
    assert not staging_dir(root).exists() and not (root / "update" / "incoming").exists()
    expected = {"app-1", "app-2"} if version == 2 else {"app-1"}
    assert {p.name for p in releases_dir(root).iterdir()} == expected
    assert not list((root / "current").glob(".*"))


def fresh(template, tmp_path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(template[0], root, symlinks=True)
    return root


@pytest.mark.parametrize("step", INSTALL_STEPS)
def test_crash_during_install_then_converge(template, tmp_path, step):
    _, bundle, pub = template
    root = fresh(template, tmp_path)
    killed = run_apply(root, bundle, pub, step, healthy=True)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr  # the step was reached
    assert_boots_into_complete_release(root)
    rerun = run_apply(root, bundle, pub, None, healthy=True)
    assert_converged(root, 2, [])
    assert ("U00" in rerun.stdout) or ("U07" in rerun.stdout), rerun.stdout


@pytest.mark.parametrize("step", ROLLBACK_STEPS)
def test_crash_during_rollback_then_converge(template, tmp_path, step):
    _, bundle, pub = template
    root = fresh(template, tmp_path)
    killed = run_apply(root, bundle, pub, step, healthy=False)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert_boots_into_complete_release(root)
    rerun = run_apply(root, bundle, pub, None, healthy=False)
    assert_converged(root, 1, [2])
    assert M.ROLLED_BACK in rerun.stdout or M.REJECTED_BEFORE in rerun.stdout, rerun.stdout


def test_crash_while_staging_then_converge(template, tmp_path):
    _, bundle, pub = template
    root = fresh(template, tmp_path)
    with open(root / "circle.lock", "w") as lock:  # a circle is running
        fcntl.flock(lock, fcntl.LOCK_SH)
        killed = run_apply(root, bundle, pub, "staged", healthy=True)
        assert killed.returncode == -signal.SIGKILL
        assert assert_boots_into_complete_release(root) == "app-1"
        again = run_apply(root, bundle, pub, None, healthy=True)
        assert M.STAGED in again.stdout and current_release(root, "app") == "app-1"
    box = make_box(root, Keys())  # circle over: finish the pending switch
    box.trusted_keys = {}
    from device.update.installer import finish_pending

    [result] = finish_pending(box)
    assert result.code == M.UPDATED
    assert_converged(root, 2, [])


def test_uninterrupted_run_gives_the_same_end_state(template, tmp_path):
    _, bundle, pub = template
    root = fresh(template, tmp_path)
    done = run_apply(root, bundle, pub, None, healthy=True)
    assert done.returncode == 0 and M.UPDATED in done.stdout
    assert_converged(root, 2, [])
