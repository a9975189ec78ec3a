"""What the box plays: a validated script and its rendered sounds, matched to each other.

The one answer to "which circle does the box play, and from where" is `resolve_circle`: the
runtime, the admin page, the doctor, `render`, `simulate` and `bundle build` all ask it, so none
of them can look in a different place than the box. A circle comes from the box's own copy
(written by the admin editor), a content bundle's release, the packaged circles, or a save a
power cut interrupted; its sounds live in the box's cache or in the release that brought it.

The runtime only ever loads what was rendered before (it never imports Piper). A script whose
rendered set is missing or stale is refused with the command that fixes it, and the box keeps
the last good circle it had.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from device.datafolder import SCRIPT_SUFFIXES, DataFolder, data_folder
from device.script import LoadedScript, ScriptError, load_script, packaged_scripts_dir, parse_script


class ContentError(RuntimeError):
    """The circle cannot be played as it is; the message says what to do."""


def cache_dir(data_dir: Path | DataFolder) -> Path:
    """The box's own cache (`DataFolder.cache`); kept for its many callers."""
    return data_folder(data_dir).cache


def manifest_path(cache: Path, script_id: str) -> Path:
    """The rendered set of `script_id` in a cache (the layout is audio.cache's)."""
    from audio.cache import SETS_DIR

    return Path(cache) / SETS_DIR / f"{script_id}.json"


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
    # set when the sounds were rendered by an earlier version of the box (see load_circle):
    # plain words for the fault line, with the command that brings them up to date
    stale_note: str | None = None


