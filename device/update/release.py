"""Release directories and the per-kind `current/<kind>` symlink that says which one runs.

    <root>/releases/<kind>-<version>/        complete, fsynced, never modified after rename
    <root>/releases/<kind>-<version>/.circlebox/manifest.json, manifest.sig
    <root>/current/<kind> -> ../releases/<kind>-<version>

The switch is a new symlink renamed over the old one (rename(2) is atomic), then an fsync of
the directory: a power cut leaves either the old or the new link, both pointing at whole trees.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from device.fsutil import fsync_dir
from device.update.manifest import META_DIR, Manifest, parse_manifest


def releases_dir(root: Path) -> Path:
    return Path(root) / "releases"


def staging_dir(root: Path) -> Path:
    """Where a release is unpacked before it is renamed into releases/: inside releases/, so the
    rename never crosses a mount (the sandboxed units make update/, releases/ and current/
    separate mounts, and a rename between them fails with EXDEV; found booting the image)."""
    return releases_dir(root) / ".staging"


def current_link(root: Path, kind: str) -> Path:
    return Path(root) / "current" / kind


def current_release(root: Path, kind: str) -> str | None:
    """The release directory name `current/<kind>` points at, or None."""
    try:
        target = os.readlink(current_link(root, kind))
    except (FileNotFoundError, OSError):
        return None
    return Path(target).name


def swap_current(root: Path, kind: str, release: str | None) -> None:
    """Point current/<kind> at releases/<release> atomically (None removes the link)."""
    link = current_link(root, kind)
    link.parent.mkdir(parents=True, exist_ok=True)
    if release is None:
        link.unlink(missing_ok=True)
    else:
        tmp = link.with_name(f".{kind}.new")
        tmp.unlink(missing_ok=True)
        os.symlink(f"../releases/{release}", tmp)
        os.replace(tmp, link)
    fsync_dir(link.parent)


def fsync_tree(top: Path) -> None:
    """fsync every directory under top, deepest first (files were fsynced as written)."""
    for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda t: -t[0].count(os.sep)):
        fsync_dir(Path(dirpath))


def remove_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def release_manifest(release_dir: Path) -> Manifest:
    return parse_manifest((release_dir / META_DIR / "manifest.json").read_bytes())


def release_problems(release_dir: Path) -> list[str]:
    """What is wrong with an installed release compared to its manifest (empty: complete)."""
    try:
        manifest = release_manifest(release_dir)
    except Exception as exc:
        return [f"{release_dir}: no readable manifest ({exc})"]
    problems = []
    for entry in manifest.files:
        path = release_dir / entry.path
        if path.is_symlink() or not path.is_file():
            problems.append(f"{entry.path}: missing")
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if path.stat().st_size != entry.size or digest != entry.sha256:
            problems.append(f"{entry.path}: wrong content")
    return problems
