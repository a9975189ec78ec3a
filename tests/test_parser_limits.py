"""Hostile text for the editor and the circle parser (issue 12): bounded before any pattern or
parser runs, and linear after. Reproduced as the review did; durations are never asserted (a
generous subprocess timeout is only a guard: the old code took hours on these inputs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from device.script import MAX_PROBLEMS, MAX_SCRIPT_CHARS, MAX_YAML_NODES, ScriptError, parse_script
from local_admin import store

REPO = Path(__file__).resolve().parent.parent
GUARD_S = 120  # far above the ~1 ms these take now; the old pattern needed hours


def _run(code: str) -> str:
    """`code` in a fresh interpreter, with a timeout as a guard only."""
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=GUARD_S
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


# -- the editor's [pause] / [recording] markers --------------------------------------------------


def test_an_unclosed_pause_and_spaces_is_plain_text_at_the_longest_allowed_length():
    """The review: "[pause" and 3,000 spaces took 14 s (cubic); at the 20,000 characters a step
    may have, the old pattern would run for hours and time out here."""
    out = _run(
        "from local_admin.store import text_to_parts, MAX_STEP_TEXT\n"
        "print(repr(text_to_parts('[pause' + ' ' * (MAX_STEP_TEXT - 6))))"
    )
    assert out == "'[pause'"


@pytest.mark.parametrize(
    "hostile",
    [
        "[pause " * (store.MAX_STEP_TEXT // 7),  # many unclosed markers
        "[" * store.MAX_STEP_TEXT,
        "[recording\t" + "a" * (store.MAX_STEP_TEXT - 20),
        "[pause x" * (store.MAX_STEP_TEXT // 8),
    ],
)
def test_other_unclosed_marker_shapes_finish(hostile):
    _run(
        "from local_admin.store import text_to_parts\n"
        f"text_to_parts({hostile!r})"
    )


def test_markers_still_read_as_before():
    parts = store.text_to_parts(
        "Breathe in. [pause 4] Breathe out. [PAUSE 2.5s] [recording a b.wav] [pause ] x [pause\n3 ]"
    )
    assert parts == [
        "Breathe in.", {"pause": 4}, "Breathe out.", {"pause": 2.5}, {"audio": "a b.wav"},
        "[pause ] x", {"pause": 3},
    ]


def test_text_over_the_limit_is_refused_in_plain_words_before_any_pattern():
    form = {
        "script": "c", "title": "", "language": "en_US", "voice": "", "steps": [{
            "orig": "", "id": "one", "kind": "say", "title": "", "core": False,
            "text": "x" * (store.MAX_STEP_TEXT + 1), "then": "wait_for_next",
        }],
    }
    errors: dict[str, str] = {}
    store.form_to_script(form, None, 1, errors)
    assert "20,001 characters" in errors["s0_text"] and "at most 20,000" in errors["s0_text"]
    with pytest.raises(ValueError, match="at most 20,000"):
        store.text_to_parts("x" * (store.MAX_STEP_TEXT + 1))


# -- circle YAML: size, nodes, and error reporting ------------------------------------------------

HEAD = "script: x\nversion: 1\nlanguage: en\nvoice: v\nsteps:\n  - id: a\n    say: hi\n"


def _unknown_keys(count: int, indent: str = "") -> str:
    return HEAD + "".join(f"{indent}k{i}: 1\n" for i in range(count))


def test_a_circle_with_40000_unknown_keys_is_refused_before_validation():
    """The review: 40,000 unknown keys took 117 s (each problem scanned every key)."""
    text = _unknown_keys(40_000)
    assert len(text) < MAX_SCRIPT_CHARS  # so it is the node bound that stops it
    with pytest.raises(ScriptError) as caught:
        parse_script(text, "big.yaml")
    assert caught.value.problems == [
        f"has more than {MAX_YAML_NODES:,} entries (keys, values and list items); a circle has "
        "far fewer: check that the file is a circle"
    ]


def _lines_run_in_script_module(text: str) -> tuple[int, list[str]]:
    """parse_script(text), counting the lines of device/script.py it runs (its work)."""
    from device import script as script_module

    lines = 0

    def local(frame, event, arg):
        nonlocal lines
        if event == "line":
            lines += 1
        return local

    def tracer(frame, event, arg):
        return local if frame.f_code.co_filename == script_module.__file__ else None

    sys.settrace(tracer)
    try:
        parse_script(text, "wide.yaml")
    except ScriptError as exc:
        problems = exc.problems
    finally:
        sys.settrace(None)
    return lines, problems


def test_many_unknown_keys_under_the_bound_are_reported_linearly_and_capped():
    """Unknown keys in one step: the work per problem stays the same however many there are
    (the old code scanned the whole mapping for each problem's line: quadratic)."""
    small, _ = _lines_run_in_script_module(_unknown_keys(500, indent="    "))
    large, problems = _lines_run_in_script_module(_unknown_keys(3_000, indent="    "))
    assert large < 6 * small * 1.5  # 6 times the keys, about 6 times the work (old: about 36x)
    assert len(problems) == MAX_PROBLEMS + 1
    assert problems[0] == "step 1 'a', field k0 (line 8): is not a known field (check the spelling)"
    assert problems[-1] == f"and {3_000 - MAX_PROBLEMS:,} more problems (fix these first)"


def test_a_circle_file_over_the_size_bound_is_refused_before_parsing():
    text = HEAD + "# " + "x" * MAX_SCRIPT_CHARS + "\n"
    with pytest.raises(ScriptError, match=r"characters; a circle file may be at most 524,288"):
        parse_script(text, "huge.yaml")
    assert store.raw_dict(text) == {}  # the editor's reader uses the same bounds


def test_the_editor_reads_circles_with_the_same_bounds():
    assert store.raw_dict(HEAD)["steps"] == [{"id": "a", "say": "hi"}]
    assert store.raw_dict(_unknown_keys(40_000)) == {}
