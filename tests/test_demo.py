"""`circlebox demo` in a terminal: each key prints in words what the box did, `s` says the status
as a sentence, the key help names each action once, the render shows progress, the setup-code
command it prints runs as printed, and the sound libraries' chatter stays off the terminal.

The whole demo runs as a child process fed one key per line (what KeyboardButtons reads from a
pipe), on a pre-rendered data folder; its sound card is made to fail (ALSA pointed at a config
file that does not exist), so it falls back to SDL's disk driver and a WAV, exactly the two
noisy paths a laptop without a sound card takes.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from audio.library_noise import without_library_noise
from device.content import manifest_path
from device.demo_words import Narrator, action_meaning, describe_keys, describe_status
from device.script import load_script, packaged_scripts_dir
from device.system_prompts import system_manifest_path

REPO = Path(__file__).resolve().parents[1]
CIRCLEBOX = Path(sys.executable).parent / "circlebox"
SCRIPT = load_script(packaged_scripts_dir() / "three-step-circle.yaml").script
STEPS = len(SCRIPT.steps)
WAIT_S = 120  # generous: the box may be slow on a busy machine; nothing here measures time


class Demo:
    """The demo as a child: keys in on stdin, every line of its output collected on a thread."""

    def __init__(self, data: Path, cwd: Path, *args: str) -> None:
        env = {**os.environ, "SDL_AUDIODRIVER": "alsa", "ALSA_CONFIG_PATH": str(cwd / "no-such-asound.conf"),
               "PATH": os.environ["PATH"].replace(str(CIRCLEBOX.parent), "/nonexistent"),
               "CIRCLEBOX_BUTTONS__PIN_FACTORY": "mock", "PYTHONUNBUFFERED": "1"}
        env.pop("SDL_DISKAUDIOFILE", None)
        self.proc = subprocess.Popen([str(CIRCLEBOX), "--data", str(data), "demo", *args], cwd=cwd, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            for part in line.rstrip("\n").split("\r"):  # progress lines are rewritten with \r
                self.lines.put(part.rstrip())
        self.lines.put("\0end")

    def expect(self, pattern: str) -> re.Match[str]:
        """The next output line matching `pattern` (lines before it are kept in `seen`)."""
        while True:
            try:
                line = self.lines.get(timeout=WAIT_S)
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r}; output so far:\n" + "\n".join(self.seen)) from None
            if line == "\0end":
                raise AssertionError(f"the demo ended before {pattern!r}:\n" + "\n".join(self.seen))
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def until(self, pattern: str) -> list[str]:
        """Every line up to the one matching `pattern` (not included)."""
        start = len(self.seen)
        self.expect(pattern)
        return self.seen[start:-1]

    def key(self, key: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(key + "\n")
        self.proc.stdin.flush()

    def finish(self) -> str:
        self.key("q")
        self.expect(r"^Wrote what the box played to ")
        self.proc.stdin.close()
        assert self.proc.wait(timeout=WAIT_S) == 0
        while True:
            line = self.lines.get(timeout=WAIT_S)
            if line == "\0end":
                return "\n".join(self.seen)
            self.seen.append(line)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def demo(box_data, tmp_path):
    # the rendered sets' records gone: the demo must look again (and say so) before it starts
    system_manifest_path(box_data / "cache").unlink()
    manifest_path(box_data / "cache", SCRIPT.script).unlink()
    run = Demo(box_data, tmp_path, "--admin-port", str(free_port()))
    yield run
    if run.proc.poll() is None:
        run.proc.kill()
        run.proc.wait()


def test_demo_says_what_the_box_does_in_words(demo, box_data, tmp_path):
    demo.expect(r"rendering the box's own prompts \d+/\d+")  # the system set, checked first
    demo.expect(rf"rendering {len(SCRIPT.prompts())}/{len(SCRIPT.prompts())} ")  # then the circle
    demo.expect(r"^Keys \(the box's buttons\):")
    demo.expect(r"^Press n to begin\.")

    demo.key("s")
    demo.expect(r"^Status: Idle, ready to start \(press n\)\. Volume 70 %\.$")
    demo.key("n")
    title = SCRIPT.steps[0].title or SCRIPT.steps[0].id
    demo.expect(rf"^NEXT: starting the circle '{SCRIPT.title}'\. Step 1 of {STEPS}: {re.escape(title)}\.$")
    demo.key("s")
    demo.expect(rf"^Status: Step 1 of {STEPS} '{SCRIPT.steps[0].id}': ")
    share = SCRIPT.step_index("share")
    demo.key(str(share + 1))
    demo.expect(rf"^GO TO share: Step {share + 1} of {STEPS}: {re.escape(SCRIPT.steps[share].title)}\. "
                r"A round: one person at a time \(press n when a person has finished\)\.$")
    demo.key("s")
    demo.expect(rf"^Status: Step {share + 1} of {STEPS} 'share'(, turn 1)?: a round\.")
    demo.key("+")
    demo.expect(r"^LOUDER: volume 80 %\.$")
    demo.key("p")
    demo.expect(r"^PAUSE: paused; press p again to carry on\.$")
    demo.key("p")
    demo.expect(r"^PAUSE: carrying on\.$")
    demo.key("x")
    demo.expect(r"^'x' is not one of the keys")
    out = demo.finish()

    assert "None" not in out  # "step None turn None" was the old status
    assert (tmp_path / "circlebox-demo.wav").stat().st_size > 44  # the fallback wrote the sound


def test_demo_keeps_sdl_and_alsa_chatter_off_the_terminal(demo):
    demo.expect(r"^No sound card here \(.*\)\.$")  # our words; the card's failure is the detail
    demo.expect(r"^Writing what the box plays to circlebox-demo.wav instead\.$")
    demo.expect(r"^Press n to begin\.")
    out = demo.finish()
    assert "ALSA lib" not in out, out
    assert "CRITICAL" not in out and "SDL disk i/o audio driver" not in out, out


def test_key_help_names_each_action_once(demo):
    demo.expect(r"^Keys \(the box's buttons\):")
    help_lines = demo.until(r"^Press n to begin\.")
    demo.finish()
    assert "  n        NEXT: moves on: to the next person in a round, or to the next step." in help_lines
    assert "  Shift+N  SKIP (hold NEXT): ends the whole step now, even in the middle of a round." in help_lines
    assert "  Shift+P  SOFTER (hold PAUSE)" in help_lines
    for line in help_lines:  # "n: next    Next" said the name twice in a row
        assert not re.search(r"(?i)\b(\w+)\b[\s:]+\1\b", line), line


def test_the_printed_setup_code_command_runs_as_printed(demo, box_data, tmp_path):
    """`make demo` runs .venv/bin/circlebox, not on PATH: the printed command must still work."""
    command = demo.expect(r"in another terminal: (.+)\)$")[1]
    demo.expect(r"^Press n to begin\.")
    demo.finish()
    argv = shlex.split(command)
    assert Path(argv[0]).is_absolute() and Path(argv[0]).exists()
    assert argv[argv.index("--data") + 1] == str(box_data)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT_S, cwd=tmp_path.parent,
                          env={**os.environ, "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"\b\d{6}\b", proc.stdout), proc.stdout


# -- the words, without a box -------------------------------------------------------------------


def narrate(*events: tuple[str, dict]) -> list[str]:
    """Feed events to a Narrator as the box would, flushing where the box ends a press."""
    out: list[str] = []
    pending: list = []
    narrator = Narrator(out.append, lambda: SCRIPT)
    narrator.end_of_press = pending.append
    for event, fields in events:
        narrator(event, fields, 0.0)
    for flush in pending:
        flush()
    return out


def test_a_press_and_its_effects_are_one_line():
    first = SCRIPT.steps[0].title or SCRIPT.steps[0].id
    assert narrate(("input", {"action": "next", "source": "button:next"}),
                   ("session_started", {"script": SCRIPT.script}),
                   ("step_started", {"step": SCRIPT.steps[0].id})) == [
        f"NEXT: starting the circle '{SCRIPT.title}'. Step 1 of {STEPS}: {first}."]


def test_a_press_that_changes_nothing_says_so():
    assert narrate(("input", {"action": "repeat", "source": "button:repeat"})) == ["REPEAT: nothing to do now."]


def test_the_box_acting_on_its_own_gets_its_own_line():
    assert narrate(("turn_ended", {"n": 2, "reason": "silence"}), ("turn_started", {"n": 3})) == [
        "Turn 2 is over (the speaker went quiet).", "Turn 3: the next person speaks."]


def test_presses_from_elsewhere_say_where_from():
    assert narrate(("input", {"action": "stop", "source": "admin"}),
                   ("session_finished", {"completed": False})) == [
        "STOP (from the admin page): The circle was stopped."]


def test_explain_mode_does_not_also_say_paused():
    assert narrate(("input", {"action": "explain", "source": "button:help"}), ("explain", {"on": True}),
                   ("paused", {"why": "button"})) == [
        "EXPLAIN: explain mode: press any button to hear what it does; the same hold again leaves explain mode."]


def test_status_in_words():
    assert describe_status({"state": "idle", "volume": 0.7}) == "Idle, ready to start (press n). Volume 70 %."
    assert describe_status({"state": "in_round", "step": "share", "step_index": 1, "steps_total": 5,
                            "turn": 3, "volume": 0.5}) == "Step 2 of 5 'share', turn 3: a round. Volume 50 %."
    assert describe_status({"state": "paused", "step": "breathe", "step_index": 0, "steps_total": 5,
                            "turn": None, "volume": 0.5, "faults": ["speaker: gone"]}) == (
        "Step 1 of 5 'breathe': paused (PAUSE carries on). Volume 50 %.\n  Problem: speaker: gone")


def test_key_help_follows_the_button_map():
    class Button:
        def __init__(self, name: str, press: str, hold: str | None) -> None:
            self.name, self.press, self.hold = name, press, hold

    text = describe_keys([("n", "next"), ("r", "repeat")], [Button("next", "start", None),
                                                           Button("repeat", "repeat", "volume_up")])
    assert "  n        START: begins the circle from the first step." in text
    assert "  Shift+R  LOUDER (hold REPEAT)" in text
    assert "Shift+N" not in text
    assert action_meaning("goto:share") == "goes to step share."


def test_library_noise_is_dropped_and_real_errors_are_kept(capfd):
    with without_library_noise():
        os.write(2, b"ALSA lib pcm.c:2666:(snd_pcm_open_noupdate) Unknown PCM default\n")
        os.write(2, b"CRITICAL: You are using the SDL disk i/o audio driver!\n")
        os.write(2, b"CRITICAL:  Writing to file [/tmp/x.raw].\n")
        os.write(2, b"Segmentation fault in our mixer\n")
        print("an error of ours", file=sys.stderr)
    err = capfd.readouterr().err
    assert sorted(err.splitlines()) == ["Segmentation fault in our mixer", "an error of ours"]
