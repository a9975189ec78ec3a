"""Installing one bundle, in the order that makes it safe:

copy to local storage -> signature -> manifest -> compatibility and version -> free space ->
extract listed files (hashing as they stream, fsync) -> rename into releases/ -> self-test ->
stage (a circle is running) or switch with health check and rollback (activate.py).

Every refusal is a Refusal with a code; the install is untouched by any of them.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from device.fsutil import atomic_write_bytes, fsync_dir
from device.update import messages as M
from device.update.activate import prune_releases, recover, start_trial
from device.update.announce import Narrator
from device.update.box import Box, Result
from device.update.crash import crashpoint
from device.update.errors import Refusal
from device.update.incoming import copy_in
from device.update.keys import verify_signature
from device.update.manifest import META_DIR, Manifest, parse_manifest
from device.update.reader import BundleStream, open_bundle
from device.update.release import (
    current_release,
    fsync_tree,
    release_problems,
    releases_dir,
    remove_tree,
    staging_dir,
)
from device.update.safefs import UnsafePath, check_private_dir
from device.update.seams import UpdateLock
from device.update.selftest import self_test
from device.update.state import (
    ReleaseRecord,
    UpdateState,
    installed_floor,
    load_state,
    save_last_result,
    save_state,
)


def read_signed_manifest(stream: BundleStream, box: Box) -> tuple[Manifest, bytes, bytes]:
    """Signature first, over the exact bytes; only then is the manifest parsed."""
    manifest_bytes, sig = stream.read_header()
    verify_signature(manifest_bytes, sig, box.trusted_keys)
    return parse_manifest(manifest_bytes, box.limits), manifest_bytes, sig


def check_policy(manifest: Manifest, state: UpdateState, box: Box) -> None:
    """Right device, only forward, never a version this box already refused."""
    try:
        _check_policy(manifest, state, box)
    except Refusal as exc:
        exc.kind, exc.version = manifest.kind, manifest.version
        raise


def _check_policy(manifest: Manifest, state: UpdateState, box: Box) -> None:
    if manifest.compatible != box.compatible:
        raise Refusal(M.WRONG_DEVICE, f"bundle is for {manifest.compatible!r}, this box is {box.compatible!r}")
    kind, version = manifest.kind, manifest.version
    installed = installed_floor(box.root, state, kind)
    if version < installed:
        raise Refusal(M.OLDER, f"{kind} version {version} is older than installed version {installed}")
    if version == installed:
        raise Refusal(
            M.ALREADY_INSTALLED,
            f"{kind} version {version} is already installed (different bundle: replay refused)",
        )
    if version in state.rejected.get(kind, []):
        raise Refusal(M.REJECTED_BEFORE, f"{kind} version {version} failed on this box before")
    if installed < manifest.min_installed_version:
        raise Refusal(
            M.NEEDS_EARLIER,
            f"needs {kind} version {manifest.min_installed_version} or later installed, this box has {installed}",
        )
    pending = state.pending.get(kind)
    if pending and pending.version > version:
        raise Refusal(M.OLDER, f"{kind} version {pending.version} is already waiting to be installed")
    free = box.seams.free_bytes(box.root)
    if free < manifest.total_size + box.limits.reserve:
        raise Refusal(
            M.NO_SPACE,
            f"needs {manifest.total_size + box.limits.reserve} bytes free, the box has {free}",
        )


def extract(
    stream: BundleStream,
    manifest: Manifest,
    manifest_bytes: bytes,
    sig: bytes,
    box: Box,
    narr: Narrator,
) -> Path:
    """Stream the payload into a fresh staging dir, fsync it all, rename it into releases/."""
    staging = staging_dir(box.root) / manifest.release_name
    remove_tree(staging)
    staging.mkdir(parents=True)
    total, done = max(1, manifest.total_size), 0

    def open_dest(path: str, mode: int):
        dest = staging / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, mode)
        return os.fdopen(fd, "wb")

    def on_bytes(n: int) -> None:
        nonlocal done
        before, done = done, done + n
        if before < total // 2 <= done:
            crashpoint("extracting")
        narr.work(0.3 + 0.5 * done / total)

    stream.stream_payload(manifest, open_dest, on_bytes)
    for directory in [staging, *(p for p in staging.rglob("*") if p.is_dir())]:
        directory.chmod(0o755)  # whatever the umask: only the updater writes a release
    atomic_write_bytes(staging / META_DIR / "manifest.json", manifest_bytes)
    atomic_write_bytes(staging / META_DIR / "manifest.sig", sig)
    fsync_tree(staging)
    crashpoint("extracted")
    target = releases_dir(box.root) / manifest.release_name
    if current_release(box.root, manifest.kind) == manifest.release_name:  # belt and braces
        raise Refusal(M.ALREADY_INSTALLED, f"{manifest.release_name} is the running release")
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_tree(target)  # a leftover of a crashed run; never current (recover() ran first)
    os.rename(staging, target)
    fsync_dir(target.parent)
    crashpoint("renamed")
    return target


def install_local(local: Path, sha: str, box: Box, narr: Narrator) -> Result:
    """Verify and install a bundle already on local storage (the only copy we trust)."""
    state = load_state(box.root)
    for record in state.installed.values():
        if record.bundle_sha256 == sha:
            raise Refusal(
                M.ALREADY_INSTALLED,
                f"this exact bundle is installed ({record.kind} version {record.version})",
                record.kind,
                record.version,
            )
    for record in state.pending.values():
        if record.bundle_sha256 == sha:
            narr.say(M.STAGED)
            return Result(
                M.STAGED,
                kind=record.kind,
                version=record.version,
                before=state.installed_version(record.kind),
                detail="already waiting for the circle to end",
            )
    with open_bundle(local, box.limits) as stream:
        manifest, manifest_bytes, sig = read_signed_manifest(stream, box)
        check_policy(manifest, state, box)
        crashpoint("verified")
        narr.say(M.INSTALLING)
        release = extract(stream, manifest, manifest_bytes, sig, box, narr)
    record = ReleaseRecord(
        kind=manifest.kind,
        version=manifest.version,
        release=manifest.release_name,
        bundle_sha256=sha,
    )
    before = state.installed_version(manifest.kind)
    problem = self_test(release, manifest, box, narr)
    crashpoint("self_tested")
    if problem:
        state = load_state(box.root)
        state.rejected.setdefault(manifest.kind, []).append(manifest.version)
        save_state(box.root, state)
        prune_releases(box.root)
        raise Refusal(M.SELF_TEST_FAILED, problem, manifest.kind, manifest.version)
    if box.seams.circle_running():
        state = load_state(box.root)
        state.pending[manifest.kind] = record
        save_state(box.root, state)
        crashpoint("staged")
        prune_releases(box.root)
        narr.say(M.STAGED)
        return Result(M.STAGED, kind=manifest.kind, version=manifest.version, before=before, after=before)
    return start_trial(box, record, narr)


def check_layout(root: Path) -> None:
    """Root's own folders (state, incoming, releases with its staging, current) are real directories
    that only root can write or rename, below a data folder nobody else can swap them in:
    UnsafePath otherwise (someone planted or opened one; docs/security.md)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for folder in ("update", "releases", "current"):
        check_private_dir(root / folder)


