"""Rendering with the real Piper voice: cache, loudness, pauses, recordings, errors, the CLI.

One small script is rendered once per module (the voice loads once); each test works on its own
copy of that cache, so "reused" and "rendered" counts are exact.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile

from audio.bank import SoundBank, SoundBankError
from audio.loudness import measure_lufs, peak_dbfs
from audio.render import RenderError, RenderSettings, render_prompt_set, render_script
from audio.voices import VoiceNotFound
from device.script import DEFAULT_MESSAGES, Pause, Recording, load_script, parse_script

RATE = 22050
TARGET = -18.0
VOICE = "en_US-joe-medium"
SHORT = "Okay."
# Every box message gets the same short text: rendered once, reused for the others.
MESSAGES = tuple(DEFAULT_MESSAGES)

SCRIPT = f"""\
script: tiny-circle
version: 1
language: en_US
voice: {VOICE}
steps:
  - id: welcome
    say: Welcome to the circle.
  - id: breathe
    kind: exercise
    say:
      - Breathe in.
      - pause: 1.0
      - Breathe out.
  - id: share
    kind: round
    prompt: Please share, one at a time.
messages:
""" + "".join(f"  {m}: {SHORT}\n" for m in MESSAGES)


def write_script(directory: Path, text: str = SCRIPT, name: str = "tiny-circle") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def read_wav(path: Path) -> tuple[np.ndarray, tuple[int, int, int]]:
    with wave.open(str(path), "rb") as w:
        shape = (w.getnchannels(), w.getsampwidth(), w.getframerate())
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2"), shape


def snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def longest_zero_run(x: np.ndarray) -> tuple[int, int]:
    """(start, length) of the longest run of exact zeros."""
    padded = np.concatenate([[0], (x == 0).astype(np.int8), [0]])
    steps = np.diff(padded)
    starts, ends = np.flatnonzero(steps == 1), np.flatnonzero(steps == -1)
    if starts.size == 0:
        return 0, 0
    i = int(np.argmax(ends - starts))
    return int(starts[i]), int(ends[i] - starts[i])


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("render-base")
    script_path = write_script(root / "scripts")
    calls: list[tuple[int, int, str, bool]] = []
    result = render_script(
        load_script(script_path), root / "cache", progress=lambda *a: calls.append(a)
    )
    return {"root": root, "script": script_path, "result": result, "calls": calls}


@pytest.fixture
def work(base: dict, tmp_path: Path) -> dict:
    """A private copy of the rendered cache and the script."""
    shutil.copytree(base["root"] / "cache", tmp_path / "cache")
    script = write_script(tmp_path / "scripts", base["script"].read_text())
    return {"cache": tmp_path / "cache", "script": script, "root": tmp_path}


def manifest(cache: Path, name: str = "tiny-circle") -> dict:
    return json.loads((cache / "sets" / f"{name}.json").read_text())


# -- the rendered files ------------------------------------------------------------------


def test_first_render_renders_each_distinct_prompt_and_writes_the_manifest(base: dict) -> None:
    result = base["result"]
    loaded = load_script(base["script"])
    prompts = loaded.script.prompts()
    data = manifest(base["root"] / "cache")
    assert set(data["prompts"]) == set(prompts)
    assert data["name"] == "tiny-circle" and data["voice"] == VOICE and data["sample_rate"] == RATE
    assert data["meta"]["script"] == "tiny-circle" and data["meta"]["version"] == 1
    assert len(data["meta"]["script_sha256"]) == 64
    assert data["meta"]["prompts_sha256"] == loaded.script.fingerprint()
    # All messages have the same text: one render, the others reuse it.
    assert len(result.rendered) == 4 and len(result.reused) == len(prompts) - 4
    assert {e["key"] for e in data["prompts"].values()} == {
        data["prompts"][p]["key"]
        for p in ("step:welcome", "step:breathe", "step:share", "msg:help")
    }
    assert [c[0] for c in base["calls"]] == list(range(1, len(prompts) + 1))
    assert all(c[1] == len(prompts) for c in base["calls"])
    assert [c[2] for c in base["calls"]] == list(prompts)


def test_rendered_wavs_are_16bit_mono_at_target_loudness_and_never_clip(base: dict) -> None:
    cache = base["root"] / "cache"
    for prompt_id, entry in manifest(cache)["prompts"].items():
        assert entry["file"] == f"prompts/{entry['key']}.wav"
        samples, shape = read_wav(cache / entry["file"])
        assert shape == (1, 2, RATE), prompt_id
        assert entry["duration_s"] == pytest.approx(samples.size / RATE, abs=1e-3)
        x = samples / 32768.0
        assert np.sqrt(np.mean(x**2)) > 0.01, f"{prompt_id} is (nearly) silent"
        assert abs(measure_lufs(x, RATE) - TARGET) <= 1.0, prompt_id
        assert peak_dbfs(x) < -1.0, prompt_id
        # 5 ms fades: the first and last samples are (near) zero, so no click.
        assert abs(int(samples[0])) < 50 and abs(int(samples[-1])) < 50, prompt_id


def test_exercise_pause_is_silence_of_the_written_length(base: dict) -> None:
    cache = base["root"] / "cache"
    samples, _ = read_wav(cache / manifest(cache)["prompts"]["step:breathe"]["file"])
    start, length = longest_zero_run(samples)
    # 1.0 s written; the 5 ms fades on either side may round a few more samples to zero.
    assert RATE * 1.0 <= length <= RATE * 1.012
    before, after = samples[:start] / 32768.0, samples[start + length :] / 32768.0
    assert np.sqrt(np.mean(before**2)) > 0.02 and np.sqrt(np.mean(after**2)) > 0.02
    assert before.size > 0.3 * RATE and after.size > 0.3 * RATE  # "Breathe in." / "Breathe out."


# -- what an edit costs ------------------------------------------------------------------


def test_editing_one_step_rerenders_only_that_prompt(work: dict) -> None:
    before = manifest(work["cache"])
    script = work["script"]
    script.write_text(script.read_text().replace("Please share, one at a time.", "Please share."))
    result = render_script(load_script(script), work["cache"])
    assert result.rendered == ["step:share"]
    assert set(result.reused) == set(before["prompts"]) - {"step:share"}
    after = manifest(work["cache"])
    new_key = after["prompts"]["step:share"]["key"]
    assert new_key != before["prompts"]["step:share"]["key"]
    assert (work["cache"] / "prompts" / f"{new_key}.wav").is_file()
    for prompt_id in set(before["prompts"]) - {"step:share"}:
        assert after["prompts"][prompt_id] == before["prompts"][prompt_id]
    # The old file is now unused (and reported so), the new one is in use.
    from audio.cache import PromptCache

    unused = {p.stem for p in PromptCache(work["cache"]).unused_wavs()}
    assert unused == {before["prompts"]["step:share"]["key"]}


def test_a_new_setting_changes_every_key(work: dict) -> None:
    loaded = load_script(work["script"])
    prompts = {"step:welcome": loaded.script.prompts()["step:welcome"]}
    same = render_prompt_set("one", prompts, VOICE, work["cache"])
    quieter = render_prompt_set(
        "one", prompts, VOICE, work["cache"], settings=RenderSettings(loudness_lufs=-23.0)
    )
    assert same.reused == ["step:welcome"] and quieter.rendered == ["step:welcome"]
    entry = manifest(work["cache"], "one")["prompts"]["step:welcome"]
    samples, _ = read_wav(work["cache"] / entry["file"])
    assert abs(measure_lufs(samples / 32768.0, RATE) - -23.0) <= 1.0


# -- failures leave the last good state --------------------------------------------------


def test_missing_voice_names_it_and_touches_nothing(work: dict) -> None:
    before = snapshot(work["cache"])
    script = work["script"]
    script.write_text(script.read_text().replace(f"voice: {VOICE}", "voice: xx_XX-nobody-low"))
    with pytest.raises(VoiceNotFound) as err:
        render_script(load_script(script), work["cache"])
    assert "xx_XX-nobody-low" in str(err.value) and VOICE in str(err.value)
    assert snapshot(work["cache"]) == before


def test_text_that_cannot_be_spoken_names_the_prompt_and_keeps_the_manifest(work: dict) -> None:
    good = {"step:ok": (SHORT,)}
    render_prompt_set("set", good, VOICE, work["cache"])
    kept = (work["cache"] / "sets" / "set.json").read_bytes()
    before = snapshot(work["cache"])
    with pytest.raises(RenderError) as err:
        render_prompt_set("set", {**good, "step:bad": ("...",)}, VOICE, work["cache"])
    assert "step:bad" in str(err.value) and err.value.prompt_id == "step:bad"
    assert (work["cache"] / "sets" / "set.json").read_bytes() == kept
    assert snapshot(work["cache"]) == before  # no half-written prompt, no temp files


def test_text_without_a_voice_is_refused(work: dict) -> None:
    with pytest.raises(RenderError, match="step:a"):
        render_prompt_set("x", {"step:a": ("Hello.",)}, None, work["cache"])


# -- uploaded recordings -----------------------------------------------------------------


def _write_stereo_wav(path: Path, rate: int = 44100, seconds: float = 1.5) -> None:
    t = np.arange(int(rate * seconds)) / rate
    left = 0.05 * np.sin(2 * np.pi * 440.0 * t)  # about -29 dBFS: far from the target
    right = 0.05 * np.sin(2 * np.pi * 440.0 * t + 0.3)
    frames = (np.stack([left, right], axis=1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames.tobytes())


@pytest.mark.parametrize("suffix", ["wav", "ogg", "mp3"])
def test_recording_is_decoded_resampled_and_normalised(tmp_path: Path, suffix: str) -> None:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    _write_stereo_wav(recordings / "src.wav")
    if suffix != "wav":
        data, rate = soundfile.read(recordings / "src.wav")
        soundfile.write(recordings / f"hello.{suffix}", data, rate, format=suffix.upper())
    else:
        (recordings / "src.wav").rename(recordings / "hello.wav")
    parts = (Recording(audio=f"hello.{suffix}"),)
    result = render_prompt_set(
        "rec", {"step:rec": parts}, None, tmp_path / "cache", recordings_dir=recordings
    )
    assert result.rendered == ["step:rec"]
    entry = manifest(tmp_path / "cache", "rec")["prompts"]["step:rec"]
    samples, shape = read_wav(tmp_path / "cache" / entry["file"])
    assert shape == (1, 2, RATE)
    assert samples.size == pytest.approx(1.5 * RATE, abs=RATE * 0.01)
    x = samples / 32768.0
    assert abs(measure_lufs(x, RATE) - TARGET) <= 1.0 and peak_dbfs(x) < -1.0
    spectrum = np.abs(np.fft.rfft(x))
    assert np.fft.rfftfreq(x.size, 1 / RATE)[np.argmax(spectrum)] == pytest.approx(440, abs=2)


def test_changing_a_recording_file_rerenders_it(tmp_path: Path) -> None:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    _write_stereo_wav(recordings / "r.wav")
    prompts = {"step:rec": (Recording(audio="r.wav"), Pause(pause=0.5))}
    args = dict(recordings_dir=recordings)
    render_prompt_set("rec", prompts, None, tmp_path / "cache", **args)
    assert render_prompt_set("rec", prompts, None, tmp_path / "cache", **args).reused == [
        "step:rec"
    ]
    _write_stereo_wav(recordings / "r.wav", seconds=1.0)
    assert render_prompt_set("rec", prompts, None, tmp_path / "cache", **args).rendered == [
        "step:rec"
    ]


def test_missing_recording_names_prompt_and_file(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match=r"step:rec.*gone\.wav"):
        render_prompt_set(
            "rec",
            {"step:rec": (Recording(audio="gone.wav"),)},
            None,
            tmp_path / "cache",
            recordings_dir=tmp_path,
        )


# -- the sound bank, from a real manifest ------------------------------------------------


def test_sound_bank_loads_every_prompt_and_the_tones(base: dict) -> None:
    cache = base["root"] / "cache"
    data = manifest(cache)
    bank = SoundBank.from_manifest(cache / "sets" / "tiny-circle.json")
    assert bank.sample_rate == RATE
    for prompt_id, entry in data["prompts"].items():
        samples, _ = read_wav(cache / entry["file"])
        assert bank.pcm(prompt_id) == samples.tobytes()
        assert bank.duration_s(prompt_id) == pytest.approx(entry["duration_s"], abs=1e-3)
    for name in ("soft_bell", "bell", "warn_bell", "end_bell", "chime", "tick", "fault"):
        assert f"bell:{name}" in bank and bank.duration_s(f"bell:{name}") > 0.05
    assert set(bank.ids()) == set(data["prompts"]) | {
        i for i in bank.ids() if i.startswith("bell:")
    }


def test_sound_bank_names_a_missing_or_corrupt_file(work: dict) -> None:
    cache = work["cache"]
    entry = manifest(cache)["prompts"]["step:welcome"]
    wav = cache / entry["file"]
    wav.write_bytes(wav.read_bytes()[:1000])
    with pytest.raises(SoundBankError, match=entry["key"]) as err:
        SoundBank.from_manifest(cache / "sets" / "tiny-circle.json")
    assert "step:welcome" in str(err.value)
    wav.unlink()
    with pytest.raises(SoundBankError, match=rf"{entry['key']}\.wav: missing"):
        SoundBank.from_manifest(cache / "sets" / "tiny-circle.json")


def test_sound_bank_refuses_mixed_sample_rates(work: dict) -> None:
    cache = work["cache"]
    other = manifest(cache)
    other["sample_rate"] = 16000
    (cache / "sets" / "other.json").write_text(json.dumps(other))
    with pytest.raises(SoundBankError, match=r"other\.json"):
        SoundBank.from_manifest(cache / "sets" / "tiny-circle.json", cache / "sets" / "other.json")


# -- the command line --------------------------------------------------------------------


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`circlebox ...` through device.cli.main; while sibling commands are still being written,
    through a parser holding just the render command and main's own error handling."""
    from device import cli
    from device.errors import UserFacingError

    if all(importlib.util.find_spec(m) for m in cli.COMMAND_MODULES):
        code = cli.main(argv)
    else:
        from device.commands import render as render_command

        parser = argparse.ArgumentParser(prog="circlebox")
        parser.add_argument("--config")
        parser.add_argument("--data")
        render_command.register(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(argv)
        try:
            code = int(args.handler(args) or 0)
        except UserFacingError as exc:
            print(f"circlebox: {exc}", file=sys.stderr)
            code = 2
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_renders_with_progress_and_summary(
    work: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    data = work["root"]
    code, out, _ = run_cli(["--data", str(data), "render", "tiny-circle"], capsys)
    assert code == 0
    total = len(manifest(work["cache"])["prompts"])
    assert f"rendering 1/{total} step:welcome ...  (reused 1)" in out
    last = list(manifest(work["cache"])["prompts"])[-1]
    assert f"rendering {total}/{total} {last} ...  (reused {total})" in out
    assert f"tiny-circle: {total} prompts: 0 rendered, {total} reused" in out
    script = work["script"]
    script.write_text(script.read_text().replace("Welcome to the circle.", "Welcome, all."))
    code, out, _ = run_cli(["--data", str(data), "render", str(script)], capsys)
    assert code == 0 and f"{total} prompts: 1 rendered, {total - 1} reused" in out


def test_cli_refuses_a_broken_script_naming_step_and_field(
    work: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(work["cache"])
    broken = SCRIPT.replace("    prompt: Please share, one at a time.", "    promt: Please share.")
    path = write_script(work["root"] / "scripts", broken, name="broken")
    code, _, err = run_cli(["--data", str(work["root"]), "render", str(path)], capsys)
    assert code == 2
    assert "step 3 'share'" in err and "field prompt" in err and "field promt" in err
    assert snapshot(work["cache"]) == before


def test_cli_missing_voice_is_a_clean_error(work: dict, capsys: pytest.CaptureFixture[str]) -> None:
    script = work["script"]
    script.write_text(script.read_text().replace(f"voice: {VOICE}", "voice: xx_XX-nobody-low"))
    code, _, err = run_cli(["--data", str(work["root"]), "render", "tiny-circle"], capsys)
    assert code == 2 and "voice 'xx_XX-nobody-low' not found" in err and "Traceback" not in err


def test_parse_script_prompts_match_the_renderer_input() -> None:
    # The renderer takes Script.prompts() as is: texts, Pause and Recording parts.
    parts = parse_script(SCRIPT, "x").script.prompts()["step:breathe"]
    assert parts == ("Breathe in.", Pause(pause=1.0), "Breathe out.")


def test_render_all_lists_user_scripts_then_packaged_ones(tmp_path: Path) -> None:
    from device.commands.render import _all_scripts
    from device.script import packaged_scripts_dir

    write_script(tmp_path / "scripts")
    write_script(tmp_path / "scripts", SCRIPT, name="three-step-circle")  # shadows the packaged
    found = _all_scripts(tmp_path)
    assert tmp_path / "scripts" / "tiny-circle.yaml" in found
    assert tmp_path / "scripts" / "three-step-circle.yaml" in found
    assert packaged_scripts_dir() / "three-step-circle.yaml" not in found
    assert len({p.stem for p in found}) == len(found)
