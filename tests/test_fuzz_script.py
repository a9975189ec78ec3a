"""Hostile scripts: whatever text a therapist (or a stick nobody checked) hands the loader, the
answer is a valid script or a `ScriptError` whose every problem names a place; never a crash."""

from __future__ import annotations

import copy
import re

import pytest
import yaml
from fuzzing import fuzz_settings
from hypothesis import example, given
from hypothesis import strategies as st

from device.script import LoadedScript, ScriptError, packaged_scripts_dir, parse_script

SOURCE = "fuzz.yaml"
BASE_TEXT = (packaged_scripts_dir() / "three-step-circle.yaml").read_text(encoding="utf-8")
BASE = yaml.safe_load(BASE_TEXT)
FUZZ = fuzz_settings(60)
# Every problem says where: a field, a step, the top level, or a YAML line.
PLACE = re.compile(r"^(field |step \d+ |not valid YAML|must be a mapping)")


def check(text: str) -> LoadedScript | None:
    try:
        loaded = parse_script(text, SOURCE)
    except ScriptError as exc:
        assert exc.problems, "a ScriptError must list its problems"
        for problem in exc.problems:
            assert isinstance(problem, str) and problem.strip()
            assert PLACE.match(problem), f"problem does not name a place: {problem!r}"
        assert str(exc).startswith(SOURCE)
        return None
    assert isinstance(loaded, LoadedScript)
    assert loaded.script.steps, "a valid script has steps"
    loaded.script.prompts()  # a valid script must give its prompts without error
    loaded.script.fingerprint()
    return loaded


# -- scalars and trees that YAML can express ---------------------------------------------------

weird_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    weird_text,
    st.sampled_from(["", " ", "soft_bell", "wait_for_next", "continue", "round", "say", "bell", "timer",
                     "exercise", "on_silence", "../../etc/passwd", "/abs.wav", "a" * 5000, "🙂" * 50,
                     "1e309", "-0", "null", "~", "yes", "NaN"]),
)
trees = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(weird_text, st.sampled_from(
            ["id", "say", "kind", "turns", "pause", "audio", "steps", "count", "bell", "prompt", "then",
             "between_turns", "max_s", "warn_s", "core", "title", "handlers", "messages"])), children, max_size=4),
    ),
    max_leaves=20,
)


def dump(value) -> str:
    return yaml.safe_dump(value, allow_unicode=True, sort_keys=False)


@FUZZ
@given(st.text(max_size=400))
@example("")
@example("steps: [")
@example("- 1\n- 2")
@example("&a [*a]")
@example("a: &a [*a, *a]")
@example("!!python/object:os.system {}")
@example("script: x\nsteps: !!binary aGVsbG8=")
@example("? [1, 2]\n: 3")
def test_random_text(text):
    check(text)


@FUZZ
@given(trees)
def test_random_documents(tree):
    check(dump(tree))


# -- mutated valid scripts -----------------------------------------------------------------------


def paths_of(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths_of(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from paths_of(value, (*prefix, i))


ALL_PATHS = [p for p in paths_of(BASE) if p]


def parent_and_key(doc, path):
    node = doc
    for key in path[:-1]:
        node = node[key]
    return node, path[-1]


mutation = st.tuples(
    st.sampled_from(ALL_PATHS),
    st.sampled_from(["drop", "retype", "rename", "nest", "huge", "unicode"]),
    trees,
    weird_text,
)


def apply(doc, path, how, value, name):
    parent, key = parent_and_key(doc, path)
    if key not in parent if isinstance(parent, dict) else key >= len(parent):
        return  # an earlier mutation removed it
    if how == "drop":
        del parent[key]
    elif how == "retype":
        parent[key] = value
    elif how == "rename" and isinstance(parent, dict):
        parent[name or "x"] = parent.pop(key)
    elif how == "nest":
        inner = parent[key]
        for _ in range(30):
            inner = [inner] if len(name) % 2 else {"x": inner}
        parent[key] = inner
    elif how == "huge":
        parent[key] = 10**40 if len(name) % 2 else -(10**40)
    elif how == "unicode":
        parent[key] = name * 200 if name else "\u202e\u0000\ufeff"


@FUZZ
@given(st.lists(mutation, min_size=1, max_size=4))
def test_mutated_default_circle(mutations):
    doc = copy.deepcopy(BASE)
    for path, how, value, name in mutations:
        try:
            apply(doc, path, how, value, name)
        except (KeyError, IndexError, TypeError):
            continue  # the path no longer exists in this shape
    check(dump(doc))


@FUZZ
@given(st.integers(min_value=0, max_value=len(BASE_TEXT)), st.integers(min_value=1, max_value=80), weird_text)
def test_text_edits_of_the_default_circle(at, length, insert):
    """A text editor's damage: a cut, or random characters pasted into the middle."""
    check(BASE_TEXT[:at] + insert + BASE_TEXT[at + length:])


def test_the_unmutated_circle_still_loads():
    """The mutations above start from a valid script: if it broke, they would prove little."""
    assert check(BASE_TEXT) is not None


def test_deep_nesting_is_a_clean_error():
    """Regression (found by this suite): 5000 nested brackets raised RecursionError out of the loader."""
    deep = "steps: " + "[" * 1500 + "]" * 1500
    with pytest.raises(ScriptError, match="nested too deeply"):
        parse_script(f"script: x\nversion: 1\nlanguage: en_US\n{deep}\n", SOURCE)
    check(f"script: x\nversion: 1\nlanguage: en_US\n{deep}\n")


def test_self_referencing_alias_is_a_clean_error():
    check("script: x\nversion: 1\nlanguage: en_US\nsteps: &a [*a]\n")
    check("script: x\nversion: 1\nlanguage: en_US\nsteps:\n  - &a {id: a, say: [*a]}\n")