def _rendered_by_earlier_box(loaded: LoadedScript, path: Path) -> bool:
    """Was this set rendered from exactly this circle text, by a box whose built-in messages
    differed? A software update that adds a message (the rehearsal ones, say) changes every
    circle's fingerprint without a word of the circle changing; such a set still plays."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8")).get("meta", {})
    except (OSError, ValueError, AttributeError):
        return False
    return meta.get("script_sha256") == script_sha256(loaded)


def _missing_built_ins(loaded: LoadedScript, missing: Sequence[str]) -> bool:
    """Are all of `missing` built-in messages the circle does not word itself?"""
    own = loaded.script.messages
    return all(p.startswith("msg:") and p.removeprefix("msg:") not in own for p in missing)


def load_circle(loaded: LoadedScript, cache: Path, system_caches: Sequence[Path] | None = None, *,
                system_language: str | None = None, data: Path | DataFolder | None = None) -> Circle:
    """The script with its rendered sounds from `cache`, and the box's own prompts from the
    first of `system_caches` (default: `cache`) that has a usable system set; with
    `system_language` and `data`, that language pack's recordings replace the English ones
    (device.language_packs)."""
    from audio.bank import SoundBank

    path = manifest_path(cache, loaded.script.script)
    if not path.exists():
        raise ContentError(
            f"'{loaded.script.script}' has not been rendered yet: run `circlebox render {loaded.script.script}` "
            f"(looked for {path})"
        )
    earlier_box = False
    if not rendered_matches(loaded, cache):
        earlier_box = _rendered_by_earlier_box(loaded, path)
        if not earlier_box:
            raise ContentError(
                f"'{loaded.script.script}' changed since it was rendered: run `circlebox render {loaded.script.script}`"
            )
    system = usable_system_manifest(system_caches if system_caches is not None else (cache,), path)
    bank = SoundBank.from_manifest(path, system) if system is not None else SoundBank.from_manifest(path)
    if system_language and data is not None:
        from device.language_packs import apply_pack

        apply_pack(bank, data, system_language)
    missing = [p for p in loaded.script.prompts() if p not in bank]
    if missing and not (earlier_box and _missing_built_ins(loaded, missing)):
        raise ContentError(f"rendered set for '{loaded.script.script}' lacks {', '.join(missing[:5])}")
    if earlier_box:
        lacking = f" ({len(missing)} of the box's messages are not in it yet)" if missing else ""
        return Circle(loaded, bank, stale_note=(
            f"'{loaded.script.script}' was rendered by an earlier version of the box{lacking}; it plays as "
            f"rendered: run `circlebox render {loaded.script.script}` (or Save it on the admin page)"))
    return Circle(loaded, bank)


def usable_system_manifest(caches: Sequence[Path], circle_manifest: Path) -> Path | None:
    """The system set's manifest (setup code, self-test, update prompts): the first in `caches`
    that exists and has the circle's sample rate; a box without one still plays its circle."""
    import logging

    from device.system_prompts import system_manifest_path

    log = logging.getLogger("circlebox.content")
    try:
        circle_rate = json.loads(circle_manifest.read_text(encoding="utf-8"))["sample_rate"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for cache in caches:
        path = system_manifest_path(cache)
        if not path.exists():
            continue
        try:
            rate = json.loads(path.read_text(encoding="utf-8"))["sample_rate"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("system prompts in %s unusable (%s): run `circlebox render`", cache, exc)
            continue
        if rate != circle_rate:
            log.error("system prompts in %s are at %s Hz, the circle at %s Hz: run `circlebox render`",
                      cache, rate, circle_rate)
            continue
        return path
    return None


def _system_progress(done: int, total: int, prompt: str, was_reused: bool) -> None:
    """The box's own prompts render first (a fresh folder: most of a minute); show it happening."""
    import sys

    line = f"rendering the box's own prompts {done}/{total} {prompt}"
    print("\r" + line.ljust(78), end="\n" if done >= total else "", file=sys.stderr, flush=True)


def ensure_rendered(loaded: LoadedScript, cache: Path, *, voices_dir: Path | None, sample_rate: int,
                    loudness_lufs: float, quiet: bool = False, system_voice: str | None = None,
                    button_names: Sequence[str] | None = None) -> None:
    """Render what is missing or stale: the circle, and the box's own "system" set.

    Imports Piper: for the CLI, the simulator and the admin page only. `system_voice` defaults
    to the package default (audio.system_voice); `button_names` to the default button map.
    """
    from device.system_prompts import DEFAULT_SYSTEM_VOICE, render_system_set

    render_system_set(cache, voice_id=system_voice or DEFAULT_SYSTEM_VOICE, voices_dir=voices_dir,
                      sample_rate=sample_rate, loudness_lufs=loudness_lufs, button_names=button_names,
                      progress=None if quiet else _system_progress)
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


# -- which circle the box plays, and from where -------------------------------------------------


class Origin(StrEnum):
    """Where a circle the box plays comes from."""

    BOX = "box copy"  # <data>/scripts: written on the box (the admin editor)
    INSTALLED = "installed"  # <data>/current/content/scripts: brought by a content bundle
    PACKAGED = "packaged"  # shipped with the program
    FILE = "file"  # a script file named on the command line
    INTERRUPTED_SAVE = "interrupted save"  # a save a power cut left between its render and its switch


@dataclass(frozen=True)
class CircleSource:
    """A circle as the box would play it: the script, where it came from, where its sounds are."""

    name: str  # what was asked for (session.script, a command-line argument)
    loaded: LoadedScript
    origin: Origin
    cache: Path  # where its rendered sounds live (and where `render` puts them)
    data: DataFolder
    release_version: int | None = None  # the content bundle's version, when INSTALLED

    @property
    def script_id(self) -> str:
        return self.loaded.script.script

    @property
    def version(self) -> int:
        return self.loaded.script.version

    @property
    def editable(self) -> bool:
        """An installed release is never changed in place: the admin page copies it to edit."""
        return self.origin is not Origin.INSTALLED

    @property
    def system_caches(self) -> tuple[Path, ...]:
        """Where the box's own prompts are looked for: the box's cache (rendered for its own
        buttons and voice), then the circle's own (a content bundle may carry a system set)."""
        return tuple(dict.fromkeys((self.data.cache, self.cache)))

    def where(self) -> str:
        """Where the circle comes from, in words for people."""
        if self.origin is Origin.INSTALLED:
            bundle = f"version {self.release_version}" if self.release_version else "installed"
            return f"installed by a content bundle ({bundle}), {self.loaded.path}"
        if self.origin is Origin.INTERRUPTED_SAVE:
            return f"a save that was cut before its switch, {self.loaded.path}"
        return f"{self.origin.value}, {self.loaded.path}"

    def describe(self) -> str:
        return f"'{self.script_id}' version {self.version} ({self.where()})"


def script_candidates(name: str, data: Path | DataFolder | None) -> list[tuple[Path, Origin]]:
    """Every copy of circle `name`, in the order of preference on equal versions: a file path
    as given, else the box's copy, the installed one, the packaged one (only the packaged
    ones without a data folder)."""
    if Path(name).suffix in SCRIPT_SUFFIXES and Path(name).exists():
        return [(Path(name), Origin.FILE)]
    dirs: tuple[tuple[Path, Origin], ...] = ((packaged_scripts_dir(), Origin.PACKAGED),)
    if data is not None:
        data = data_folder(data)
        dirs = ((data.scripts, Origin.BOX), (data.installed_scripts, Origin.INSTALLED), *dirs)
    return [(d / f"{name}{suffix}", origin) for d, origin in dirs for suffix in SCRIPT_SUFFIXES
            if (d / f"{name}{suffix}").is_file()]


def _candidates(name: str, data_dir: Path | DataFolder) -> list[Path]:
    """The paths of `script_candidates` (the runtime watches them for changes)."""
    return [path for path, _origin in script_candidates(name, data_dir)]


def installed_content_dir(data_dir: Path | DataFolder) -> Path:
    """The content release a USB bundle installed (`DataFolder.installed_content`)."""
    return data_folder(data_dir).installed_content


def installed_content_version(data: Path | DataFolder) -> int | None:
    """The version of the content bundle in use, from the manifest it was installed with."""
    from device.update.manifest import META_DIR

    path = data_folder(data).installed_content / META_DIR / "manifest.json"
    try:
        version = json.loads(path.read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError, AttributeError):
        return None
    return version if isinstance(version, int) else None


def _cache_of(origin: Origin, data: DataFolder) -> Path:
    return data.installed_cache if origin is Origin.INSTALLED else data.cache


_PARSED: dict[tuple[str, int, int, int], LoadedScript] = {}


def _load(path: Path) -> LoadedScript:
    """`load_script`, parsed once per version of the file (the list page and the runtime's
    reload check ask often; an atomic save makes a new inode)."""
    try:
        st = os.stat(path)
    except OSError:
        return load_script(path)
    key = (str(path), st.st_ino, st.st_mtime_ns, st.st_size)
    loaded = _PARSED.get(key)
    if loaded is None:
        loaded = load_script(path)
        if len(_PARSED) > 200:
            _PARSED.clear()
        _PARSED[key] = loaded
    return loaded


def resolve_circle(name: str, data: Path | DataFolder) -> CircleSource:
    """The circle the box plays for `name` (session.script, or a file path), and from where.

    The box's own copy first, then the installed content bundle, then the packaged one; but a
    later copy with a higher version wins (a programme's update supersedes an older local edit).
    A broken first choice is an error, so the runtime can say so and keep its last good circle.
    When the choice is not rendered but a save a power cut interrupted at its switch is
    (`interrupted_save`), that save is the circle: the version the admin page confirmed.
    """
    data = data_folder(data)
    found = script_candidates(name, data)
    if not found:
        looked = [str(d) for d in (*data.script_dirs(), packaged_scripts_dir())]
        raise ScriptError(name, [f"no such circle (looked in {', '.join(looked)})"])
    best_path, best_origin = found[0]
    best = _load(best_path)
    for path, origin in found[1:]:
        try:
            other = _load(path)
        except ScriptError:
            continue
        if other.script.version > best.script.version:
            best, best_origin = other, origin
    cache = _cache_of(best_origin, data)
    if not rendered_matches(best, cache):
        draft = interrupted_save(data, best.script.script)
        if draft is not None and draft.script.version >= best.script.version:
            return CircleSource(name, draft, Origin.INTERRUPTED_SAVE, data.cache, data)
    version = installed_content_version(data) if best_origin is Origin.INSTALLED else None
    return CircleSource(name, best, best_origin, cache, data, version)


def load_source(source: CircleSource, system_language: str | None = None) -> Circle:
    """The resolved circle with its sounds, exactly as the runtime plays it (the box's own
    prompts in `system_language`'s pack, where it has them)."""
    if source.origin is Origin.INTERRUPTED_SAVE:
        import logging

        logging.getLogger("circlebox.content").warning(
            "playing version %s of '%s': its save was cut before the switch", source.version, source.script_id)
    return load_circle(source.loaded, source.cache, source.system_caches, system_language=system_language,
                       data=source.data)


def system_manifest_for(source: CircleSource) -> Path | None:
    """The system set the runtime would load beside this circle (None: none usable)."""
    return usable_system_manifest(source.system_caches, manifest_path(source.cache, source.script_id))


def cache_for(loaded: LoadedScript, data_dir: Path | DataFolder) -> Path:
    """Where the rendered sounds of this script live: in its content release, or the box's cache."""
    data = data_folder(data_dir)
    if loaded.path is not None and loaded.path.absolute().is_relative_to(data.installed_content.absolute()):
        return data.installed_cache
    return data.cache


def draft_path(data_dir: Path | DataFolder, script_id: str) -> Path:
    """A save waiting for its prompts to render (`DataFolder.draft`); kept for its callers."""
    return data_folder(data_dir).draft(script_id)


def interrupted_save(data_dir: Path | DataFolder, script_id: str) -> LoadedScript | None:
    """The draft a power cut left between its new rendered set and its switch, if any.

    A save renders the draft's prompts, writes the circle's rendered set, then makes the draft
    live. A cut between the two leaves a set made for the draft beside a live copy it no longer
    matches. Such a draft is what the box should play (the admin page finishes the switch when
    it starts); a draft whose render did not finish is not.
    """
    data = data_folder(data_dir)
    path = data.draft(script_id)
    live = data.script(script_id)
    try:
        draft = parse_script(path.read_text(encoding="utf-8"), str(path), live)
        if draft.script.script != script_id or not rendered_matches(draft, data.cache):
            return None
        if live.exists() and rendered_matches(load_script(live), data.cache):
            return None  # the live copy still plays (same prompts): nothing was cut
    except (ScriptError, OSError, UnicodeDecodeError):
        return None
    return draft


def load_configured_circle(name: str, data_dir: Path | DataFolder, system_language: str | None = None) -> Circle:
    """The circle `name` as the box plays it: `resolve_circle`, matched to its rendered set."""
    return load_source(resolve_circle(name, data_dir), system_language)


def resolve_script(name: str, data_dir: Path | DataFolder) -> LoadedScript:
    """The script `resolve_circle` chooses for `name` (for callers that need only the text)."""
    return resolve_circle(name, data_dir).loaded


__all__ = ["Circle", "CircleSource", "ContentError", "Origin", "ScriptError", "cache_dir", "cache_for", "draft_path",
           "ensure_rendered", "installed_content_dir", "installed_content_version", "interrupted_save", "load_circle",
           "load_configured_circle", "load_source", "manifest_path", "rendered_matches", "resolve_circle",
           "resolve_script", "script_candidates", "system_manifest_for", "usable_system_manifest"]
