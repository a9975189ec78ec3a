"""Therapist on a phone: a Swahili circle, every prompt recorded through the page's file input
(the phone's recorder), checked, listened to, saved, used on the box and played. The box has
only an English voice, so nothing it says may be synthesized: what comes out of its speaker is
the therapist's recordings, the box's own messages (explain mode, carry on, help) included.

The "recordings" are espeak-ng speech in Swahili: a sound no Piper voice makes, recognised in
the box's output by cross-correlation (journeys.heard).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from device.script import DEFAULT_MESSAGES
from journeys.heard import read_wav
from journeys.pages import flash_text, log_in, press_on_panel, use_on_the_box

CIRCLE = "mduara-wa-jioni"
TITLE = "Mduara wa jioni"
ESPEAK = Path("/usr/bin/espeak-ng")


def spoken(text: str, path: Path) -> Path:
    """A recording of `text` as a phone would hand it over: espeak-ng's Swahili, as WAV."""
    subprocess.run([str(ESPEAK), "-v", "sw", "-s", "150", "-w", str(path), text], check=True, timeout=60)
    return path


def write_the_circle(phone, box) -> None:
    phone.goto(box.admin_url + "/circles/new")
    phone.fill("#script", CIRCLE)
    phone.fill("#title", TITLE)
    phone.fill("#language", "sw")
    phone.select_option("#voice", "")  # no voice speaks Swahili on this box: recordings only
    phone.fill("#s0_id", "karibu")
    phone.fill("#s0_text", "Karibu kwenye mduara wetu wa jioni.")
    phone.select_option("#new_kind", "round")
    phone.click("button[value=add]")
    phone.fill("#s1_id", "zamu")
    phone.fill("#s1_text", "Kila mtu aseme jambo moja kutoka leo.")


def as_m4a(wav: Path) -> Path:
    """The recording as an iPhone's Voice Memos saves it: AAC in M4A (PyAV's encoder)."""
    import soundfile
    from phone_audio import encode

    x, rate = soundfile.read(str(wav), dtype="float32")
    m4a = wav.with_suffix(".m4a")
    m4a.write_bytes(encode(x if x.ndim == 1 else x.mean(axis=1), "ipod", "aac", rate))
    return m4a


def record_every_prompt(phone, box, work: Path) -> dict[str, str]:
    """In the studio, each prompt recorded through its file input and sent; prompt -> words.
    The first take comes as M4A (a phone's own recorder), the others as WAV."""
    said: dict[str, str] = {}
    prompts = phone.locator("li.prompt")
    count = prompts.count()
    for i in range(count):
        item = phone.locator("li.prompt").nth(i)
        pid = item.get_attribute("data-prompt")
        words = item.locator("textarea[name=words]").input_value().strip() or f"Ujumbe wa sanduku namba {i + 1}."
        item.locator("textarea[name=words]").fill(words)
        take = spoken(words, work / f"take-{i}.wav")
        item.locator("input[data-take]").set_input_files(str(as_m4a(take) if i == 0 else take))
        item.get_by_role("button", name="Send this recording").click()
        phone.wait_for_load_state()
        assert "recorded" in flash_text(phone), f"{pid}: the studio answered {flash_text(phone)!r}"
        said[pid] = words
    return said


@pytest.mark.skipif(not ESPEAK.exists(), reason="needs espeak-ng for the test recordings")
def test_a_swahili_circle_recorded_on_a_phone_plays_only_the_recordings(box, phone, tmp_path):
    from playwright.sync_api import expect

    box.start_runtime()
    box.start_admin()
    log_in(phone, box)

    write_the_circle(phone, box)
    phone.locator("button[value=check]").first.click()  # checked: each prompt without a recording is named
    problems = phone.locator(".problems").inner_text()
    assert "Step 1" in problems and "The box is ready" in problems and "no recording" in problems, problems
    phone.click("#open-studio")
    phone.wait_for_url(f"**/circles/{CIRCLE}/studio/")
    assert phone.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") == 0
    said = record_every_prompt(phone, box, tmp_path)
    assert len(said) == 2 + len(DEFAULT_MESSAGES), sorted(said)  # two steps and every one of the box's messages
    expect(phone.locator("#missing-count")).to_have_text("every prompt is ready")
    if os.environ.get("CIRCLEBOX_SCREENSHOTS"):  # docs/screenshots/studio-phone.png
        phone.evaluate("window.scrollTo(0, 0)")
        phone.screenshot(path=str(Path(os.environ["CIRCLEBOX_SCREENSHOTS"]) / "studio-phone.png"))

    for src in phone.locator("audio.take").evaluate_all("els => els.map(e => e.getAttribute('src'))"):
        answer = phone.context.request.get(box.admin_url + src)  # Listen: each take, as the page plays it
        assert answer.ok and answer.headers["content-type"].startswith("audio/wav"), (src, answer.status)

    phone.click("#studio-save")
    expect(phone.locator("#job-percent")).to_have_text("100%", timeout=180_000)
    expect(phone.locator("#job-message")).to_contain_text("is ready")
    answer = use_on_the_box(phone, box, TITLE)
    assert CIRCLE in answer, answer

    cache = box.data / "cache"
    rendered = json.loads((cache / "sets" / f"{CIRCLE}.json").read_text(encoding="utf-8"))
    assert rendered["voice"] is None  # rendered without any voice: Piper never ran for it
    sounds = {f"{CIRCLE} {pid}": read_wav(cache / e["file"])[0] for pid, e in rendered["prompts"].items()}
    live = yaml.safe_load((box.data / "scripts" / f"{CIRCLE}.yaml").read_text(encoding="utf-8"))
    assert "voice" not in live

    since = box.audio.mark()
    phone.goto(box.admin_url + "/panel/")
    press_on_panel(phone, box, "start")
    welcome = box.audio.wait_for_start(f"{CIRCLE} step:karibu", sounds[f"{CIRCLE} step:karibu"], since, timeout=30)
    assert welcome is not None, f"Start: {box.audio.describe(since, sounds)}"
    assert box.audio.wait_until(welcome.at + int(1.5 * box.audio.rate))  # heard long enough to be told apart
    for action, expected in (("explain", "msg:explain"), ("next", "msg:action_next"),
                             ("explain", "msg:resumed"), ("help", "msg:help")):
        at = box.audio.mark()
        box.press(action)
        heard = box.audio.wait_for_start(f"{CIRCLE} {expected}", sounds[f"{CIRCLE} {expected}"], at, timeout=30)
        assert heard is not None, f"{action}: {expected} not heard; {box.audio.describe(at, sounds)}"
        assert box.audio.wait_until(heard.at + int(1.5 * box.audio.rate))
    end = box.audio.mark()

    played = box.audio.timeline(since, sounds, until=end)
    names = {h.name.split(" ", 1)[1] for h in played}
    assert {"step:karibu", "msg:explain", "msg:action_next", "msg:resumed", "msg:help"} <= names, played
    out = box.audio.samples(since)[: end - since]
    covered = np.zeros(out.size, dtype=bool)
    for h in played:
        covered[h.at - since: h.end - since] = True
    loud = np.abs(out) > 200
    stray = int(np.count_nonzero(loud & ~covered))
    # every audible sample is one of the recordings (the mixer's start and a cut-in edge aside)
    assert stray < 0.02 * max(1, int(np.count_nonzero(loud))), (
        f"{stray} loud samples are none of the recordings: {box.audio.describe(since, sounds)}")