def _refused(exc: Refusal, narr: Narrator, root: Path) -> Result:
    narr.say(exc.code, version="?")
    installed = load_state(root).installed_version(exc.kind) if exc.kind else None
    return Result(
        exc.code,
        kind=exc.kind,
        version=exc.version,
        before=installed,
        after=installed,
        detail=exc.detail,
    )


def apply_bundle(source: Path, box: Box, narr: Narrator | None = None, beneath: Path | None = None) -> Result:
    """The whole install of one bundle file (stick, upload or laptop); never raises a Refusal.
    `beneath`: the folder the file must be inside, reached without following any symlink."""
    narr = narr or box.narrator()
    try:
        check_layout(box.root)
    except UnsafePath as exc:
        narr.say(M.INTERNAL_ERROR)
        return Result(M.INTERNAL_ERROR, bundle=Path(source).name, detail=f"the updater's folders are not safe: {exc}")
    with UpdateLock(box.root):
        recover(box, narr)
        narr.say(M.CHECKING)
        try:
            local, sha = copy_in(Path(source), box, narr, beneath)
            result = install_local(local, sha, box, narr)
        except Refusal as exc:
            result = _refused(exc, narr, box.root)
        except OSError as exc:
            code = M.NO_SPACE if exc.errno == errno.ENOSPC else M.INTERNAL_ERROR
            narr.say(code)
            result = Result(code, detail=f"{exc.strerror or exc}: {exc.filename or ''}")
        except Exception as exc:  # a bug must not leave the box silent; the journal recovers
            narr.say(M.INTERNAL_ERROR)
            result = Result(M.INTERNAL_ERROR, detail=f"{type(exc).__name__}: {exc}"[:300])
        finally:
            remove_tree(Path(box.root) / "update" / "incoming")
            remove_tree(staging_dir(box.root))
        result = _with_bundle(result, Path(source).name)
        save_last_result(box.root, result.to_dict())
    return result


def _with_bundle(result: Result, name: str) -> Result:
    from dataclasses import replace

    return replace(result, bundle=name)


def finish_pending(box: Box, narr: Narrator | None = None) -> list[Result]:
    """Switch to staged releases now that no circle is running (call at a circle's end, and at
    boot). Each staged release is checked complete again before it is switched to."""
    narr = narr or box.narrator()
    results: list[Result] = []
    check_layout(box.root)
    with UpdateLock(box.root):
        results += recover(box, narr)
        if box.seams.circle_running():
            return results
        for kind, record in sorted(load_state(box.root).pending.items()):
            problems = release_problems(releases_dir(box.root) / record.release)
            if problems:
                state = load_state(box.root)
                state.pending.pop(kind)
                save_state(box.root, state)
                prune_releases(box.root)
                narr.say(M.DAMAGED)
                results.append(Result(M.DAMAGED, kind=kind, version=record.version, detail=problems[0]))
                continue
            results.append(start_trial(box, record, narr))
        for result in results:
            save_last_result(box.root, result.to_dict())
    return results


def verify_bundle(path: Path, box: Box, compatible: str | None = None) -> Manifest:
    """Check a bundle completely without installing (signature, manifest, every byte)."""
    with open_bundle(path, box.limits) as stream:
        manifest, _, _ = read_signed_manifest(stream, box)
        if compatible is not None and manifest.compatible != compatible:
            raise Refusal(M.WRONG_DEVICE, f"bundle is for {manifest.compatible!r}, not {compatible!r}")
        stream.stream_payload(manifest, lambda path, mode: None)
    return manifest
