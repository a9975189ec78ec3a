"""Technician: a signing key, an image tree that trusts it, a content bundle with a new circle,
installed on a running box: the doctor passes on it, the admin page lists it, the box plays it.

As in docs/updates.md and docs/setup-a-box.md: `circlebox bundle keygen`, `image_build.sh
--tree-only --pubkey`, `circlebox render` and `circlebox bundle build` on the technician's laptop
(its own data folder), `circlebox bundle apply` into the box's data folder with the keys the image
carries, `circlebox doctor --simulate` on the box's data folder.
"""

from __future__ import annotations

import shutil
import subprocess
import wave

import numpy as np

from journeys.harness import ROOT, circlebox, plain_env
from journeys.pages import flash_text, log_in, press_on_panel, use_on_the_box
from journeys.sounds import DEFAULT_CIRCLE, Sounds

CIRCLE = "clinic-circle"
TITLE = "Clinic circle"
SCRIPT = f"""\
script: {CIRCLE}
title: {TITLE}
version: 1
language: en_US
voice: en_US-joe-medium
steps:
  - id: arrive
    core: true
    say: Hello and welcome to the clinic circle. Please find a seat and make yourself comfortable.
  - id: share
    kind: round
    prompt: One at a time, say how you are today.
  - id: close
    say: Thank you. The clinic circle is over for today.
    then: continue
"""


def ok(proc: subprocess.CompletedProcess, what: str) -> str:
    assert proc.returncode == 0, f"{what} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def room_wav(path, speech: np.ndarray, rate: int):
    """Someone talking in a quiet room, for the doctor's microphone check."""
    noise = np.random.default_rng(7).normal(0, 30, rate).astype(np.float64)
    samples = np.concatenate([noise, speech[: 4 * rate], noise]).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


def test_a_content_bundle_reaches_a_box_built_with_its_key(box, page, rendered_default, tmp_path):
    from device.datafolder import DataFolder

    # -- once per programme: the signing key, and an image that trusts it ---------------------
    keys = tmp_path / "keys"
    ok(circlebox("bundle", "keygen", "--out", str(keys)), "circlebox bundle keygen")
    pub, key = keys / "circlebox-signing.pub", keys / "circlebox-signing.key"
    tree = tmp_path / "image-tree"
    built = subprocess.run([str(ROOT / "image_build.sh"), "--tree-only", str(tree), "--pubkey", str(pub),
                            "--no-render"], cwd=ROOT, env=plain_env(), capture_output=True, text=True,
                           timeout=300)
    ok(built, "image_build.sh --tree-only --pubkey")
    trusted = tree / "etc" / "circlebox" / "keys"
    assert (trusted / pub.name).read_bytes() == pub.read_bytes(), sorted(p.name for p in trusted.glob("*"))

    # -- on the laptop: the circle, rendered, in a signed content bundle -----------------------
    laptop = tmp_path / "laptop"
    shutil.copytree(rendered_default / "cache", DataFolder(laptop).cache)  # earlier renders on this laptop
    script = DataFolder(laptop).script(CIRCLE)
    script.parent.mkdir(parents=True)
    script.write_text(SCRIPT, encoding="utf-8")
    ok(circlebox("render", CIRCLE, data=laptop), f"circlebox render {CIRCLE}")
    bundle = tmp_path / "content-1.cbx"
    ok(circlebox("bundle", "build", "--key", str(key), "--kind", "content", "--version", "1",
                 "--script", str(script), "--cache", str(DataFolder(laptop).cache), "--out", str(bundle),
                 data=laptop), "circlebox bundle build")

    # -- on the box: installed while the box runs ----------------------------------------------
    box.start_runtime()
    box.start_admin()
    ok(circlebox("bundle", "apply", str(bundle), "--keys-dir", str(trusted), data=box.data),
       "circlebox bundle apply")

    log_in(page, box)
    page.goto(box.admin_url + "/circles/")
    listed = page.locator("li.circle", has_text=TITLE)
    assert listed.count() == 1, (f"the circles page does not list the installed {CIRCLE}: "
                                  f"{page.inner_text('main')[:800]}")
    said = use_on_the_box(page, box, TITLE)
    assert CIRCLE in said, f"'Use on the box' answered: {said!r}"

    sounds = Sounds(box.data / "cache", DEFAULT_CIRCLE)
    installed_cache = DataFolder(box.data).installed_cache
    assert (installed_cache / "sets" / f"{CIRCLE}.json").exists(), f"the bundle did not install {CIRCLE}'s sounds"
    sounds.add(installed_cache, CIRCLE)
    first = sounds.all[f"{CIRCLE} step:arrive"]

    doctor = circlebox("doctor", "--simulate", "--mic", str(room_wav(tmp_path / "room.wav", first, 22050)),
                       "--kernel-log", str(clean_kernel_log(tmp_path)), "--button-timeout", "1.5",
                       "--report", str(tmp_path / "doctor.json"), data=box.data, timeout=180)
    circle_line = [ln for ln in doctor.stdout.splitlines() if "] circle:" in ln]
    assert doctor.returncode == 0, f"doctor did not PASS:\n{doctor.stdout}\n{doctor.stderr}"
    assert circle_line and circle_line[0].startswith("[PASS]") and CIRCLE in circle_line[0], doctor.stdout

    page.goto(box.admin_url + "/panel/")
    since = box.audio.mark()
    press_on_panel(page, box, "start")
    heard = box.audio.wait_for_start(f"{CIRCLE} step:arrive", first, since)
    assert heard is not None, (f"Start on the panel: the box did not play the installed {CIRCLE}: "
                               f"{box.audio.describe(since, sounds.all)}. Panel: {flash_text(page)!r}")


def clean_kernel_log(tmp_path):
    """A kernel log with no SD card errors (this laptop's dmesg is not the box's)."""
    path = tmp_path / "kernel.log"
    path.write_text("[    1.0] mmc0: new high speed SDHC card at address aaaa\n")
    return path
