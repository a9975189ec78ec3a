"""Session scripts: what a therapist writes, and the messages she gets when it is wrong."""

from __future__ import annotations

import pytest

from device.script import Pause, ScriptError, load_script, packaged_scripts_dir, parse_script

GOOD = """
script: mini
version: 1
language: en_US
voice: en_US-joe-medium
steps:
  - id: hello
    say: Hello.
  - id: share
    kind: round
    prompt: Share.
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ScriptError) as info:
        parse_script(text, "circle.yaml")
    assert str(info.value).startswith("circle.yaml: ")
    return info.value.problems


def test_default_circle_is_valid_and_has_the_three_steps():
    loaded = load_script(packaged_scripts_dir() / "three-step-circle.yaml")
    s = loaded.script
    assert [st.id for st in s.steps] == ["welcome", "breathe", "share", "close-round", "close", "end-bell"]
    assert [st.kind for st in s.steps] == ["say", "exercise", "round", "round", "say", "bell"]
    text = " ".join(str(p) for p in s.steps[0].say).lower()
    for agreement in ("one voice at a time", "pass", "stays here"):
        assert agreement in text
    assert any(isinstance(p, Pause) for p in s.steps[1].say)


def test_error_names_step_field_and_line():
    bad = GOOD.replace("    prompt: Share.", "    prompt: Share.\n    turns: {warn_s: 200, max_s: 100}")
    assert problems(bad) == ["step 2 'share', field turns (line 12): warn_s (200) must be less than max_s (100)"]


def test_typo_and_missing_field_and_bad_kind():
    bad = GOOD.replace("kind: round", "kind: circle").replace("say: Hello.", "sya: Hello.")
    found = problems(bad)
    assert "step 1 'hello', field say (line 7): is missing" in found
    assert "step 1 'hello', field sya (line 8): is not a known field (check the spelling)" in found
    assert any(p.startswith("step 2 'share', field (the step) (line 9): kind must be one of") for p in found)


def test_duplicate_ids_and_bad_id_shape():
    dup = GOOD.replace("id: share", "id: hello")
    assert any("two steps have the id 'hello'" in p for p in problems(dup))
    assert any("field id" in p and "lower-case" in p for p in problems(GOOD.replace("id: share", "id: Share It")))


def test_other_language_circle_is_well_formed_and_its_messages_are_its_own():
    """Whether a Swahili circle can be *spoken* is device.language's rule (tests/test_language.py):
    the model accepts it, and a message it gives replaces the box's English words."""
    sw = GOOD.replace("language: en_US", "language: sw_KE")
    assert parse_script(sw, "sw.yaml").script.message("help") != ("Tupumzike.",)
    fixed = sw + "messages:\n  help: Tupumzike.\n  ready: {audio: tayari.wav, text: Tayari.}\n"
    script = parse_script(fixed, "sw.yaml").script
    assert script.message("help") == ("Tupumzike.",)
    assert script.message("ready")[0].audio == "tayari.wav"


def test_a_recordings_words_do_not_change_what_the_box_says():
    with_words = parse_script(GOOD.replace("say: Hello.", "say: {audio: a.wav, text: Hello.}"), "a").script
    without = parse_script(GOOD.replace("say: Hello.", "say: {audio: a.wav}"), "b").script
    assert with_words.fingerprint() == without.fingerprint()


def test_not_yaml_and_not_a_mapping():
    assert problems("steps: [") [0].startswith("not valid YAML")
    assert problems("- just\n- a list\n") == ["must be a mapping with script, version, language and steps"]


def test_prompts_cover_every_step_and_message_and_fingerprint_tracks_text():
    a = parse_script(GOOD, "a.yaml").script
    b = parse_script(GOOD.replace("Hello.", "Hello there."), "b.yaml").script
    assert {"step:hello", "step:share", "msg:help", "msg:action_next"} <= set(a.prompts())
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() == parse_script(GOOD + "\n# a comment\n", "c.yaml").script.fingerprint()


def test_recording_paths_must_stay_inside_the_folder():
    bad = GOOD.replace("say: Hello.", "say: {audio: ../../etc/passwd}")
    assert any("recordings folder" in p for p in problems(bad))
