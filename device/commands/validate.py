"""`circlebox validate`: check a script file and say exactly what is wrong, where."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check a circle script and explain any mistakes")
    p.add_argument("script", nargs="+", type=Path, help="script file(s)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from device.script import ScriptError, load_script

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
        s = loaded.script
        print(f"{path}: ok: '{s.title or s.script}' version {s.version}, {len(s.steps)} steps, "
              f"{len(s.prompts())} prompts")
    return 2 if bad else 0
