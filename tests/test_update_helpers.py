"""Shared helpers for the updater tests: keys, bundles (good and hand-made hostile ones), a box
with fake seams and a fake clock, and a hash of a whole box tree."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device.update.box import Box, Seams
from device.update.builder import build_bundle
from device.update.keys import key_id, sign_manifest
from device.update.manifest import Limits


class FakeClock:
    """Time that moves only when the updater sleeps, or by `step` on every read."""

    def __init__(self, step: float = 0.0):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class RecordingAnnouncer:
    def __init__(self, clock: FakeClock | None = None):
        self.said: list[tuple[float, str, dict]] = []
        self.clock = clock

    def say(self, code: str, **fields: object) -> None:
        self.said.append((self.clock.now if self.clock else 0.0, code, fields))

    @property
    def codes(self) -> list[str]:
        return [code for _, code, _ in self.said]


class Keys:
    def __init__(self):
        self.private = Ed25519PrivateKey.generate()
        self.public = self.private.public_key()
        self.trusted = {key_id(self.public): self.public}


def voice_files(voice_id: str = "sw_KE-test-medium", model: bytes = b"onnx",
                language: str = "sw_KE") -> dict[str, bytes]:
    """A voice bundle's payload: a Piper model and its config declaring its language (the
    installer's self-test refuses a voice release without them)."""
    config = {"audio": {"sample_rate": 22050}, "language": {"code": language}}
    return {f"voices/{voice_id}.onnx": model, f"voices/{voice_id}.onnx.json": json.dumps(config).encode()}


def write_files(directory: Path, files: dict[str, bytes]) -> dict[str, Path]:
    out = {}
    for rel, data in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if rel.startswith("hooks/"):
            path.chmod(0o755)
        out[rel] = path
    return out


def good_bundle(
    tmp: Path,
    keys: Keys,
    version: int,
    *,
    kind: str = "app",
    min_installed: int = 0,
    files: dict[str, bytes] | None = None,
    compatible: str = "circlebox-pi-v1",
    name: str | None = None,
) -> Path:
    files = (
        files
        if files is not None
        else {"app/main.py": f"VERSION = {version}\n".encode(), "app/data.bin": os.urandom(3000)}
    )
    src = tmp / f"src-{kind}-{version}-{os.urandom(3).hex()}"
    out = tmp / (name or f"{kind}-{version}.cbx")
    build_bundle(
        out,
        write_files(src, files),
        keys.private,
        kind=kind,
        version=version,
        min_installed=min_installed,
        compatible=compatible,
    )
    return out


def manifest_for(files: dict[str, bytes], version: int = 2, **extra: object) -> dict:
    return {
        "format": 1,
        "compatible": "circlebox-pi-v1",
        "kind": "app",
        "version": version,
        "min_installed_version": 0,
        "created": "2026-11-23T00:00:00+00:00",
        "description": "",
        "files": [
            {"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest(), "mode": 0o644}
            for p, d in files.items()
        ],
        **extra,
    }


def member(name: str, data: bytes = b"", type_: bytes = tarfile.REGTYPE, **attrs: object):
    info = tarfile.TarInfo(name)
    info.type, info.size = type_, len(data) if type_ in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def header(manifest: dict | bytes, keys: Keys | None) -> list:
    """manifest.json and (if keys) manifest.sig members, signed over the exact bytes."""
    raw = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    out = [member("manifest.json", raw)]
    if keys is not None:
        out.append(member("manifest.sig", sign_manifest(raw, keys.private)))
    return out


def raw_bundle(path: Path, members: list, fmt: int = tarfile.USTAR_FORMAT) -> Path:
    """A tar written member by member, exactly as given (for hostile bundles)."""
    with tarfile.open(path, "w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.size else None)
    return path


def tree_hash(root: Path) -> str:
    """Every path, type, mode, content and link target under root, except the last-result file."""
    digest = hashlib.sha256()
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if rel == "update/last-result.json":
                continue
            st = path.lstat()
            digest.update(f"{rel}|{st.st_mode:o}|".encode())
            if path.is_symlink():
                digest.update(os.readlink(path).encode())
            elif path.is_file():
                digest.update(path.read_bytes())
    return digest.hexdigest()


def make_box(root: Path, keys: Keys, clock: FakeClock | None = None, **seams: object) -> Box:
    clock = clock or FakeClock()
    announcer = seams.pop("announcer", None) or RecordingAnnouncer(clock)
    limits = seams.pop("limits", Limits(reserve=0))
    box = Box(
        root=root,
        trusted_keys=keys.trusted,
        limits=limits,
        seams=Seams(announcer=announcer, clock=clock, sleep=clock.sleep, **seams),
    )
    return box
