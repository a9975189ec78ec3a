"""What the box plays: a validated script and its rendered sounds, matched to each other.

The runtime only ever loads what was rendered before (it never imports Piper). A script whose
rendered set is missing or stale is refused with the command that fixes it, and the box keeps
the last good circle it had.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from device.script import LoadedScript, ScriptError, find_script, load_script, parse_script


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


def _rendered_with(loaded: LoadedScript, cache: Path, sample_rate: int, loudness_lufs: float) -> bool:
    """Rendered by this renderer with these settings? (The runtime plays older sets regardless:
    they are valid audio; only the render paths refresh them.)"""
    from audio.render import RENDERER_VERSION

    try:
        manifest = json.loads(manifest_path(cache, loaded.script.script).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (manifest.get("renderer") == RENDERER_VERSION and manifest.get("sample_rate") == sample_rate
            and manifest.get("meta", {}).get("loudness_lufs") == loudness_lufs)


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
    system = _system_manifest_if_usable(cache, path)
    bank = SoundBank.from_manifest(path, system) if system is not None else SoundBank.from_manifest(path)
    missing = [p for p in loaded.script.prompts() if p not in bank]
    if missing:
        raise ContentError(f"rendered set for '{loaded.script.script}' lacks {', '.join(missing[:5])}")
    return Circle(loaded, bank)


def _system_manifest_if_usable(cache: Path, circle_manifest: Path) -> Path | None:
    """The system set's manifest (setup code, self-test, update prompts) when it exists and has
    the circle's sample rate; a box without it still plays its circle."""
    import logging

    from device.system_prompts import system_manifest_path

    path = system_manifest_path(cache)
    if not path.exists():
        return None
    try:
        rate = json.loads(path.read_text(encoding="utf-8"))["sample_rate"]
        circle_rate = json.loads(circle_manifest.read_text(encoding="utf-8"))["sample_rate"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logging.getLogger("circlebox.content").error("system prompts unusable (%s): run `circlebox render`", exc)
        return None
    if rate != circle_rate:
        logging.getLogger("circlebox.content").error(
            "system prompts are at %s Hz, the circle at %s Hz: run `circlebox render`", rate, circle_rate)
        return None
    return path


def ensure_rendered(loaded: LoadedScript, cache: Path, *, voices_dir: Path | None, sample_rate: int,
                    loudness_lufs: float, quiet: bool = False, system_voice: str | None = None,
                    button_names: Sequence[str] | None = None) -> None:
    """Render what is missing or stale: the circle, and the box's own "system" set.

    Imports Piper: for the CLI, the simulator and the admin page only. `system_voice` defaults
    to the package default (audio.system_voice); `button_names` to the default button map.
    """
    from device.system_prompts import DEFAULT_SYSTEM_VOICE, render_system_set

    render_system_set(cache, voice_id=system_voice or DEFAULT_SYSTEM_VOICE, voices_dir=voices_dir,
                      sample_rate=sample_rate, loudness_lufs=loudness_lufs, button_names=button_names)
    if rendered_matches(loaded, cache) and _rendered_with(loaded, cache, sample_rate, loudness_lufs):
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


def installed_content_dir(data_dir: Path) -> Path:
    """The content release a USB bundle installed (device/update): scripts/ and cache/."""
    return data_dir / "current" / "content"


def cache_for(loaded: LoadedScript, data_dir: Path) -> Path:
    """Where the rendered sounds of this script live: in its content release, or the box's cache."""
    bundle = installed_content_dir(data_dir)
    if loaded.path is not None and loaded.path.absolute().is_relative_to(bundle.absolute()):
        return bundle / "cache"
    return cache_dir(data_dir)


def _candidates(name: str, data_dir: Path) -> list[Path]:
    from device.script import packaged_scripts_dir

    if Path(name).suffix in (".yaml", ".yml") and Path(name).exists():
        return [Path(name)]
    dirs = [data_dir / "scripts", installed_content_dir(data_dir) / "scripts", packaged_scripts_dir()]
    return [d / f"{name}{suffix}" for d in dirs for suffix in (".yaml", ".yml") if (d / f"{name}{suffix}").exists()]


def user_script_path(data_dir: Path, script_id: str) -> Path:
    """The box's own copy of a circle (what the admin editor saves and the box plays)."""
    return data_dir / "scripts" / f"{script_id}.yaml"


def draft_path(data_dir: Path, script_id: str) -> Path:
    """A save waiting for its prompts to render; it replaces the live copy once they are."""
    return data_dir / "scripts" / ".drafts" / f"{script_id}.yaml"


def interrupted_save(data_dir: Path, script_id: str) -> LoadedScript | None:
    """The draft a power cut left between its new rendered set and its switch, if any.

    A save renders the draft's prompts, writes the circle's rendered set, then makes the draft
    live. A cut between the two leaves a set made for the draft beside a live copy it no longer
    matches. Such a draft is what the box should play (the admin page finishes the switch when
    it starts); a draft whose render did not finish is not.
    """
    path = draft_path(data_dir, script_id)
    live = user_script_path(data_dir, script_id)
    cache = cache_dir(data_dir)
    try:
        draft = parse_script(path.read_text(encoding="utf-8"), str(path), live)
        if draft.script.script != script_id or not rendered_matches(draft, cache):
            return None
        if live.exists() and rendered_matches(load_script(live), cache):
            return None  # the live copy still plays (same prompts): nothing was cut
    except (ScriptError, OSError, UnicodeDecodeError):
        return None
    return draft


def load_configured_circle(name: str, data_dir: Path) -> Circle:
    """The circle `name` as the box plays it: `resolve_script`, matched to its rendered set; or
    the save a power cut interrupted at its switch (`interrupted_save`), so the box plays the
    version the admin page confirmed without waiting for the page to start."""
    loaded = resolve_script(name, data_dir)
    try:
        return load_circle(loaded, cache_for(loaded, data_dir))
    except ContentError:
        draft = interrupted_save(data_dir, loaded.script.script)
        if draft is None or draft.script.version < loaded.script.version:
            raise
        import logging

        logging.getLogger("circlebox.content").warning(
            "playing version %s of '%s': its save was cut before the switch", draft.script.version,
            draft.script.script)
        return load_circle(draft, cache_dir(data_dir))


def resolve_script(name: str, data_dir: Path) -> LoadedScript:
    """The script to run for `name`: the box's own copy (edited on the admin page) first, then
    the installed content bundle, then the packaged one; but a later copy with a higher
    version wins (a programme's update supersedes an older local edit). A broken first
    choice is an error, so the runtime can say so and keep its last good circle."""
    paths = _candidates(name, data_dir)
    if not paths:
        return load_script(find_script(name, data_dir))  # raises the "no such script" error
    best = load_script(paths[0])
    for path in paths[1:]:
        try:
            other = load_script(path)
        except ScriptError:
            continue
        if other.script.version > best.script.version:
            best = other
    return best


__all__ = ["Circle", "ContentError", "ScriptError", "cache_for", "ensure_rendered", "interrupted_save", "load_circle",
           "load_configured_circle", "resolve_script"]
