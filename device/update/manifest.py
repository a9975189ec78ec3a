"""The bundle manifest: a strict model, path rules and size limits.

Parsed only after its signature checked out, and still strictly (no type coercion, no unknown
or duplicate keys), because a signed manifest can still be a mistaken one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from device.update import messages as M
from device.update.errors import Refusal

FORMAT = 1
KINDS = ("app", "content", "voice", "language_pack", "config")
Kind = Literal["app", "content", "voice", "language_pack", "config"]
DEFAULT_COMPATIBLE = "circlebox-pi-v1"
META_DIR = ".circlebox"  # inside a release: the manifest and signature it was installed from
_COMPONENT = re.compile(r"^[A-Za-z0-9_+=@,-][A-Za-z0-9._+=@,-]*$")
MiB = 1 << 20
PAYLOAD = "payload/"  # where a bundle's files are, inside its tar


def ustar_name_fits(name: str) -> bool:
    """Whether a tar member name fits a plain ustar header (155 bytes of prefix, '/', 100 of
    name): the box refuses every tar extension header, so a bundle may only use such names."""
    raw = name.encode("utf-8")
    if len(raw) <= 100:
        return True
    return any(raw[i] == ord("/") and i <= 155 and len(raw) - i - 1 <= 100 for i in range(len(raw)))


@dataclass(frozen=True)
class Limits:
    """Refuse anything bigger before reading it; tests shrink these to prove the checks."""

    max_manifest: int = 1 * MiB
    max_sig: int = 512
    max_member: int = 1024 * MiB
    max_total: int = 4096 * MiB
    max_files: int = 20_000
    reserve: int = 32 * MiB  # free space left on the data partition after an install


def check_path(path: str) -> str:
    """A relative POSIX path of plain components (no '..', '.', '\\', NUL, not the meta dir)."""
    if not path or len(path) > 255:
        raise ValueError(f"path {path[:80]!r} is empty or longer than 255 characters")
    if path.startswith("/"):
        raise ValueError(f"path {path[:80]!r} is absolute")
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise ValueError(f"path {path[:80]!r} has an empty, '.' or '..' component")
        if not _COMPONENT.match(part) or len(part) > 100:
            raise ValueError(
                f"path {path[:80]!r}: component {part[:40]!r} is too long or has characters "
                "outside A-Z a-z 0-9 . _ + = @ , -"
            )
    if not ustar_name_fits(PAYLOAD + path):
        raise ValueError(f"path {path[:80]!r} is too long for a plain tar header (split it into shorter folders)")
    if parts[0] == META_DIR:
        raise ValueError(f"path {path[:80]!r} is inside the reserved {META_DIR}/ directory")
    return path


class FileEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)
    path: str
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    mode: int

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return check_path(value)

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: int) -> int:
        if value not in (0o644, 0o755):
            raise ValueError(f"mode {value:o} must be 644 or 755 (no setuid, no group or world write)")
        return value


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)
    format: Literal[1]
    compatible: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{0,63}$")
    kind: Kind
    version: int = Field(ge=1, lt=2**31)
    min_installed_version: int = Field(ge=0, lt=2**31)
    created: str = Field(max_length=40)
    description: str = Field(default="", max_length=200)
    files: list[FileEntry]

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if self.min_installed_version >= self.version:
            raise ValueError("min_installed_version must be lower than version")
        seen: set[str] = set()
        for entry in self.files:
            if entry.path in seen:
                raise ValueError(f"path {entry.path!r} is listed twice")
            seen.add(entry.path)
        dirs = {"/".join(p.split("/")[:i]) for p in seen for i in range(1, p.count("/") + 1)}
        clash = sorted(seen & dirs)
        if clash:
            raise ValueError(f"{clash[0]!r} is listed as a file and used as a directory")
        return self

    @property
    def total_size(self) -> int:
        return sum(e.size for e in self.files)

    @property
    def release_name(self) -> str:
        return f"{self.kind}-{self.version}"


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [k for k, _ in pairs]
    dupes = {k for k in keys if keys.count(k) > 1}
    if dupes:
        raise ValueError(f"duplicate key {sorted(dupes)[0]!r}")
    return dict(pairs)


def parse_manifest(data: bytes, limits: Limits = Limits()) -> Manifest:
    """Signed manifest bytes -> Manifest, or a Refusal (damaged) that names the problem."""
    if len(data) > limits.max_manifest:
        raise Refusal(M.DAMAGED, f"manifest is {len(data)} bytes, the limit is {limits.max_manifest}")
    try:
        raw = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
        manifest = Manifest.model_validate(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        if isinstance(exc, ValidationError):
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top level)"
            detail = f"{where}: {first['msg'].removeprefix('Value error, ')}"
        else:
            detail = str(exc)[:200]
        raise Refusal(M.DAMAGED, f"manifest is not valid: {detail}") from None
    if len(manifest.files) > limits.max_files:
        raise Refusal(
            M.DAMAGED,
            f"manifest lists {len(manifest.files)} files, the limit is {limits.max_files}",
        )
    for entry in manifest.files:
        if entry.size > limits.max_member:
            raise Refusal(M.DAMAGED, f"{entry.path} is {entry.size} bytes, the limit is {limits.max_member}")
    if manifest.total_size > limits.max_total:
        raise Refusal(M.DAMAGED, f"payload is {manifest.total_size} bytes, the limit is {limits.max_total}")
    return manifest


def manifest_to_bytes(manifest: Manifest) -> bytes:
    """The bytes the builder signs (the box never re-serialises: it keeps the originals)."""
    return (json.dumps(manifest.model_dump(mode="json"), indent=1, sort_keys=True) + "\n").encode("utf-8")
