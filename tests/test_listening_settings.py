"""The `listening` config section: defaults, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from device.config import load_config
from device.listening import (
    DEFAULT_PHRASES,
    ListeningConfigError,
    ListeningSettings,
    build_listener,
    listening_settings,
)


def test_defaults_from_an_empty_section():
    s = listening_settings({})
    assert s.enabled is False  # the runtime opens the mic only when config says so
    assert s.speech_start_s == pytest.approx(0.3)
    assert 0.0 < s.self_mute_tail_s <= 1.0
    assert s.commands.language == "en"
    assert s.commands.phrases == DEFAULT_PHRASES["en"]


def test_the_packaged_config_section_validates():
    config = load_config(etc_path=None, admin_path=Path("/nonexistent"), environ={})
    assert listening_settings(config.listening).speech_start_s > 0


def test_language_picks_its_default_phrases():
    s = listening_settings({"commands": {"language": "ko"}})
    assert s.commands.phrases == DEFAULT_PHRASES["ko"]
    assert "넘어가 주세요" in s.commands.phrases
    assert (
        listening_settings({"commands": {"language": "en_US"}}).commands.phrases
        == DEFAULT_PHRASES["en"]
    )


def test_phrases_are_normalised_and_actions_checked():
    s = listening_settings(
        {"commands": {"phrases": {"  Next   Step ": "next", "go to share": "goto:share"}}}
    )
    assert s.commands.phrases == {"next step": "next", "go to share": "goto:share"}
    with pytest.raises(
        ListeningConfigError, match=r"listening\.commands\.phrases: 'jump': unknown action 'leap'"
    ):
        listening_settings({"commands": {"phrases": {"jump": "leap"}}})
    with pytest.raises(
        ListeningConfigError, match=r"listening\.commands\.phrases: needs at least one"
    ):
        listening_settings({"commands": {"phrases": {}}})


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"speech_start_s": 0}, r"listening\.speech_start_s: must be between"),
        ({"speech_start_s": "fast"}, r"listening\.speech_start_s: must be a number"),
        ({"vad_aggressiveness": 4}, r"listening\.vad_aggressiveness: must be 0, 1, 2 or 3"),
        ({"vad_aggressiveness": True}, r"listening\.vad_aggressiveness"),
        ({"noise_suppression": 5}, r"listening\.noise_suppression: must be 0 \(off\), 1, 2, 3 or 4"),
        ({"noise_suppression": "low"}, r"listening\.noise_suppression: must be 0 \(off\)"),
        ({"noise_suppression": True}, r"listening\.noise_suppression"),
        ({"enabled": "yes"}, r"listening\.enabled: must be true or false"),
        ({"speach_start_s": 0.3}, r"listening\.speach_start_s: unknown key"),
        ({"device": ""}, r"listening\.device: must be an ALSA device"),
        ({"self_mute_tail_s": -1}, r"listening\.self_mute_tail_s"),
        ({"commands": {"confidence_floor": 1.5}}, r"listening\.commands\.confidence_floor"),
        ({"commands": {"langauge": "ko"}}, r"listening\.commands\.langauge: unknown key"),
        ({"commands": {"language": "Korean!"}}, r"listening\.commands\.language"),
        ({"commands": {"min_memory_mb": 0.5}}, r"listening\.commands\.min_memory_mb"),
        ({"commands": "on"}, r"listening\.commands: must be a mapping"),
    ],
)
def test_errors_name_the_key(section, message):
    with pytest.raises(ListeningConfigError, match=message):
        listening_settings(section)


def test_commands_off_reasons(tmp_path):
    off = build_listener(listening_settings({"commands": {"enabled": False}}))
    assert off[0].commands is None and "turned off" in off[1]

    small = build_listener(listening_settings({"commands": {"language": "ko"}}), mem_mb=512)
    assert small[0].commands is None and "too little memory" in small[1] and "512 MB" in small[1]

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:         440000 kB\nMemFree: 1 kB\n")
    board = build_listener(listening_settings({"commands": {"language": "ko"}}), meminfo=meminfo)
    assert board[0].commands is None and "429 MB" in board[1]

    nolang = build_listener(listening_settings({"commands": {"language": "sw"}}), mem_mb=4096)
    assert nolang[0].commands is None and "no speech-command model for language 'sw'" in nolang[1]

    missing = build_listener(
        listening_settings({"commands": {"model_path": str(tmp_path / "nope")}}), mem_mb=4096
    )
    assert missing[0].commands is None and "not found" in missing[1]
    # pacing works in every case
    assert all(listener is not None for listener, _ in (off, small, board, nolang, missing))


def test_the_config_holds_the_listening_model_itself():
    config = load_config(etc_path=None, admin_path=Path("/nonexistent"), environ={})
    assert isinstance(config.listening, ListeningSettings)
    assert listening_settings(config.listening) is config.listening  # callers may pass either
    assert listening_settings({}) == config.listening  # a bare mapping is filled from the defaults


def test_one_word_phrases_are_refused_unless_the_language_has_them_built_in():
    with pytest.raises(ListeningConfigError, match=r"listening\.commands\.phrases: 'next': use two words"):
        listening_settings({"commands": {"phrases": {"next": "next"}}})
    korean = {"commands": {"language": "ko", "phrases": {"도와줘": "help", "다음 순서": "next"}}}
    assert listening_settings(korean).commands.phrases["도와줘"] == "help"  # measured, built in


def test_a_language_without_built_in_phrases_is_not_an_error():
    assert listening_settings({"commands": {"language": "sw"}}).commands.phrases == {}
