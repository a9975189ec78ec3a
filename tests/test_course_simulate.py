"""`circlebox simulate --course`: a whole course across sessions and a bus stop from one events file.

The next meeting is chosen as the box chooses it (device.course_position's rule, device.course_play's
loader), the events go on across meetings (absolute times), and each meeting says its announcement
before its first step.
"""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from course_fixtures import COURSE_ID, copy_course_data

# Session 1 completed; session 2 started and stopped at once (a test run: not held); NEXT after
# a stop says "finished"; session 2 again, completed; the bus stop; session 3; then the course is
# finished and the box plays its last circle again, as a plain circle.
EVENTS = [
    {"t": 1, "button": "next"}, {"t": 15, "button": "next"},             # session 1
    {"t": 30, "button": "next"}, {"t": 45, "action": "stop"},            # session 2: a Start/Stop
    {"t": 50, "button": "next"},                                         # "the circle has ended"
    {"t": 60, "button": "next"}, {"t": 75, "button": "next"},            # session 2, held
    {"t": 90, "button": "next"}, {"t": 110, "button": "next"},           # the bus stop
    {"t": 130, "button": "next"}, {"t": 145, "button": "next"},          # session 3
    {"t": 160, "button": "next"}, {"t": 175, "button": "next"},          # after the course
]


def simulate_course(data: Path, tmp: Path, events: list[dict], *extra: str) -> tuple[subprocess.CompletedProcess, list]:
    ev = tmp / "events.jsonl"
    ev.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    log = tmp / "log.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "device.cli", "--data", str(data), "simulate", "--course", COURSE_ID,
         "--events", str(ev), "--log", str(log), *extra],
        capture_output=True, text=True, timeout=300,
    )
    lines = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return proc, lines


@pytest.fixture(scope="module")
def course_run(rendered_course, tmp_path_factory):
    """One simulation of the whole course, read by the tests below."""
    tmp = tmp_path_factory.mktemp("course-sim")
    data = copy_course_data(rendered_course, tmp / "data")
    proc, log = simulate_course(data, tmp, EVENTS, "--audio-out", str(tmp / "out.wav"))
    assert proc.returncode == 0, proc.stderr
    return proc, log, data, tmp


def sessions(log: list[dict]) -> list[dict]:
    """Each session: its session_started fields, the prompts and steps in it, how it ended."""
    out: list[dict] = []
    for entry in log:
        if entry["event"] == "session_started":
            out.append({"start": entry, "prompts": [], "steps": [], "end": None})
        elif out and out[-1]["end"] is None:
            if entry["event"] == "prompt_started":
                out[-1]["prompts"].append(entry["prompt"])
            elif entry["event"] == "step_started":
                out[-1]["steps"].append(entry["step"])
            elif entry["event"] == "session_finished":
                out[-1]["end"] = entry
    return out


def test_a_whole_course_runs_from_one_events_file(course_run):
    proc, log, _, _ = course_run
    loaded = [e["meeting"] for e in log if e["event"] == "circle_loaded"]
    # one line per meeting loaded; the Start/Stop of session 2 did not move the course
    assert loaded == ["Session 1 of 3", "Session 2 of 3", "Bus stop after session 2", "Session 3 of 3", "finished"]
    held = sessions(log)
    assert [s["start"].get("course_position") for s in held] == [0, 1, 1, 2, 3, None]
    assert [s["start"].get("session") for s in held] == [1, 2, 2, None, 3, None]
    assert [s["end"]["completed"] for s in held] == [True, False, True, True, True, True]
    assert "now at: finished" in proc.stderr and "4 held" in proc.stderr


def test_each_meeting_says_its_announcement_before_its_first_step(course_run):
    _, log, _, _ = course_run
    held = sessions(log)
    firsts = [s["prompts"][0] for s in held]
    assert firsts == ["course:session"] * 3 + ["course:bus_stop", "course:session", "step:hello"]
    bus_stop = held[3]
    assert bus_stop["start"]["script"] == "tiny-stop" and bus_stop["start"]["bus_stop"] is True
    assert bus_stop["steps"] == ["farewell", "welcome"]  # the bus-stop circle's own steps
    assert {s["start"]["script"] for i, s in enumerate(held) if i != 3} == {"tiny-circle"}


def test_the_audio_has_each_meetings_own_announcement(course_run):
    """What the speaker played at each announcement is that meeting's rendered words."""
    from audio.cache import read_wav_pcm
    from device.course_play import announcement_prompt, announcement_set

    _, log, data, tmp = course_run
    manifest = json.loads((data / "cache" / "sets" / f"{announcement_set(COURSE_ID)}.json").read_text())
    with wave.open(str(tmp / "out.wav")) as w:
        rate = w.getframerate()
        out = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float64)
    checked = []
    for session in sessions(log):
        index = session["start"].get("course_position")
        if index is None:
            continue
        started = next(e for e in log if e["event"] == "prompt_started" and e["t"] >= session["start"]["t"])
        pcm = read_wav_pcm(data / "cache" / manifest["prompts"][announcement_prompt(index)]["file"], rate)
        expect = np.frombuffer(pcm, dtype=np.int16).astype(np.float64) * 0.7  # the default volume
        start = round(started["t"] * rate)
        got = out[start:start + expect.size]
        assert np.max(np.abs(got - expect)) <= 1.0, index
        checked.append(index)
    assert checked == [0, 1, 1, 2, 3]


def test_a_course_that_names_a_missing_circle_is_refused_in_plain_words(course_data, tmp_path):
    course = course_data / "courses" / f"{COURSE_ID}.yaml"
    course.write_text(course.read_text().replace("  - circle: tiny-circle\n    repeat: 2",
                                                 "  - circle: no-such-circle\n    repeat: 2"))
    proc, _ = simulate_course(course_data, tmp_path, EVENTS[:2])
    assert proc.returncode == 2
    assert "Sessions 1 to 2 use the circle 'no-such-circle', which this box does not have" in proc.stderr
