"""The whole box, for real: MockFactory pins, pygame on SDL's disk driver, the real Piper voice.

Pressing NEXT (a pin driven low) must make the next rendered prompt come out of the audio
device: we find its exact samples in what SDL wrote, after the moment of the press.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from audio.bank import SoundBank
from device.content import manifest_path

DRIVER = textwrap.dedent(
    """
    import json, os, sys, threading, time
    from pathlib import Path
    from gpiozero.pins.mock import MockFactory
    sys.path.insert(0, {tests!r})
    from conftest import make_config
    from device.runtime import Runtime

    data, disk = Path(sys.argv[1]), Path(sys.argv[2])
    config = make_config(data, audio={{"volume": 1.0, "volume_cap": 1.0}})
    runtime = Runtime(config, pin_factory=MockFactory(), control=False, listening=False)
    runtime.start()
    loop = threading.Thread(target=runtime.run, daemon=True)
    loop.start()
    marks = {{}}

    def press(name, label):
        time.sleep(0.6)
        marks[label] = disk.stat().st_size   # bytes SDL had written before the press
        pin = runtime.buttons.pin(name)
        pin.drive_low(); time.sleep(0.05); pin.drive_high()

    press("next", "first_next")
    time.sleep(1.5)
    press("next", "second_next")
    time.sleep(1.5)
    marks["state"] = runtime.status()["state"]
    marks["step"] = runtime.status()["step"]
    marks["modules"] = sorted(m for m in sys.modules if m.split(".")[0] in ("piper", "onnxruntime"))
    runtime.stop(); loop.join(5); runtime.close()
    print(json.dumps(marks))
    """
)


def _run_driver(data: Path, disk: Path) -> dict:
    env = {**os.environ, "SDL_AUDIODRIVER": "disk", "SDL_DISKAUDIOFILE": str(disk)}
    code = DRIVER.format(tests=str(Path(__file__).parent))
    proc = subprocess.run([sys.executable, "-c", code, str(data), str(disk)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _find(haystack: bytes, pcm: bytes, start: int = 0) -> int:
    """Offset of a distinctive stretch of `pcm` (0.5 s to 0.7 s in, past any fade) in haystack."""
    needle = pcm[22050:30870]
    assert any(needle), "needle is silent"
    at = haystack.find(needle, start)
    return at if at < 0 else at - 22050


def test_pressing_next_plays_the_next_prompt_out_of_the_audio_device(box_data, tmp_path):
    disk = tmp_path / "speaker.raw"
    marks = _run_driver(box_data, disk)
    played = disk.read_bytes()
    bank = SoundBank.from_manifest(manifest_path(box_data / "cache", "three-step-circle"))

    welcome = _find(played, bank.pcm("step:welcome"))
    breathe = _find(played, bank.pcm("step:breathe"))
    assert welcome >= marks["first_next"], "welcome must start after the first press"
    assert breathe >= marks["second_next"] > welcome, "breathe must follow the second press"
    assert marks["step"] == "breathe" and marks["state"] == "speaking"
    # the ready chime played at start-up, before any press
    chime = bank.pcm("bell:chime")
    assert played.find(chime[4410:8820]) < marks["first_next"]


def test_the_runtime_never_imports_piper_or_onnxruntime(box_data, tmp_path):
    marks = _run_driver(box_data, tmp_path / "speaker.raw")
    assert marks["modules"] == []
