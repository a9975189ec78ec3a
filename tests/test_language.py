"""device.language: every prompt that is missing a recording or would be spoken in another
language than the circle's is named, in the therapist's words."""

from __future__ import annotations

import pytest

from device.language import check_prompts, language_name, prompt_infos, voice_note
from device.script import DEFAULT_MESSAGES, parse_script

SPANISH = """
script: circulo
version: 1
language: es
voice: en_US-joe-medium
steps:
  - id: bienvenida
    say: Bienvenidos al círculo.
  - id: ronda
    kind: round
    prompt: Cada persona comparte una cosa.
    between_turns: {say: Gracias.}
messages:
  help: Hagamos una pausa.
  wrap_up: Gracias por compartir.
  reminder: Un recordatorio amable.
  finished: El círculo ha terminado.
"""


def _all_recorded(language: str = "sw", voice: str | None = None) -> str:
    messages = "\n".join(f"  {name}: {{audio: {name}.wav}}" for name in DEFAULT_MESSAGES)
    return (f"script: rec\nversion: 1\nlanguage: {language}\n" + (f"voice: {voice}\n" if voice else "")
            + "steps:\n  - id: karibu\n    say: {audio: karibu.wav, text: Karibu.}\n"
            + f"messages:\n{messages}\n")


def test_every_prompt_of_a_spanish_circle_with_the_english_voice_is_named():
    script = parse_script(SPANISH, "es.yaml").script
    found = check_prompts(script, voice_language="en_US")
    named = {p.prompt.prompt_id for p in found}
    assert named == set(script.prompts())  # each one: the steps, the spoken between-turns, 19 messages
    step = next(p for p in found if p.prompt.prompt_id == "step:bienvenida")
    assert str(step) == ("Step 1 'bienvenida': en_US-joe-medium speaks English; this circle is in "
                         "Spanish: record this, or add a Spanish voice")
    assert step.prompt.field == "s0_text"
    ready = next(p for p in found if p.prompt.prompt_id == "msg:ready")
    assert ready.prompt.field == "msg_ready" and "box's own words for this are English" in ready.problem
    assert next(p for p in found if p.prompt.prompt_id == "step:ronda:between").prompt.field == "s1_between"


def test_a_voice_of_the_circles_language_may_speak_its_words_but_not_the_english_defaults():
    script = parse_script(SPANISH, "es.yaml").script
    found = {p.prompt.prompt_id for p in check_prompts(script, voice_language="es_MX")}
    assert found == {f"msg:{n}" for n in DEFAULT_MESSAGES if n not in script.messages}


def test_the_circle_may_let_the_voice_speak_another_language():
    allowed = parse_script(SPANISH + "allow_other_language: true\n", "es.yaml").script
    assert check_prompts(allowed, voice_language="en_US") == []


def test_an_english_circle_with_the_english_voice_has_no_problems():
    script = parse_script(SPANISH.replace("language: es", "language: en_GB"), "en.yaml").script
    assert check_prompts(script, voice_language="en_US") == []


def test_a_circle_made_only_of_recordings_needs_no_voice_and_names_a_missing_file():
    script = parse_script(_all_recorded(), "rec.yaml").script
    assert check_prompts(script, recording_exists=lambda name: True) == []
    missing = check_prompts(script, recording_exists=lambda name: name != "ready.wav")
    assert [str(p) for p in missing] == [
        "Message: The box is ready: the recording ready.wav is not on the box: record it again"]


def test_words_without_a_voice_or_a_recording_are_missing():
    text = _all_recorded().replace("say: {audio: karibu.wav, text: Karibu.}", "say: Karibu.")
    found = check_prompts(parse_script(text, "rec.yaml").script, recording_exists=lambda n: True)
    assert [p.prompt.prompt_id for p in found] == ["step:karibu"]
    assert "no recording" in found[0].problem and found[0].missing_recording


def test_prompts_are_listed_in_the_order_the_box_plays_them():
    ids = [p.prompt_id for p in prompt_infos(parse_script(SPANISH, "es.yaml").script)]
    assert ids[:3] == ["step:bienvenida", "step:ronda", "step:ronda:between"]
    assert ids[3:] == [f"msg:{n}" for n in DEFAULT_MESSAGES]


@pytest.mark.parametrize(("code", "name"), [("sw_KE", "Swahili"), ("fr", "French"), ("xx", "xx")])
def test_language_names(code, name):
    assert language_name(code) == name


def test_voice_note_says_which_language_the_voice_speaks():
    assert voice_note("en_US-joe-medium", "en_US", "sw") == (
        "en_US-joe-medium speaks English; this circle is in Swahili: record every prompt "
        "(the studio), or add a Swahili voice")
    assert voice_note("en_US-joe-medium", "en_US", "en_GB") is None


def test_validate_names_every_prompt_the_english_voice_would_say_in_spanish(tmp_path):
    """`circlebox validate` on the Spanish circle: exit 2 and one line per prompt (it said "ok")."""
    import subprocess
    import sys

    path = tmp_path / "circulo.yaml"
    path.write_text(SPANISH, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "device.cli", "--data", str(tmp_path / "data"), "validate",
                           str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout
    lines = [line for line in done.stderr.splitlines() if line.startswith("  - ")]
    assert len(lines) == 2 + 1 + len(DEFAULT_MESSAGES)  # two steps, the spoken between-turns, every message
    assert ("  - Step 1 'bienvenida': en_US-joe-medium speaks English; this circle is in Spanish: "
            "record this, or add a Spanish voice") in lines


def test_the_renderer_never_synthesizes_another_language(tmp_path):
    from audio.render import RenderError, render_script

    loaded = parse_script(SPANISH, "es.yaml")
    with pytest.raises(RenderError, match="Step 1 'bienvenida': en_US-joe-medium speaks English"):
        render_script(loaded, tmp_path / "cache")
    assert not (tmp_path / "cache" / "sets").exists()  # nothing rendered, no set the box could play
