"""Voices by id: the packaged one, extra files in a voices folder, broken pairs reported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from audio.voices import VoiceNotFound, find_voice, list_voices, scan_voices

JOE = "en_US-joe-medium"


def test_packaged_voice_is_found_by_id() -> None:
    voice = find_voice(JOE, None)
    assert voice.model_path.name == f"{JOE}.onnx" and voice.model_path.is_file()
    assert voice.config_path.name == f"{JOE}.onnx.json"
    assert voice.sample_rate == 22050 and voice.language == "en_US"
    assert JOE in [v.id for v in list_voices(None)]


def _add_voice(directory: Path, voice_id: str, config: dict | None) -> None:
    directory.mkdir(exist_ok=True)
    (directory / f"{voice_id}.onnx").symlink_to(find_voice(JOE).model_path)
    if config is not None:
        (directory / f"{voice_id}.onnx.json").write_text(json.dumps(config))


def test_voices_dir_adds_voices_and_reports_incomplete_pairs(tmp_path: Path) -> None:
    voices = tmp_path / "voices"
    _add_voice(
        voices, "sw_KE-test-low", {"audio": {"sample_rate": 16000}, "espeak": {"voice": "sw"}}
    )
    _add_voice(voices, "xx_XX-nojson-low", None)
    _add_voice(voices, "yy_YY-broken-low", {"audio": {}})
    found = {v.id: v for v in list_voices(voices)}
    assert found["sw_KE-test-low"].sample_rate == 16000
    assert found["sw_KE-test-low"].language == "sw"  # no language.code: the espeak voice
    assert JOE in found and "xx_XX-nojson-low" not in found and "yy_YY-broken-low" not in found
    _, problems = scan_voices(voices)
    assert any("xx_XX-nojson-low.onnx.json" in p for p in problems)
    assert any("yy_YY-broken-low.onnx.json" in p for p in problems)
    with pytest.raises(VoiceNotFound) as err:
        find_voice("xx_XX-nojson-low", voices)
    assert "xx_XX-nojson-low.onnx.json" in str(err.value)


def test_unknown_voice_lists_the_available_ones() -> None:
    with pytest.raises(VoiceNotFound) as err:
        find_voice("zz_ZZ-nobody-low", None)
    message = str(err.value)
    assert "zz_ZZ-nobody-low" in message and JOE in message
    assert isinstance(err.value, LookupError)


def test_runtime_modules_do_not_import_piper_or_onnxruntime() -> None:
    code = (
        "import sys, audio.bank, audio.speaker, audio.timeline, audio.tones, audio.cache, "
        "audio.voices\n"
        "heavy = ('piper', 'onnxruntime', 'pyloudnorm', 'soxr', 'scipy')\n"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
