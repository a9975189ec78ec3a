"""PygameSpeaker through SDL's disk driver: what is played is exactly what lands in the file.

pygame's mixer is initialised once per process, so each scenario runs in its own subprocess
with SDL_AUDIODRIVER=disk and SDL_DISKAUDIOFILE pointing at a temp file (raw S16 mono frames,
written in real time, silence while nothing plays).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from audio.bank import SoundBank
from audio.render import render_prompt_set

REPO = Path(__file__).resolve().parents[1]
RATE = 22050
PROMPT = "step:hello"

DRIVER = r"""
import json, sys, time
from pathlib import Path
from audio.bank import SoundBank
from audio.speaker import NoAudioDevice, PygameSpeaker

manifest, scenario, sound = sys.argv[1:4]
events = []
try:
    speaker = PygameSpeaker(22050, 512, driver=sys.argv[4] if len(sys.argv) > 4 else None)
except NoAudioDevice as exc:
    print(json.dumps([["no_audio_device", str(exc)]]))
    sys.exit(0)
bank = SoundBank.from_manifest(Path(manifest))
speaker.load(bank)

def wait_finish():
    end = time.monotonic() + bank.duration_s(sound) + 3.0
    while time.monotonic() < end:
        got = speaker.poll(time.monotonic())
        if got:
            events.append(["finished", got])
            return
        time.sleep(0.005)
    events.append(["timeout"])

time.sleep(0.1)
if scenario == "play":
    speaker.play(sound)
    wait_finish()
elif scenario == "pause":
    speaker.play(sound)
    time.sleep(0.3)
    speaker.pause()
    time.sleep(0.6)
    events.append(["while_paused", speaker.poll(time.monotonic())])
    speaker.resume()
    wait_finish()
elif scenario == "volume":
    speaker.set_volume(0.5)
    speaker.play(sound)
    wait_finish()
elif scenario == "interrupt":
    speaker.play(sound)
    time.sleep(0.3)
    speaker.play("bell:tick")
    wait_finish()
elif scenario == "stop":
    speaker.play(sound)
    time.sleep(0.3)
    speaker.stop()
    time.sleep(0.3)
events.append(["after", speaker.poll(time.monotonic())])
time.sleep(0.15)  # let the disk driver write the last buffer
speaker.close()
print(json.dumps(events))
"""


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("speaker-cache")
    prompts = {PROMPT: ("Breathe in slowly.",)}
    return render_prompt_set("speaker", prompts, "en_US-joe-medium", cache).manifest_path


def run_speaker(
    manifest: Path, tmp_path: Path, scenario: str, sound: str = PROMPT, driver: str | None = None
) -> tuple[list, np.ndarray]:
    out = tmp_path / "played.raw"
    env = {
        **os.environ,
        "SDL_AUDIODRIVER": "disk",
        "SDL_DISKAUDIOFILE": str(out),
        "PYTHONPATH": str(REPO),
    }
    argv = [
        sys.executable,
        "-c",
        DRIVER,
        str(manifest),
        scenario,
        sound,
        *([driver] if driver else []),
    ]
    proc = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    events = json.loads(proc.stdout.strip().splitlines()[-1])
    played = np.fromfile(out, dtype="<i2") if out.exists() else np.zeros(0, dtype="<i2")
    return events, played


def sound_of(manifest: Path, sound_id: str = PROMPT) -> np.ndarray:
    return np.frombuffer(SoundBank.from_manifest(manifest).pcm(sound_id), dtype="<i2")


def locate(played: np.ndarray, sound: np.ndarray) -> int:
    """Where `sound` starts in `played`, from the first non-zero sample of each."""
    return int(np.flatnonzero(played)[0] - np.flatnonzero(sound)[0])


def test_playing_a_prompt_writes_exactly_its_samples(manifest: Path, tmp_path: Path) -> None:
    events, played = run_speaker(manifest, tmp_path, "play")
    assert events == [["finished", PROMPT], ["after", None]]
    sound = sound_of(manifest)
    start = locate(played, sound)
    assert np.array_equal(played[start : start + sound.size], sound)
    assert not played[:start].any() and not played[start + sound.size :].any()


def test_pause_keeps_the_position_and_resume_continues(manifest: Path, tmp_path: Path) -> None:
    events, played = run_speaker(manifest, tmp_path, "pause")
    assert events == [["while_paused", None], ["finished", PROMPT], ["after", None]]
    sound = sound_of(manifest)
    # Every sample once, in order, with a gap of silence inside: nothing lost or repeated.
    assert np.array_equal(played[played != 0], sound[sound != 0])
    nz = np.flatnonzero(played)
    inside = played[nz[0] : nz[-1]]
    gap = np.diff(np.flatnonzero(inside)).max()
    assert gap >= 0.4 * RATE  # paused for 0.6 s
    assert np.diff(np.flatnonzero(sound)).max() < 0.1 * RATE  # the prompt has no such gap


def test_set_volume_scales_what_is_played(manifest: Path, tmp_path: Path) -> None:
    events, played = run_speaker(manifest, tmp_path, "volume")
    assert events[0] == ["finished", PROMPT]
    sound = sound_of(manifest).astype(np.int32)
    expected = np.fix(sound * 64 / 128).astype(np.int32)  # SDL_mixer: volume 64 of 128
    start = locate(played, expected)
    got = played[start : start + sound.size].astype(np.int32)
    assert np.abs(got - expected).max() <= 1
    assert np.abs(got).max() < 0.6 * np.abs(sound).max()


def test_play_interrupts_and_only_real_finishes_are_reported(
    manifest: Path, tmp_path: Path
) -> None:
    events, played = run_speaker(manifest, tmp_path, "interrupt")
    assert events == [["finished", "bell:tick"], ["after", None]]
    sound = sound_of(manifest)
    start = locate(played, sound)
    heard = np.flatnonzero(
        played[start : start + sound.size] != sound[: min(sound.size, played.size - start)]
    )
    # The prompt was cut after about 0.3 s, well before its end.
    assert 0.1 * RATE < heard[0] < sound.size - 0.3 * RATE


def test_stop_silences_and_reports_no_finish(manifest: Path, tmp_path: Path) -> None:
    events, played = run_speaker(manifest, tmp_path, "stop")
    assert events == [["after", None]]
    sound = sound_of(manifest)
    start = locate(played, sound)
    assert 0 < np.count_nonzero(played) < np.count_nonzero(sound)
    assert np.array_equal(played[start : start + 1000], sound[:1000])


def test_no_audio_device_is_a_clear_error(manifest: Path, tmp_path: Path) -> None:
    events, _ = run_speaker(manifest, tmp_path, "play", driver="no-such-driver")
    assert events[0][0] == "no_audio_device" and "no-such-driver" in events[0][1]
