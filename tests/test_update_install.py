"""Installing, switching, health check and rollback, staging while a circle runs, no-ops, and
what the box says while it works (fake clock: no wall-clock assertions)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from test_update_helpers import (
    FakeClock,
    Keys,
    RecordingAnnouncer,
    good_bundle,
    make_box,
    tree_hash,
    voice_files,
)

from device.update import messages as M
from device.update.installer import apply_bundle, finish_pending
from device.update.release import current_release, release_problems, releases_dir, staging_dir
from device.update.state import load_last_result, load_state


@pytest.fixture
def env(tmp_path):
    keys = Keys()
    return keys, tmp_path, tmp_path / "root"


def test_install_switches_and_keeps_previous(env):
    keys, tmp, root = env
    restarts: list[str] = []
    box = make_box(root, keys, restart=restarts.append)
    assert apply_bundle(good_bundle(tmp, keys, 1), box).code == M.UPDATED
    result = apply_bundle(good_bundle(tmp, keys, 2), box)
    assert (result.code, result.before, result.after) == (M.UPDATED, 1, 2)
    assert current_release(root, "app") == "app-2"
    assert (root / "current" / "app" / "app" / "main.py").read_text() == "VERSION = 2\n"
    assert release_problems(root / "current" / "app") == []
    assert sorted(p.name for p in releases_dir(root).iterdir()) == ["app-1", "app-2"]
    assert restarts == ["app", "app"]
    state = load_state(root)
    assert state.installed["app"].version == 2 and state.installed["app"].previous == "app-1"
    assert load_last_result(root)["code"] == M.UPDATED
    assert not (root / "update" / "incoming").exists() and not staging_dir(root).exists()
    # a third release prunes the first: only current and the rollback target stay on disk
    apply_bundle(good_bundle(tmp, keys, 3), box)
    assert sorted(p.name for p in releases_dir(root).iterdir()) == ["app-2", "app-3"]


def test_modes_applied(env):
    keys, tmp, root = env
    box = make_box(root, keys)
    files = {"hooks/self-test": b"#!/bin/sh\nexit 0\n", "app/readme.txt": b"hi"}
    assert apply_bundle(good_bundle(tmp, keys, 1, files=files), box).code == M.UPDATED
    assert (root / "current/app/hooks/self-test").stat().st_mode & 0o777 == 0o755
    assert (root / "current/app/app/readme.txt").stat().st_mode & 0o777 == 0o644


def test_kinds_are_independent(env):
    keys, tmp, root = env
    box = make_box(root, keys)
    assert apply_bundle(good_bundle(tmp, keys, 4, kind="voice", files=voice_files()), box).ok
    assert apply_bundle(good_bundle(tmp, keys, 1, kind="app"), box).ok
    assert load_state(root).versions() == {"app": 1, "voice": 4}
    assert current_release(root, "voice") == "voice-4"


def test_announcements_in_order(env):
    keys, tmp, root = env
    clock = FakeClock()
    announcer = RecordingAnnouncer(clock)
    box = make_box(root, keys, clock, announcer=announcer)
    apply_bundle(good_bundle(tmp, keys, 7), box)
    assert announcer.codes == [
        M.CHECKING,
        M.COPYING,
        M.INSTALLING,
        M.RESTARTING,
        M.STILL_WORKING,
        M.UPDATED,
    ]  # one heartbeat in the 15 s health watch
    assert announcer.said[-1][2] == {"version": 7}
    assert M.text(M.UPDATED, version=7) == "Updated to version 7."


def test_same_stick_twice_is_a_noop(env):
    keys, tmp, root = env
    restarts: list[str] = []
    box = make_box(root, keys, restart=restarts.append)
    bundle = good_bundle(tmp, keys, 1)
    assert apply_bundle(bundle, box).code == M.UPDATED
    before = tree_hash(root)
    again = apply_bundle(bundle, box)
    assert again.code == M.ALREADY_INSTALLED and again.ok
    assert (again.kind, again.version) == ("app", 1)
    assert tree_hash(root) == before and restarts == ["app"]


def test_failed_health_check_rolls_back_and_rejects(env):
    keys, tmp, root = env
    clock = FakeClock()
    restarts: list[float] = []
    healthy = {"app-1": True, "app-2": False}
    box = make_box(
        root,
        keys,
        clock,
        restart=lambda kind: restarts.append(clock.now),
        health=lambda: healthy.get(current_release(root, "app"), False),
    )
    assert apply_bundle(good_bundle(tmp, keys, 1), box).code == M.UPDATED
    restarts.clear()
    result = apply_bundle(good_bundle(tmp, keys, 2), box)
    assert result.code == M.ROLLED_BACK and (result.before, result.after) == (1, 1)
    assert current_release(root, "app") == "app-1"
    assert release_problems(root / "current" / "app") == []
    assert load_state(root).rejected == {"app": [2]}
    assert load_state(root).installed["app"].version == 1
    assert not (releases_dir(root) / "app-2").exists()
    assert len(restarts) == 2 and restarts[1] - restarts[0] <= 60  # rolled back within a minute
    assert box.seams.announcer.codes[-1] == M.ROLLED_BACK
    # the rejected version is never tried again, even from a freshly built bundle
    assert apply_bundle(good_bundle(tmp, keys, 2, name="again.cbx"), box).code == M.REJECTED_BEFORE
    assert apply_bundle(good_bundle(tmp, keys, 3), box).code == M.ROLLED_BACK  # app-3 unhealthy too
    healthy["app-4"] = True
    assert apply_bundle(good_bundle(tmp, keys, 4), box).code == M.UPDATED


def test_release_that_dies_after_ready_is_rolled_back(env):
    keys, tmp, root = env
    clock = FakeClock()
    box = make_box(root, keys, clock)
    assert apply_bundle(good_bundle(tmp, keys, 1), box).ok
    started = {}

    def health() -> bool:  # app-2 is ready at once, then crashes 5 s later
        if current_release(root, "app") == "app-1":
            return True
        started.setdefault("t", clock.now)
        return clock.now - started["t"] < 5

    box.seams.health = health
    assert apply_bundle(good_bundle(tmp, keys, 2), box).code == M.ROLLED_BACK
    assert current_release(root, "app") == "app-1"


def test_first_install_that_fails_health_leaves_no_link(env):
    keys, tmp, root = env
    box = make_box(root, keys, health=lambda: False)
    assert apply_bundle(good_bundle(tmp, keys, 1), box).code == M.ROLLED_BACK
    assert current_release(root, "app") is None
    assert load_state(root).rejected == {"app": [1]}


def test_self_test_failure_refuses_and_rejects(env):
    keys, tmp, root = env
    box = make_box(root, keys)
    assert apply_bundle(good_bundle(tmp, keys, 1), box).ok
    before_link = current_release(root, "app")
    files = {"hooks/self-test": b"#!/bin/sh\necho 'model file missing' >&2\nexit 3\n"}
    result = apply_bundle(good_bundle(tmp, keys, 2, files=files), box)
    assert result.code == M.SELF_TEST_FAILED and "model file missing" in result.detail
    assert current_release(root, "app") == before_link
    assert load_state(root).rejected == {"app": [2]}
    assert not (releases_dir(root) / "app-2").exists()


def test_content_bundle_with_a_broken_script_fails_self_test(env):
    keys, tmp, root = env
    box = make_box(root, keys)
    files = {"scripts/bad.yaml": b"script: bad\nsteps: [\n"}
    result = apply_bundle(good_bundle(tmp, keys, 1, kind="content", files=files), box)
    assert result.code == M.SELF_TEST_FAILED and "YAML" in result.detail


def test_circle_running_stages_then_switches_at_the_end(env):
    keys, tmp, root = env
    running = {"now": False}
    box = make_box(root, keys, circle_running=lambda: running["now"])
    assert apply_bundle(good_bundle(tmp, keys, 1), box).ok
    running["now"] = True
    bundle = good_bundle(tmp, keys, 2)
    result = apply_bundle(bundle, box)
    assert result.code == M.STAGED and result.ok
    assert current_release(root, "app") == "app-1"  # the circle keeps its release
    assert load_state(root).pending["app"].version == 2
    assert release_problems(releases_dir(root) / "app-2") == []
    assert apply_bundle(bundle, box).code == M.STAGED  # same stick again: nothing new
    assert finish_pending(box) == []  # still running: nothing happens
    running["now"] = False
    [done] = finish_pending(box)
    assert done.code == M.UPDATED and current_release(root, "app") == "app-2"
    assert load_state(root).pending == {}


def test_staged_release_damaged_before_the_switch_is_dropped(env):
    keys, tmp, root = env
    running = {"now": True}
    box = make_box(root, keys, circle_running=lambda: running["now"])
    assert apply_bundle(good_bundle(tmp, keys, 1), box).code == M.STAGED
    (releases_dir(root) / "app-1" / "app" / "main.py").write_text("tampered")
    running["now"] = False
    [done] = finish_pending(box)
    assert done.code == M.DAMAGED and current_release(root, "app") is None


def test_never_silent_for_ten_seconds(env):
    """A slow stick and card: every 1 MiB chunk takes 1 fake second (the LED progress callback
    advances the clock), so copying and extracting 24 MiB takes ~50 s, then a 15 s health
    watch; the gap between two messages must stay at or under 10 s."""
    keys, tmp, root = env
    clock = FakeClock()
    announcer = RecordingAnnouncer(clock)
    fractions: list[float] = []

    def on_progress(fraction: float) -> None:
        fractions.append(fraction)
        clock.sleep(1.0)

    box = make_box(root, keys, clock, announcer=announcer, on_progress=on_progress)
    big = {**voice_files("sw_KE-a-medium", bytes(12 << 20)), **voice_files("sw_KE-b-medium", bytes(12 << 20))}
    assert apply_bundle(good_bundle(tmp, keys, 1, kind="voice", files=big), box).code == M.UPDATED
    times = [t for t, _, _ in announcer.said]
    assert max(b - a for a, b in itertools.pairwise(times)) <= 10
    assert announcer.codes.count(M.STILL_WORKING) >= 3
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_messages_cover_every_code():
    prompts = M.prompts()
    for code in M.MESSAGES:
        assert f"update:{code}" in prompts
        assert all(part in prompts for part in M.spoken_parts(code, version=1203))
    assert M.spoken_parts(M.UPDATED, version=12) == ["update:U00", "digit:1", "digit:2"]
    assert M.spoken_parts(M.OLDER) == ["update:U06", "update:code", "digit:0", "digit:6"]
    assert prompts["update:U00"] == "Updated to version"


def test_slow_self_test_is_not_silent_and_times_out(env):
    keys, tmp, root = env
    clock = FakeClock()
    announcer = RecordingAnnouncer(clock)
    box = make_box(root, keys, clock, announcer=announcer)
    box.self_test_timeout_s = 2.5
    # each 1 s wait on the hook costs 5 fake seconds: heartbeats must come while it runs
    box.seams.on_progress = lambda fraction: None
    original_work = box.narrator

    def narrator():
        narr = original_work()
        real_work = narr.work

        def work(fraction=None):
            if fraction is None:
                clock.sleep(5.0)
            real_work(fraction)

        narr.work = work
        return narr

    box.narrator = narrator
    files = {"hooks/self-test": b"sleep 30\n"}
    result = apply_bundle(good_bundle(tmp, keys, 1, files=files), box)
    assert result.code == M.SELF_TEST_FAILED and "longer than 2 s" in result.detail
    assert M.STILL_WORKING in announcer.codes


def test_an_install_never_renames_across_the_sandboxs_mounts(env, monkeypatch):
    """The root units' ReadWritePaths= make update/, releases/ and current/ separate mounts, and
    Linux refuses a rename between two mounts (EXDEV), even on one disk: an install must rename
    only inside one of them (found booting the image: every stick install failed with U15)."""
    import errno
    import os

    keys, tmp, root = env
    real_rename = os.rename

    def rename_within_one_mount(src, dst, *args, **kwargs):
        def mount_of(path) -> str:
            return Path(path).resolve().relative_to(root.resolve()).parts[0]

        if mount_of(src) != mount_of(dst):
            raise OSError(errno.EXDEV, "Invalid cross-device link", str(src))
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", rename_within_one_mount)
    box = make_box(root, keys)
    assert apply_bundle(good_bundle(tmp, keys, 1), box).code == M.UPDATED
    assert apply_bundle(good_bundle(tmp, keys, 2), box).code == M.UPDATED
    assert current_release(root, "app") == "app-2" and release_problems(root / "current" / "app") == []
    assert sorted(p.name for p in releases_dir(root).iterdir()) == ["app-1", "app-2"]  # no staging left
