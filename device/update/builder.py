"""Building a signed .cbx on the technician's laptop, from a directory or a rendered script."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

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


def files_of_script(script: Path, cache_dir: Path) -> dict[str, Path]:
    """A script plus its rendered prompt set: scripts/<file>, cache/sets/<id>.json, the WAVs.

    Refuses a stale render (the set's script hash differs) or a prompt missing from the set.
    """
    from device.script import ScriptError, load_script

    try:
        loaded = load_script(Path(script))
    except ScriptError as exc:
        raise BuildError(str(exc)) from exc
    name = loaded.script.script
    set_path = Path(cache_dir) / "sets" / f"{name}.json"
    try:
        prompt_set = json.loads(set_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BuildError(f"{set_path}: no rendered prompt set ({exc}); run `circlebox render` first") from exc
    text_sha = hashlib.sha256(loaded.text.encode("utf-8")).hexdigest()
    if prompt_set.get("meta", {}).get("script_sha256") != text_sha:
        raise BuildError(f"{set_path}: rendered from another version of {script}; render again")
    prompts = prompt_set.get("prompts", {})
    missing = [pid for pid in loaded.script.prompts() if pid not in prompts]
    if missing:
        raise BuildError(f"{set_path}: prompt {missing[0]!r} is not rendered; render again")
    out = {f"scripts/{Path(script).name}": Path(script), f"cache/sets/{name}.json": set_path}
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
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
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
