"""Building a signed .cbx on the technician's laptop, from a directory or a rendered script."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device.fsutil import fsync_dir, sha256_file
from device.update.keys import sign_manifest
from device.update.manifest import (
    DEFAULT_COMPATIBLE,
    FORMAT,
    FileEntry,
    Manifest,
    check_path,
    manifest_to_bytes,
)
from device.update.reader import MANIFEST_NAME, PAYLOAD, SIG_NAME

if TYPE_CHECKING:
    from device.script import LoadedScript


class BuildError(ValueError):
    """The bundle cannot be built; the message names the file."""


def files_of_dir(src: Path) -> dict[str, Path]:
    """Every regular file under src by relative path; links and special files are errors."""
    out: dict[str, Path] = {}
    for path in sorted(Path(src).rglob("*")):
        rel = path.relative_to(src).as_posix()
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise BuildError(f"{path}: only regular files and directories can go in a bundle")
        if path.is_file():
            out[rel] = path
    if not out:
        raise BuildError(f"{src}: no files to bundle")
    return out


def files_of_script(script: Path, cache_dir: Path, *, with_system: bool = True) -> dict[str, Path]:
    """A script file plus its rendered prompt set from `cache_dir` (see `files_of_circle`)."""
    from device.script import ScriptError, load_script

    try:
        loaded = load_script(Path(script))
    except ScriptError as exc:
        raise BuildError(str(exc)) from exc
    return files_of_circle(loaded, cache_dir, with_system=with_system)


def files_of_circle(loaded: LoadedScript, cache_dir: Path, *, with_system: bool = True) -> dict[str, Path]:
    """A circle plus its rendered prompt set, as a content release lays them out:
    scripts/<file>, cache/sets/<id>.json and the WAVs that set names; with `with_system`, the
    box's own prompt set (cache/sets/system.json) too when it was rendered into the same cache,
    so a box that has none of its own can still speak its setup and self-test prompts.

    Refuses a set the box would refuse (`device.content.rendered_matches`) or one that lacks a
    prompt; the message says where it looked and the command that makes it.
    """
    from device.content import manifest_path, rendered_matches
    from device.system_prompts import SYSTEM_SET

    if loaded.path is None:
        raise BuildError(f"'{loaded.script.script}' has no file to bundle")
    cache_dir = Path(cache_dir)
    name = loaded.script.script
    set_path = manifest_path(cache_dir, name)
    fix = f"run `circlebox render {name}` (with the same --data) or give --cache DIR"
    try:
        prompt_set = json.loads(set_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        reason = "it is not there" if isinstance(exc, FileNotFoundError) else str(exc)
        raise BuildError(f"no rendered prompt set for '{name}' in {cache_dir} (looked for {set_path}: "
                         f"{reason}); {fix}") from exc
    if not rendered_matches(loaded, cache_dir):
        raise BuildError(f"{set_path}: rendered from another version of {loaded.path}; render again: {fix}")
    prompts = prompt_set.get("prompts", {})
    missing = [pid for pid in loaded.script.prompts() if pid not in prompts]
    if missing:
        raise BuildError(f"{set_path}: prompt {missing[0]!r} is not rendered; render again: {fix}")
    out = {f"scripts/{loaded.path.name}": loaded.path, f"cache/sets/{name}.json": set_path}
    out.update(_prompt_files(prompts, cache_dir))
    system_path = manifest_path(cache_dir, SYSTEM_SET)
    if with_system and name != SYSTEM_SET and system_path.is_file():
        try:
            system = json.loads(system_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BuildError(f"{system_path}: unreadable ({exc}); run `circlebox render --system-only`") from exc
        if system.get("sample_rate") == prompt_set.get("sample_rate"):
            out[f"cache/sets/{SYSTEM_SET}.json"] = system_path
            out.update(_prompt_files(system.get("prompts", {}), cache_dir))
    return out


def _prompt_files(prompts: Mapping[str, Any], cache_dir: Path) -> dict[str, Path]:
    out = {}
    for entry in prompts.values():
        rel = check_path(str(entry["file"]))
        out[f"cache/{rel}"] = Path(cache_dir) / rel
    return out


def make_manifest(
    files: Mapping[str, Path],
    *,
    kind: str,
    version: int,
    min_installed: int,
    compatible: str = DEFAULT_COMPATIBLE,
    description: str = "",
) -> Manifest:
    entries = []
    for rel, path in sorted(files.items()):
        st = path.stat()
        mode = 0o755 if st.st_mode & 0o111 else 0o644
        entries.append(FileEntry(path=check_path(rel), size=st.st_size, sha256=sha256_file(path), mode=mode))
    return Manifest(
        format=FORMAT,
        compatible=compatible,
        kind=kind,
        version=version,  # type: ignore[arg-type]
        min_installed_version=min_installed,
        description=description,
        files=entries,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def _add(
    tar: tarfile.TarFile,
    name: str,
    data: bytes | None = None,
    path: Path | None = None,
    size: int = 0,
    mode: int = 0o644,
) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.uname, info.gname = size, mode, 0, "root", "root"
    if data is not None:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        with open(path, "rb") as handle:  # type: ignore[arg-type]
            tar.addfile(info, handle)


def write_bundle(out: Path, manifest: Manifest, files: Mapping[str, Path], key: Ed25519PrivateKey) -> Path:
    """Write manifest.json, manifest.sig, then payload/ in manifest order; atomic on `out`."""
    manifest_bytes = manifest_to_bytes(manifest)
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:  # the box refuses extension headers
            _add(tar, MANIFEST_NAME, manifest_bytes)
            _add(tar, SIG_NAME, sign_manifest(manifest_bytes, key))
            for entry in manifest.files:
                path = files[entry.path]
                if path.stat().st_size != entry.size or sha256_file(path) != entry.sha256:
                    raise BuildError(f"{path} changed while the bundle was being built")
                _add(tar, PAYLOAD + entry.path, path=path, size=entry.size, mode=entry.mode)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(out.parent)
    return out


def build_bundle(
    out: Path,
    files: Mapping[str, Path],
    key: Ed25519PrivateKey,
    *,
    kind: str,
    version: int,
    min_installed: int,
    compatible: str = DEFAULT_COMPATIBLE,
    description: str = "",
) -> Manifest:
    """Hash the files, sign the manifest, write the bundle; returns the manifest."""
    try:
        manifest = make_manifest(
            files,
            kind=kind,
            version=version,
            min_installed=min_installed,
            compatible=compatible,
            description=description,
        )
    except ValueError as exc:
        raise BuildError(str(exc)) from exc
    write_bundle(out, manifest, files, key)
    return manifest
