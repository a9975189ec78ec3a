"""`circlebox render [SCRIPT] [--all] [--system-only]`: synthesize prompts into the cache, ahead of time.

The box's own "system" set (setup code, self-test, update messages) is rendered too, unless a
single SCRIPT is named (a preview); it is a no-op when up to date.

Only what changed is synthesized again; the manifest the box plays from is replaced only when
every prompt rendered. Heavy imports (the renderer, Piper) happen inside the handler.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "render",
        help="render a script's prompts with the offline voice (only what changed)",
        description="Render every prompt of a circle into <data_dir>/cache, reusing cached ones. The circle "
        "is found as the box finds it (its own copy, an installed bundle, the packaged ones).",
    )
    parser.add_argument(
        "script", nargs="?", help="script file or id (default: the configured session.script)"
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="render every script in <data_dir>/scripts and the packaged ones",
    )
    parser.add_argument(
        "--system-only",
        action="store_true",
        help="render only the box's own prompts (setup code, self-test, updates), not a script",
    )
    parser.add_argument(
        "--course",
        metavar="ID",
        help="render a course: each of its circles and what the box says before each meeting "
        "(\"This is session 3 of 16.\"); the configured session.course is rendered with plain `render`",
    )
    parser.set_defaults(handler=handle)


def describe_duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def _all_scripts(data_dir: Path) -> list[Path]:
    """The box's own circles first; a packaged circle with the same file name is shadowed.
    (Circles a content bundle installed came rendered with it.)"""
    from device.datafolder import SCRIPT_SUFFIXES, DataFolder
    from device.script import packaged_scripts_dir

    found: dict[str, Path] = {}
    for directory in (DataFolder(data_dir).scripts, packaged_scripts_dir()):
        for path in sorted(p for suffix in SCRIPT_SUFFIXES for p in directory.glob(f"*{suffix}")):
            found.setdefault(path.stem, path)
    return list(found.values())


class _ProgressLine:
    """One line rewritten in place on a terminal; one line per prompt otherwise (logs, tests)."""

    def __init__(self) -> None:
        self.reused = 0
        self.tty = sys.stdout.isatty()

    def __call__(self, done: int, total: int, prompt_id: str, reused: bool) -> None:
        from audio.render import format_progress

        self.reused += int(reused)
        line = format_progress(done, total, prompt_id, self.reused)
        if self.tty:
            print("\r" + line.ljust(78)[:78], end="" if done < total else "\n", flush=True)
        else:
            print(line, flush=True)


def _render_system(config: Any, cache_dir: Path) -> None:
    """The box's own prompt set ("system"): setup code, self-test, update messages."""
    from audio.render import RenderError
    from audio.voices import VoiceNotFound
    from device.errors import UserFacingError
    from device.system_prompts import SYSTEM_SET, render_system_set, system_manifest_path

    try:
        result = render_system_set(
            cache_dir,
            voice_id=config.audio.system_voice,
            voices_dir=config.voice_dirs,
            sample_rate=config.audio.sample_rate,
            loudness_lufs=config.audio.loudness_lufs,
            button_names=[b.name for b in config.buttons.map],
            progress=_ProgressLine(),
        )
    except (VoiceNotFound, RenderError) as exc:
        raise UserFacingError(f"system prompts (audio.system_voice): {exc}") from exc
    if result is None:
        print(f"{SYSTEM_SET}: up to date")
    else:
        count = len(result.rendered) + len(result.reused)
        print(
            f"{SYSTEM_SET}: {count} prompts: {len(result.rendered)} rendered, "
            f"{len(result.reused)} reused, {describe_duration(result.audio_seconds)} of audio "
            f"in {describe_duration(result.elapsed_s)}"
        )
    print(f"manifest: {system_manifest_path(cache_dir)}")


