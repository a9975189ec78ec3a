"""`circlebox simulate`: the real engine, the real rendered audio, virtual time."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from audio.bank import SoundBank
from device.content import manifest_path

EVENTS = [
    {"t": 0.5, "button": "next"},
    {"t": 45, "button": "next"},
    {"t": 60, "button": "pause"},
    {"t": 70, "button": "pause"},
    {"t": 130, "button": "next"},
    {"t": 160, "button": "next"},
    {"t": 200, "button": "next", "hold": True},
    {"t": 215, "button": "help"},
    {"t": 225, "button": "pause"},
    {"t": 240, "button": "next"},
    {"t": 250, "button": "next", "hold": True},
    {"t": 300, "button": "next"},
]


def simulate(data: Path, tmp: Path, events: list[dict], *extra: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    ev = tmp / "events.jsonl"
    ev.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    log = tmp / "log.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "device.cli", "--data", str(data), "simulate", "--script", "three-step-circle",
         "--events", str(ev), "--log", str(log), *extra],
        capture_output=True, text=True, timeout=300,
    )
    lines = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return proc, lines


@pytest.fixture(scope="module")
def sim_run(rendered_default, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sim")
    proc, log = simulate(rendered_default, tmp, EVENTS, "--audio-out", str(tmp / "out.wav"),
                         "--usage", str(tmp / "usage.db"))
    assert proc.returncode == 0, proc.stderr
    return tmp, log, rendered_default


def test_log_has_every_event_kind_with_times(sim_run):
    _, log, _ = sim_run
    kinds = {e["event"] for e in log}
    for needed in ("session_started", "step_started", "prompt_started", "prompt_finished", "turn_started",
                   "turn_ended", "paused", "resumed", "help", "step_finished", "session_finished"):
        assert needed in kinds, needed
    times = [e["t"] for e in log]
    assert times == sorted(times)
    finished = [e for e in log if e["event"] == "session_finished"]
    assert len(finished) == 1 and finished[0]["completed"] is True
    # NEXT after the end: the box says the circle has ended instead of starting again
    assert log[-2]["event"] == "prompt_started" and log[-2]["prompt"] == "msg:finished"
    turns = [e for e in log if e["event"] == "turn_ended"]
    assert [t["reason"] for t in turns][:2] == ["button", "skip"]


def test_audio_out_has_each_prompt_where_the_log_says_it_started(sim_run):
    tmp, log, data = sim_run
    bank = SoundBank.from_manifest(manifest_path(data / "cache", "three-step-circle"))
    with wave.open(str(tmp / "out.wav")) as w:
        rate = w.getframerate()
        out = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float64)
    volume = 0.7  # the default config volume
    for entry in log:
        if entry["event"] != "prompt_started" or entry["prompt"] == "msg:help":
            continue
        start = round(entry["t"] * rate)
        expect = np.frombuffer(bank.pcm(entry["prompt"]), dtype=np.int16)[: rate].astype(np.float64) * volume
        got = out[start : start + expect.size]
        assert np.max(np.abs(got - expect)) <= 1.0, entry["prompt"]
    # while paused (60 s to 70 s) the speaker was silent
    assert not np.any(out[round(60.05 * rate) : round(69.95 * rate)])


def test_usage_record_written_by_the_simulation(sim_run):
    from device.usage import UsageStore

    tmp, _, _ = sim_run
    rows = UsageStore(tmp / "usage.db").sessions()
    assert len(rows) == 1
    row = rows[0]
    assert row["completed"] and row["steps_planned"] == 6 and row["help_count"] == 1
    assert row["pauses"] == 1
    assert {r["step"]: r["turns"] for r in row["rounds"]} == {"share": 2, "close-round": 2}


def test_bad_events_file_names_the_line_and_field(rendered_default, tmp_path):
    proc, _ = simulate(rendered_default, tmp_path, [{"t": 1, "button": "next"}, {"t": -2, "button": "next"}])
    assert proc.returncode == 2
    assert "events.jsonl:2: field t" in proc.stderr
    proc, _ = simulate(rendered_default, tmp_path, [{"t": 1, "button": "nxet"}])
    assert "events.jsonl:1: field button: no button named 'nxet'" in proc.stderr


def test_same_events_give_the_same_log(rendered_default, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, log_a = simulate(rendered_default, tmp_path / "a", EVENTS[:6])
    b, log_b = simulate(rendered_default, tmp_path / "b", EVENTS[:6])
    assert a.returncode == b.returncode == 0
    assert log_a == log_b and len(log_a) > 10
