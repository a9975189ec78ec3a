"""What the box plays: a validated script and its rendered sounds, matched to each other.

The runtime only ever loads what was rendered before (it never imports Piper). A script whose
rendered set is missing or stale is refused with the command that fixes it, and the box keeps
the last good circle it had.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from device.script import LoadedScript, ScriptError, find_script, load_script


class ContentError(RuntimeError):
    """The circle cannot be played as it is; the message says what to do."""


def cache_dir(data_dir: Path) -> Path:
    return data_dir / "cache"


def manifest_path(cache: Path, script_id: str) -> Path:
    return cache / "sets" / f"{script_id}.json"


def script_sha256(loaded: LoadedScript) -> str:
    return hashlib.sha256(loaded.text.encode("utf-8")).hexdigest()


def rendered_matches(loaded: LoadedScript, cache: Path) -> bool:
    path = manifest_path(cache, loaded.script.script)
    try:
        meta = json.loads(path.read_text(encoding="utf-8")).get("meta", {})
    except (OSError, ValueError):
        return False
    return meta.get("prompts_sha256") == loaded.script.fingerprint()


@dataclass(frozen=True)
class Circle:
    """A script with the sounds rendered for exactly this text."""

    loaded: LoadedScript
    bank: object  # audio.bank.SoundBank


def load_circle(loaded: LoadedScript, cache: Path) -> Circle:
    from audio.bank import SoundBank

    path = manifest_path(cache, loaded.script.script)
    if not path.exists():
        raise ContentError(
            f"'{loaded.script.script}' has not been rendered yet: run `circlebox render {loaded.script.script}`"
        )
    if not rendered_matches(loaded, cache):
        raise ContentError(
            f"'{loaded.script.script}' changed since it was rendered: run `circlebox render {loaded.script.script}`"
        )
    bank = SoundBank.from_manifest(path)
    missing = [p for p in loaded.script.prompts() if p not in bank]
    if missing:
        raise ContentError(f"rendered set for '{loaded.script.script}' lacks {', '.join(missing[:5])}")
    return Circle(loaded, bank)


def ensure_rendered(loaded: LoadedScript, cache: Path, *, voices_dir: Path | None, sample_rate: int,
                    loudness_lufs: float, quiet: bool = False) -> None:
    """Render what is missing (imports Piper: for the CLI, the simulator and the admin page only)."""
    if rendered_matches(loaded, cache):
        return
    import sys

    from audio.render import RenderSettings, format_progress, render_script

    reused = 0

    def progress(done: int, total: int, prompt: str, was_reused: bool) -> None:
        nonlocal reused
        reused += was_reused
        if not quiet:
            print("\r" + format_progress(done, total, prompt, reused).ljust(78), end="", file=sys.stderr)

    render_script(loaded, cache, voices_dir=voices_dir,
                  settings=RenderSettings(sample_rate=sample_rate, loudness_lufs=loudness_lufs),
                  progress=progress)
    if not quiet:
        print(file=sys.stderr)


def resolve_script(name: str, data_dir: Path) -> LoadedScript:
    return load_script(find_script(name, data_dir))


__all__ = ["Circle", "ContentError", "ScriptError", "ensure_rendered", "load_circle", "resolve_script"]