def handle(args: argparse.Namespace) -> int:
    from audio.cache import cache_dir_for
    from audio.render import RenderError, RenderSettings, render_script
    from audio.voices import VoiceNotFound
    from device.commands import load_cli_config
    from device.content import Origin, rendered_matches, resolve_circle
    from device.errors import UserFacingError
    from device.script import ScriptError, load_script

    config = load_cli_config(args)
    cache_dir = cache_dir_for(config.data_dir)
    settings = RenderSettings(
        sample_rate=config.audio.sample_rate, loudness_lufs=config.audio.loudness_lufs
    )
    if args.all and args.script:
        raise UserFacingError("give a SCRIPT or --all, not both")
    if args.system_only and (args.all or args.script):
        raise UserFacingError("--system-only renders no script: give no SCRIPT and no --all")
    if args.course and (args.all or args.script or args.system_only):
        raise UserFacingError("--course renders a course and its circles: give no SCRIPT, --all or --system-only")
    if args.system_only:
        _render_system(config, cache_dir)
        return 0
    if args.course:
        _render_course(config, args.course)
        _render_system(config, cache_dir)
        return 0
    failures: list[str] = []
    targets: list[Path | str] = (
        list(_all_scripts(config.data_dir)) if args.all else [args.script or config.session.script]
    )
    for target in targets:
        try:
            if isinstance(target, Path):
                loaded, into = load_script(target), cache_dir
            else:  # the copy the box plays, and the cache it plays it from
                source = resolve_circle(target, config.data_dir)
                loaded, into = source.loaded, source.cache
                if source.origin is Origin.INSTALLED:
                    if not rendered_matches(loaded, into):
                        raise ScriptError(target, [
                            f"{source.describe()} does not match the sounds it was installed with; an "
                            "installed release is never changed on the box: install a bundle rendered "
                            "from it, or copy it on the admin page"])
                    print(f"{loaded.script.script}: {source.describe()}: rendered with its bundle, "
                          f"nothing to render")
                    print(f"manifest: {_manifest(into, loaded.script.script)}")
                    continue
            result = render_script(
                loaded,
                into,
                voices_dir=config.voice_dirs,
                settings=settings,
                progress=_ProgressLine(),
            )
        except (ScriptError, VoiceNotFound, RenderError) as exc:
            if not args.all:
                raise UserFacingError(str(exc)) from exc
            failures.append(str(exc))
            print(f"circlebox: {exc}", file=sys.stderr)
            continue
        count = len(result.rendered) + len(result.reused)
        print(
            f"{loaded.script.script}: {count} prompts: {len(result.rendered)} rendered, "
            f"{len(result.reused)} reused, {describe_duration(result.audio_seconds)} of audio "
            f"in {describe_duration(result.elapsed_s)}"
        )
        print(f"manifest: {result.manifest_path}")
    if not args.script and not args.all and config.session.course:  # the box runs a course: render it too
        _render_course(config, config.session.course)
    if not args.script:  # the box's own circle(s): the box's own prompts too
        _render_system(config, cache_dir)
    if failures:
        raise UserFacingError(f"{len(failures)} of {len(targets)} scripts could not be rendered")
    return 0


def _render_course(config: Any, name: str) -> None:
    """A course: each circle it plays (as the box finds it), then its announcements."""
    from audio.render import RenderError, RenderSettings, render_script
    from audio.voices import VoiceNotFound
    from device.content import Origin, rendered_matches, resolve_circle
    from device.course import CourseError, check_course_circles, resolve_course
    from device.course_play import AnnouncementMissing, announcement_set, render_announcements
    from device.errors import UserFacingError
    from device.script import ScriptError

    try:
        course = resolve_course(name, config.data_dir).course
    except CourseError as exc:
        raise UserFacingError(str(exc)) from exc
    problems = check_course_circles(course, config.data_dir)
    if problems:
        raise UserFacingError(f"course '{course.course}' cannot be rendered:\n  " + "\n  ".join(problems))
    settings = RenderSettings(sample_rate=config.audio.sample_rate, loudness_lufs=config.audio.loudness_lufs)
    try:
        for circle in sorted(course.circles()):
            source = resolve_circle(circle, config.data_dir)
            if source.origin is Origin.INSTALLED:
                if not rendered_matches(source.loaded, source.cache):
                    raise UserFacingError(f"{source.describe()} does not match the sounds it was installed with")
                print(f"{circle}: {source.describe()}: rendered with its bundle, nothing to render")
                continue
            result = render_script(source.loaded, source.cache, voices_dir=config.voice_dirs, settings=settings,
                                   progress=_ProgressLine())
            print(f"{circle}: {len(result.rendered)} rendered, {len(result.reused)} reused")
        result = render_announcements(course, config, config.data_dir, progress=_ProgressLine())
    except AnnouncementMissing as exc:  # its circles are rendered: the box plays them, unannounced
        print(f"note: {exc}")
        return
    except (ScriptError, VoiceNotFound, RenderError) as exc:
        raise UserFacingError(f"course '{course.course}': {exc}") from exc
    if result is None:
        print(f"{announcement_set(course.course)}: announcements up to date")
    else:
        print(f"{announcement_set(course.course)}: {len(result.rendered)} announcements rendered, "
              f"{len(result.reused)} reused")


def _manifest(cache: Path, script_id: str) -> Path:
    from device.content import manifest_path

    return manifest_path(cache, script_id)
