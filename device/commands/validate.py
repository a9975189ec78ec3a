"""`circlebox validate`: check a script file and say exactly what is wrong, where.

Two kinds of problems: the circle is not well formed (device.script names the step, field and
line), or a prompt cannot be said rightly on this box (device.language: its recording is not
there, or it would be spoken by a voice of another language than the circle's).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check a circle script and explain any mistakes")
    p.add_argument("script", nargs="+", type=Path, help="script file(s)")
    p.set_defaults(handler=run)


def _voice_languages(args: argparse.Namespace) -> tuple[dict[str, str], Path | None]:
    """voice id -> language, for the voices this box has (packaged, in paths.voices_dir and
    installed by a voice bundle)."""
    from audio.voices import scan_voices
    from device.commands import load_cli_config

    config = load_cli_config(args)
    voices, _problems = scan_voices(config.voice_dirs)
    return {v.id: v.language for v in voices}, config.paths.voices_dir


def prompt_problems(loaded: Any, voices: dict[str, str]) -> list[str]:
    """Each prompt that is missing a recording or would be spoken in the wrong language."""
    from device.language import check_prompts

    script = loaded.script
    folder = loaded.recordings_dir
    problems = [str(p) for p in check_prompts(
        script, voice_language=voices.get(script.voice or ""),
        recording_exists=(lambda name: (folder / name).is_file()) if folder is not None else None)]
    if script.voice and script.voice not in voices:
        problems.insert(0, f"voice: '{script.voice}' is not on this box; it has: {', '.join(voices) or 'no voices'}")
    return problems


def run(args: argparse.Namespace) -> int:
    from device.script import ScriptError, load_script

    voices, _dir = _voice_languages(args)
    bad = 0
    for path in args.script:
        try:
            loaded = load_script(path)
        except ScriptError as exc:
            bad += 1
            print(f"{exc.source}: {len(exc.problems)} problem(s)", file=sys.stderr)
            for problem in exc.problems:
                print(f"  - {problem}", file=sys.stderr)
            continue
        problems = prompt_problems(loaded, voices)
        if problems:
            bad += 1
            print(f"{path}: {len(problems)} prompt(s) the box cannot say rightly", file=sys.stderr)
            for problem in problems:
                print(f"  - {problem}", file=sys.stderr)
            continue
        s = loaded.script
        print(f"{path}: ok: '{s.title or s.script}' version {s.version}, {len(s.steps)} steps, "
              f"{len(s.prompts())} prompts")
    return 2 if bad else 0
