"""Switching to a release and keeping it only if it comes up: trial, health, commit or
rollback, plus recovery of whatever a crash interrupted. Every step is journalled first."""

from __future__ import annotations

import contextlib
from pathlib import Path

from device.update import messages as M
from device.update.announce import Narrator
from device.update.box import Box, Result
from device.update.crash import crashpoint
from device.update.release import current_release, releases_dir, remove_tree, staging_dir, swap_current
from device.update.state import ReleaseRecord, Trial, load_state, raise_floor, save_state


def _healthy(box: Box) -> bool:
    """The health seam; a seam that fails to answer counts as not healthy."""
    try:
        return bool(box.seams.health())
    except Exception:
        return False


def wait_healthy(box: Box, narr: Narrator) -> bool:
    """Ready within ready_timeout_s, then ready at every poll for stay_up_s."""
    seams, start = box.seams, box.seams.clock()
    while not _healthy(box):
        if seams.clock() - start >= box.ready_timeout_s:
            return False
        narr.work()
        seams.sleep(box.poll_s)
    up_since = seams.clock()
    while seams.clock() - up_since < box.stay_up_s:
        narr.work()
        seams.sleep(box.poll_s)
        if not _healthy(box):
            return False
    return True


def start_trial(box: Box, record: ReleaseRecord, narr: Narrator) -> Result:
    """Journal the trial (with where to go back to), then run it."""
    state = load_state(box.root)
    state.trial = Trial(
        **record.model_dump(exclude={"previous"}),
        previous=current_release(box.root, record.kind),
        previous_version=state.installed_version(record.kind),
    )
    state.pending.pop(record.kind, None)
    save_state(box.root, state)
    crashpoint("trial_recorded")
    return run_trial(box, narr)


def run_trial(box: Box, narr: Narrator) -> Result:
    """Swap, restart, health; commit or roll back. Safe to re-run from the top after a crash."""
    state = load_state(box.root)
    trial = state.trial
    assert trial is not None
    if trial.phase == "rolling_back":
        return _roll_back(box, narr)
    swap_current(box.root, trial.kind, trial.release)
    crashpoint("swapped")
    narr.say(M.RESTARTING)
    try:
        box.seams.restart(trial.kind)
        restarted = True
    except Exception:  # systemctl failed: the release cannot be confirmed, so it goes
        restarted = False
    crashpoint("restarted")
    healthy = restarted and wait_healthy(box, narr)
    crashpoint("health_checked")
    if not healthy:
        state.trial = trial.model_copy(update={"phase": "rolling_back"})
        save_state(box.root, state)
        crashpoint("rolling_back")
        return _roll_back(box, narr)
    state.installed[trial.kind] = ReleaseRecord(
        kind=trial.kind,
        version=trial.version,
        release=trial.release,
        bundle_sha256=trial.bundle_sha256,
        previous=trial.previous,
    )
    state.trial = None
    save_state(box.root, state)
    raise_floor(box.root, trial.kind, trial.version)
    crashpoint("committed")
    prune_releases(box.root)
    narr.work(1.0)
    narr.say(M.UPDATED, version=trial.version)
    return Result(
        M.UPDATED,
        kind=trial.kind,
        version=trial.version,
        before=trial.previous_version,
        after=trial.version,
    )


def _roll_back(box: Box, narr: Narrator) -> Result:
    state = load_state(box.root)
    trial = state.trial
    assert trial is not None
    swap_current(box.root, trial.kind, trial.previous)
    crashpoint("rolled_back")
    with contextlib.suppress(Exception):  # the journal must still be finished
        box.seams.restart(trial.kind)
    rejected = state.rejected.setdefault(trial.kind, [])
    if trial.version not in rejected:
        rejected.append(trial.version)
    state.trial = None
    save_state(box.root, state)
    crashpoint("rejected")
    prune_releases(box.root)
    narr.say(M.ROLLED_BACK)
    return Result(
        M.ROLLED_BACK,
        kind=trial.kind,
        version=trial.version,
        before=trial.previous_version,
        after=trial.previous_version,
        detail=f"version {trial.version} did not report ready and stay up; now refused",
    )


def prune_releases(root: Path) -> None:
    """Delete releases nothing refers to (failed, superseded, half-made by a crash)."""
    state = load_state(root)
    keep: set[str | None] = {None}
    for record in [*state.installed.values(), *state.pending.values()]:
        keep |= {record.release, record.previous}
    if state.trial:
        keep |= {state.trial.release, state.trial.previous}
    for link in (Path(root) / "current").glob("*"):
        keep.add(current_release(root, link.name))
    directory = releases_dir(root)
    for path in sorted(directory.iterdir()) if directory.is_dir() else []:
        if path.name not in keep:
            remove_tree(path)


def recover(box: Box, narr: Narrator) -> list[Result]:
    """Bring the box to a consistent state after any crash: clear temp files, finish an
    interrupted trial or rollback, point every link at its installed release, prune."""
    root = Path(box.root)
    remove_tree(root / "update" / "incoming")
    remove_tree(staging_dir(root))
    for tmp in (root / "current").glob(".*.new"):
        tmp.unlink()
    results = []
    if load_state(root).trial is not None:
        results.append(run_trial(box, narr))
    state = load_state(root)
    for kind, record in state.installed.items():
        raise_floor(root, kind, record.version)  # a crash right after a commit left it behind
        if current_release(root, kind) != record.release and (releases_dir(root) / record.release).is_dir():
            swap_current(root, kind, record.release)
    with contextlib.suppress(FileNotFoundError):
        prune_releases(root)
    return results
