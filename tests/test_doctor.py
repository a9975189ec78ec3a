"""`circlebox doctor`: the technician's self-test, simulated here.

The whole command runs in a subprocess (pygame's mixer is once per process) with SDL's disk
driver as the speaker, MockFactory pins pressed by the scripted technician and a WAV as the
microphone. Single checks run in-process with their seams injected.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import wave
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
from conftest import make_config

from device.buttons import ButtonMap
from device.doctor import (
    FAIL,
    PASS,
    SKIP,
    TONE_ID,
    WARN,
    Doctor,
    DoctorSeams,
    ScriptedTechnician,
    find_in_played,
)

REPO = Path(__file__).resolve().parents[1]
BUTTONS = ("next", "repeat", "pause", "help")


def prompt_samples(data: Path, prompt_id: str) -> tuple[np.ndarray, int]:
    cache = data / "cache"
    entry = json.loads((cache / "sets" / "three-step-circle.json").read_text())["prompts"][prompt_id]
    with wave.open(str(cache / entry["file"])) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2"), w.getframerate()


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return path


def room_noise(rate: int, seconds: float) -> np.ndarray:
    return np.random.default_rng(7).normal(0, 30, int(rate * seconds)).astype("<i2")


@pytest.fixture
def room_wav(box_data, tmp_path) -> Path:
    """Someone talking in a quiet room: a second of room noise, four seconds of speech, noise."""
    speech, rate = prompt_samples(box_data, "step:welcome")
    noise = room_noise(rate, 1.0)
    return write_wav(tmp_path / "room.wav", np.concatenate([noise, speech[: 4 * rate], noise]), rate)


@pytest.fixture
def clean_kernel_log(tmp_path) -> Path:
    path = tmp_path / "kernel.log"
    path.write_text("[    1.0] mmc0: new high speed SDHC card at address aaaa\n"
                    "[    1.1] mmcblk0: mmc0:aaaa SD32G 29.7 GiB\n")
    return path


def doctor(data: Path, tmp: Path, *extra: str, config: dict | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    report = tmp / "report.json"
    argv = [sys.executable, "-m", "device.cli", "--data", str(data)]
    if config is not None:
        import yaml

        path = tmp / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        argv += ["--config", str(path)]
    argv += ["doctor", "--simulate", "--report", str(report), "--button-timeout", "1.5", *extra]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIRCLEBOX_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc, json.loads(report.read_text()) if report.exists() else {}


def line(proc: subprocess.CompletedProcess, name: str) -> str:
    found = [ln for ln in proc.stdout.splitlines() if ln.startswith("[") and f"] {name}:" in ln]
    assert len(found) == 1, proc.stdout
    return found[0]


# -- the whole command -----------------------------------------------------------------------


def test_doctor_passes_in_simulation_and_writes_a_report(box_data, tmp_path, room_wav, clean_kernel_log):
    proc, report = doctor(box_data, tmp_path, "--mic", str(room_wav), "--kernel-log", str(clean_kernel_log))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("config", "voices", "circle", "system prompts", "disk", "sd card", "speaker", "microphone",
                 "lights", *(f"button {b}" for b in BUTTONS)):
        assert line(proc, name).startswith("[PASS]")
    assert "'Speaker works.' found sample for sample" in line(proc, "speaker")
    assert "speech detected" in line(proc, "microphone")
    assert proc.stdout.splitlines()[-2].startswith("PASS (")
    # the report: every check, the same verdicts
    assert report["result"] == "PASS" and report["simulate"] is True
    by_name = {c["name"]: c for c in report["checks"]}
    assert {f"button {b}" for b in BUTTONS} <= set(by_name)
    assert by_name["microphone"]["data"]["speech_detected"] is True
    assert by_name["speaker"]["status"] == PASS and by_name["speaker"]["data"]["samples_written"] > 0
    assert all(c["status"] in (PASS, WARN, SKIP) for c in report["checks"])
    # the "technician" was asked for every button, in the order of the button map
    assert proc.stdout.index("Press the next button.") < proc.stdout.index("Press the help button.")


def test_a_stuck_button_and_a_button_never_pressed_fail_by_name(box_data, tmp_path, clean_kernel_log):
    proc, report = doctor(box_data, tmp_path, "--kernel-log", str(clean_kernel_log),
                          "--simulate-stuck", "help", "--simulate-never", "repeat")
    assert proc.returncode == 1
    assert line(proc, "button help").startswith("[FAIL]") and "stuck" in line(proc, "button help")
    help_pin = ButtonMap(make_config(box_data).buttons.map).spec("help").pin
    assert f"GPIO {help_pin} held to ground" in line(proc, "button help")
    assert line(proc, "button repeat").startswith("[FAIL]")
    assert "not pressed within 1.5 s (GPIO 6)" in line(proc, "button repeat")
    assert line(proc, "button next").startswith("[PASS]") and line(proc, "button pause").startswith("[PASS]")
    assert "failed button repeat, button help" in proc.stdout
    assert report["result"] == FAIL
    assert {c["name"] for c in report["checks"] if c["status"] == FAIL} == {"button repeat", "button help"}


def test_a_missing_voice_fails_naming_the_voice(box_data, tmp_path, clean_kernel_log):
    proc, report = doctor(box_data, tmp_path, "--kernel-log", str(clean_kernel_log),
                          config={"audio": {"system_voice": "en_US-nobody-low"}})
    assert proc.returncode == 1
    voices = line(proc, "voices")
    assert voices.startswith("[FAIL]") and "'en_US-nobody-low' (audio.system_voice) not installed" in voices
    assert "installed: en_US-joe-medium" in voices
    # the system prompts were rendered with another voice: stale, and said so
    assert line(proc, "system prompts").startswith("[FAIL]")
    assert report["result"] == FAIL


def test_a_missing_microphone_fails_naming_it(box_data, tmp_path, clean_kernel_log):
    proc, report = doctor(box_data, tmp_path, "--kernel-log", str(clean_kernel_log),
                          "--mic", str(tmp_path / "no-such-room.wav"))
    assert proc.returncode == 1
    mic = line(proc, "microphone")
    assert mic.startswith("[FAIL]") and "cannot open the microphone" in mic and "no-such-room.wav" in mic
    assert [c["name"] for c in report["checks"] if c["status"] == FAIL] == ["microphone"]


# -- single checks, in-process ---------------------------------------------------------------------


def seams(**kw) -> DoctorSeams:
    from gpiozero.pins.mock import MockFactory

    def no_speaker(rate):
        raise RuntimeError("no speaker in this test")

    base = {"simulate": True, "open_speaker": no_speaker, "pin_factory": MockFactory(),
            "technician": ScriptedTechnician(), "open_mic": None, "out": lambda text: None}
    return DoctorSeams(**{**base, **kw})


def only(doc: Doctor, name: str):
    found = [c for c in doc.checks if c.name == name]
    assert len(found) == 1, doc.checks
    return found[0]


def test_microphone_that_hears_only_a_quiet_room_fails(box_data, tmp_path):
    from device.listening import open_wav_mic

    _, rate = prompt_samples(box_data, "step:welcome")
    quiet = write_wav(tmp_path / "quiet.wav", room_noise(rate, 4.0), rate)
    doc = Doctor(make_config(box_data), seams(open_mic=lambda: open_wav_mic(quiet)))
    doc.check_mic()
    result = only(doc, "microphone")
    assert result.status == FAIL and "no speech detected in 4.0 s" in result.detail
    assert result.data["speech_detected"] is False


def test_microphone_without_arecord_fails_with_the_reason(box_data):
    from device.listening import open_arecord_mic

    doc = Doctor(make_config(box_data), seams(simulate=False,
                                              open_mic=lambda: open_arecord_mic(None, command="arecord-missing")))
    doc.check_mic()
    result = only(doc, "microphone")
    assert result.status == FAIL and "'arecord-missing' is not installed" in result.detail


Usage = namedtuple("Usage", "total used free")
MB = 1024 * 1024


@pytest.mark.parametrize(("free_mb", "status"), [(2000, PASS), (499, WARN), (99, FAIL)])
def test_disk_space_thresholds(box_data, free_mb, status):
    doc = Doctor(make_config(box_data), seams(disk_usage=lambda p: Usage(8000 * MB, 0, free_mb * MB)))
    doc.check_disk()
    result = only(doc, "disk")
    assert result.status == status and f"{free_mb} MB free" in result.detail


def test_sd_card_errors_in_the_kernel_log_fail_and_an_unreadable_log_is_skipped(box_data):
    log = ("[   2.0] mmc0: new high speed SDHC card\n"
           "[ 812.3] mmc0: Timeout waiting for hardware interrupt.\n"
           "[ 812.4] blk_update_request: I/O error, dev mmcblk0, sector 123456\n")
    doc = Doctor(make_config(box_data), seams(kernel_log=lambda: log))
    doc.check_sd_card()
    result = only(doc, "sd card")
    assert result.status == FAIL and "2 SD card error(s)" in result.detail and len(result.data["errors"]) == 2
    doc = Doctor(make_config(box_data), seams(kernel_log=lambda: None))
    doc.check_sd_card()
    assert only(doc, "sd card").status == SKIP


def test_clock_is_a_warning_when_not_trusted_and_a_pass_when_synchronised(box_data):
    from device.wallclock import BUILD_EPOCH, WallClock

    def clock(system: float, synced: bool):
        return lambda d: WallClock(d / "state" / "clock.json", system_time=lambda: system, synced=lambda: synced,
                                   build_epoch=BUILD_EPOCH)

    doc = Doctor(make_config(box_data), seams(wall_clock=clock(BUILD_EPOCH - 86400 * 300, False)))
    doc.check_clock()
    result = only(doc, "clock")
    assert result.status == WARN and "before the software build date" in result.detail
    doc = Doctor(make_config(box_data), seams(wall_clock=clock(BUILD_EPOCH + 3600, True)))
    doc.check_clock()
    assert only(doc, "clock").status == PASS


def test_unrendered_circle_and_system_set_fail_with_the_command_to_fix_them(box_data):
    (box_data / "cache" / "sets" / "three-step-circle.json").unlink()
    (box_data / "cache" / "sets" / "system.json").unlink()
    doc = Doctor(make_config(box_data), seams())
    doc.check_content()
    assert only(doc, "circle").status == FAIL and "circlebox render" in only(doc, "circle").detail
    assert only(doc, "system prompts").detail == "not rendered: run `circlebox render`"


def test_an_invalid_config_is_a_failed_check_and_the_rest_still_runs(box_data, tmp_path):
    from device.commands.doctor import _config

    bad = tmp_path / "bad.yaml"
    bad.write_text("audio:\n  volum: 0.5\n")
    args = argparse.Namespace(config=str(bad), data=str(box_data), simulate=True)
    config, error = _config(args)
    assert "unknown key 'volum'" in error and config.data_dir == box_data.resolve()
    doc = Doctor(config, seams(), config_error=error)
    doc.check_config()
    assert only(doc, "config").status == FAIL and "volum" in only(doc, "config").detail


def test_speaker_check_finds_the_tone_and_prompt_sample_for_sample_or_fails(box_data):
    doc = Doctor(make_config(box_data), seams(open_speaker=lambda rate: InstantSpeaker()))
    doc.check_content()
    doc.open_outputs()
    tone = np.frombuffer(doc.bank.pcm(TONE_ID), "<i2")
    words = np.frombuffer(doc.bank.pcm("sys:doctor_speaker_works"), "<i2")
    gap = np.zeros(300, "<i2")
    assert find_in_played(np.concatenate([gap, tone, gap, words, gap]), [tone, words]) == []
    damaged = np.concatenate([gap, tone, gap, words, gap])
    damaged[300 + tone.size + 300 + words.size // 2] += 500
    assert find_in_played(damaged, [tone, words]) == ["the spoken prompt was not played intact"]
    assert find_in_played(np.zeros(5000, "<i2"), [tone, words]) == ["the tone is missing from the output (silence)"]
    # through the check itself: only the tone came out
    doc.seams.played_pcm = lambda: np.concatenate([gap, tone, gap])
    doc.check_speaker()
    doc._finish_speaker()
    result = only(doc, "speaker")
    assert result.status == FAIL and "spoken prompt is missing" in result.detail


class InstantSpeaker:
    """Plays nothing; every sound 'finishes' at once."""

    def load(self, bank): self.bank = bank
    def set_volume(self, level): ...
    def play(self, sound_id): self.last = sound_id
    def poll(self, now): return self.last
    def close(self): ...


@pytest.mark.parametrize("pressed", [True, False])
def test_on_the_box_the_speaker_passes_only_if_the_technician_presses_next(box_data, pressed):
    import threading

    doc = Doctor(make_config(box_data), seams(simulate=False, open_speaker=lambda rate: InstantSpeaker(),
                                              confirm_timeout_s=1.0))
    doc.check_content()
    doc.open_outputs()
    doc.open_gpio()
    try:
        pin = doc.buttons["next"].pin
        if pressed:
            threading.Timer(0.2, pin.drive_low).start()
        doc.check_speaker()
        pin.drive_high()
    finally:
        doc.close()
    result = only(doc, "speaker")
    if pressed:
        assert result.status == PASS and result.detail == "tone and voice heard"
    else:
        assert result.status == FAIL and "not confirmed within 1 s" in result.detail


# -- what the runtime would play: the same resolver (issue 11) ----------------------------------------


def cli(*argv: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIRCLEBOX_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run([sys.executable, "-m", "device.cli", *argv], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_after_a_content_bundle_installs_a_circle_the_doctor_checks_that_circle_and_passes(
        box_data, tmp_path, clean_kernel_log):
    """The technician's journey: render a new circle on a laptop, build a content bundle from what
    render made, install it on a box that has no cache of its own; the doctor checks the circle
    the runtime would play (current/content), and its sounds, and passes."""
    laptop = box_data  # a laptop's data folder, with the default circle and the box's prompts rendered
    text = (laptop / "scripts" / "three-step-circle.yaml").read_text()
    (laptop / "scripts" / "friday-circle.yaml").write_text(text.replace("script: three-step-circle",
                                                                          "script: friday-circle", 1))
    rendered = cli("--data", str(laptop), "render", "friday-circle")
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    keys = tmp_path / "keys"
    assert cli("bundle", "keygen", "--out", str(keys)).returncode == 0
    bundle = tmp_path / "content-3.cbx"
    built = cli("--data", str(laptop), "bundle", "build", "--script", "friday-circle", "--kind", "content",
                "--version", "3", "--key", str(keys / "circlebox-signing.key"), "--out", str(bundle))
    assert built.returncode == 0, built.stdout + built.stderr
    box = tmp_path / "box"
    applied = cli("bundle", "apply", str(bundle), "--root", str(box), "--pubkey", str(keys / "circlebox-signing.pub"),
                  "--stay-up", "0")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert not (box / "cache").exists() and not (box / "scripts").exists()

    proc, report = doctor(box, tmp_path, "--kernel-log", str(clean_kernel_log),
                          config={"session": {"script": "friday-circle"}})
    assert line(proc, "circle").startswith("[PASS]"), proc.stdout
    assert "installed by a content bundle (version 3)" in line(proc, "circle")
    assert line(proc, "system prompts").startswith("[PASS]"), proc.stdout
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["circle"]["data"]["cache"] == str(box / "current" / "content" / "cache")


def test_a_fresh_data_folder_is_named_plainly_and_not_created(tmp_path, clean_kernel_log):
    fresh = tmp_path / "never-run"
    proc = cli("--data", str(fresh), "doctor", "--simulate", "--button-timeout", "0.5",
               "--kernel-log", str(clean_kernel_log))
    assert proc.returncode == 1
    assert line(proc, "data folder").startswith("[FAIL]")
    assert "has not been set up or run yet" in line(proc, "data folder")
    assert "report: not written" in proc.stdout and "has not been set up or run yet" in proc.stdout.splitlines()[-1]
    assert not fresh.exists()  # neither the clock reading nor the report made it


def test_without_gpio_the_buttons_and_lights_fail_and_the_rest_is_still_checked(tmp_path):
    """A broken GPIO chip (or the QEMU image) is two lines of the report, not a doctor that
    refuses to run: the technician still learns about the speaker, the clock and the disk."""
    from device.doctor import FAIL, Doctor, DoctorSeams, ScriptedTechnician

    config = make_config(tmp_path / "data", leds={"status": 17})
    seams = DoctorSeams(simulate=False, open_speaker=None, pin_factory=None, technician=ScriptedTechnician(),
                        open_mic=None, out=lambda text: None, gpio_error="no GPIO chip found")
    doctor = Doctor(config, seams)
    doctor.open_gpio()
    doctor.check_buttons()
    doctor.check_leds()
    doctor.check_disk()
    by_name = {c.name: c for c in doctor.checks}
    for spec in config.buttons.map:
        assert by_name[f"button {spec.name}"].status == FAIL
        assert by_name[f"button {spec.name}"].detail == "no GPIO on this machine: no GPIO chip found"
    assert by_name["lights"].status == FAIL and "no GPIO chip found" in by_name["lights"].detail
    assert "disk" in by_name  # the doctor went on past the GPIO
