"""Privacy, enforced: a whole listening session (WAV mic -> Listener with vosk -> events) runs
in a subprocess under an audit hook that fails on any file opened for writing, any file moved
or deleted, any socket and any subprocess. Room audio stays in memory, frame by frame."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from audio_fixtures import (
    KO_VOICES,
    SR,
    Scene,
    at_level,
    build_circle,
    convolve,
    maker_for,
    room_ir,
)


@pytest.fixture(scope="session")
def speech_maker(request):
    return maker_for(request.config)


REPO = Path(__file__).resolve().parents[1]

# The hook is installed before anything else is imported. Paths listed in ALLOWED may be
# opened for writing (the lead adds the usage database and the log when simulate is wired).
HARNESS = textwrap.dedent("""
    import json, os, sys
    ALLOWED = set(json.loads(os.environ["PRIVACY_ALLOWED"]))
    violations = []
    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    def hook(event, args):
        bad = None
        if event == "open":
            path, mode, flags = (list(args) + [None, None, None])[:3]
            writing = (mode is not None and any(c in str(mode) for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & WRITE_FLAGS)
            if writing and str(path) not in ALLOWED:
                bad = f"open for writing: {path} ({mode or flags})"
        elif event in ("socket.__new__", "socket.bind", "socket.connect", "socket.getaddrinfo"):
            bad = f"{event}"
        elif event in ("os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.truncate",
                       "shutil.copyfile", "shutil.move", "subprocess.Popen", "os.system",
                       "os.posix_spawn", "os.exec", "os.fork"):
            bad = f"{event}: {args[0] if args else ''}"
        if bad and bad not in violations:
            violations.append(bad)
            raise PermissionError("privacy: " + bad)
    sys.addaudithook(hook)
    try:
        exec(compile(os.environ["PRIVACY_BODY"], "<session>", "exec"))
    finally:
        print("PRIVACY-REPORT " + json.dumps(violations), flush=True)
""")

SESSION = textwrap.dedent("""
    import json
    from pathlib import Path
    from device.listening import (CommandHeard, SpeechEnded, SpeechStarted, build_listener,
                                  listening_settings, open_wav_mic)
    settings = listening_settings({"commands": {"language": "ko"}})
    listener, reason = build_listener(settings, mem_mb=4096)
    assert reason is None, reason
    mic = open_wav_mic(Path(os.environ["ROOM_WAV"]))
    counts = {"started": 0, "ended": 0, "commands": []}
    while (frame := mic.read_frame()) is not None:
        for e in listener.process(frame, box_playing=False):
            if isinstance(e, SpeechStarted): counts["started"] += 1
            elif isinstance(e, SpeechEnded): counts["ended"] += 1
            elif isinstance(e, CommandHeard): counts["commands"].append(e.action)
        del frame
    mic.close()
    counts["decoded"] = listener.commands.decoded
    print("EVENTS " + json.dumps(counts), flush=True)
""")


def run_guarded(body: str, allowed: tuple[str, ...] = (), env_extra: dict | None = None):
    env = dict(
        os.environ,
        PRIVACY_BODY=body,
        PRIVACY_ALLOWED=json.dumps(list(allowed)),
        PYTHONDONTWRITEBYTECODE="1",
        **(env_extra or {}),
    )
    proc = subprocess.run(
        [sys.executable, "-B", "-c", HARNESS],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = None
    events = None
    for line in proc.stdout.splitlines():
        if line.startswith("PRIVACY-REPORT "):
            report = json.loads(line.split(" ", 1)[1])
        elif line.startswith("EVENTS "):
            events = json.loads(line.split(" ", 1)[1])
    assert report is not None, proc.stderr[-3000:]
    return proc, report, events


@pytest.fixture(scope="module")
def room_wav(tmp_path_factory, speech_maker):
    """English turns and Korean commands in a noisy room, as a 44.1 kHz stereo WAV."""
    scene = build_circle(speech_maker, seed=4, n_turns=3, noises=("fan", "babble"))
    rng = np.random.default_rng(2)
    extra = []
    for phrase, voice in (("넘어가 주세요", KO_VOICES[4]), ("다시 말해 주세요", KO_VOICES[1])):
        extra.append(np.zeros(int(3.5 * SR), np.float32))
        extra.append(at_level(speech_maker.espeak(phrase, *voice), -26))
    extra.append(np.zeros(2 * SR, np.float32))
    tail = convolve(np.concatenate(extra), room_ir(0.4, rng))[: sum(len(x) for x in extra)]
    tail += (rng.standard_normal(len(tail)) * 10 ** (-60 / 20)).astype(np.float32)
    audio = np.concatenate([scene.audio, tail])
    path = tmp_path_factory.mktemp("room") / "room.wav"
    Scene(audio=audio).write_wav(path.with_suffix(".16k.wav"))
    subprocess.run(
        ["sox", str(path.with_suffix(".16k.wav")), "-r", "44100", "-c", "2", str(path)], check=True
    )
    return path


def test_a_whole_listening_session_writes_nothing_and_opens_no_socket(room_wav):
    proc, report, events = run_guarded(SESSION, env_extra={"ROOM_WAV": str(room_wav)})
    assert report == [], report
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert events["started"] >= 3 and events["ended"] == events["started"]
    # vosk really ran: the short utterances (the two commands at least) were decoded
    assert events["decoded"] >= 2, events
    assert set(events["commands"]) <= {"next", "repeat"}, events
    # no transcript or audio reaches the output either: only counts and command actions
    for phrase in ("넘어가", "주세요", "다시", "말해"):
        assert phrase not in proc.stdout and phrase not in proc.stderr


def test_the_guard_catches_a_write_a_socket_and_a_subprocess(tmp_path):
    target = tmp_path / "leak.raw"
    _, report, _ = run_guarded(f"open({str(target)!r}, 'wb').write(b'room audio')")
    assert report and "open for writing" in report[0]
    assert not target.exists()
    _, report, _ = run_guarded("import socket; socket.socket()")
    assert report == ["socket.__new__"]
    _, report, _ = run_guarded("import subprocess; subprocess.run(['true'])")
    assert report and report[0].startswith("subprocess.Popen")
    _, report, _ = run_guarded(f"open({str(target)!r}, 'wb').write(b'x')", allowed=(str(target),))
    assert report == [] and target.exists()


SIM_SESSION = textwrap.dedent("""
    from device.cli import main
    rc = main(["--data", os.environ["DATA"], "simulate", "--script", "three-step-circle",
               "--events", os.environ["EVENTS"], "--log", os.environ["LOG"],
               "--mic", os.environ["ROOM_WAV"], "--usage", os.environ["USAGE"]])
    print("EVENTS " + json.dumps({"rc": rc}), flush=True)
""")


def test_a_whole_simulated_circle_with_listening_writes_only_the_log_and_the_usage_store(
    room_wav, rendered_default, tmp_path
):
    events = tmp_path / "events.jsonl"
    events.write_text('{"t": 0.2, "action": "goto:share"}\n')
    log, usage = tmp_path / "log.jsonl", tmp_path / "usage.sqlite"
    allowed = (str(log), str(usage), f"{usage}-wal", f"{usage}-shm", f"{usage}-journal")
    env = {"DATA": str(rendered_default), "EVENTS": str(events), "LOG": str(log), "ROOM_WAV": str(room_wav),
           "USAGE": str(usage)}
    proc, report, result = run_guarded(SIM_SESSION, allowed=allowed, env_extra=env)
    assert report == [], report
    assert result == {"rc": 0}, proc.stderr[-3000:]
    kinds = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert "speech_started" in kinds and "turn_ended" in kinds
    # the usage store holds counts only: no transcript, no audio, no per-person times
    import sqlite3

    row = sqlite3.connect(usage).execute("SELECT rounds FROM sessions").fetchone()
    [share] = json.loads(row[0])
    assert set(share) == {"step", "turns", "passes", "listened", "left_to_facilitator"}
    assert all(type(share[k]) is int for k in share if k != "step")  # counts, never who or when
