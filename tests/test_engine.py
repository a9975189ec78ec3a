"""The session engine, driven event by event on a virtual clock (no audio, no threads)."""

from __future__ import annotations

import pytest

from device import engine as eng
from device.script import parse_script

SCRIPT = """
script: test-circle
version: 3
language: en_US
voice: en_US-joe-medium
steps:
  - id: welcome
    core: true
    say: Welcome.
  - id: breathe
    kind: exercise
    say: ["Breathe in.", {pause: 2}, "Breathe out."]
    then: continue
  - id: share
    kind: round
    core: true
    prompt: Share, one at a time.
    turns: {count: 3, end_on_silence_s: 3, pass_on_silence_s: 10, warn_s: 60, max_s: 90}
  - id: talk
    kind: timer
    say: Talk in pairs.
    duration_s: 300
    warn_before_s: 60
  - id: gong
    kind: bell
    bell: soft_bell
    count: 2
"""


class Harness:
    """Feeds events at virtual times and remembers every command."""

    def __init__(self, listening: bool = False, text: str = SCRIPT) -> None:
        self.script = parse_script(text, "test.yaml").script
        self.engine = eng.Engine(self.script, listening=listening)
        self.t = 0.0
        self.commands: list[eng.Command] = []

    def at(self, t: float) -> Harness:
        """Advance to t, firing any deadlines on the way (as the runtime loop does)."""
        while True:
            deadline = self.engine.next_deadline()
            if deadline is None or deadline > t:
                break
            self._feed(eng.Tick(), deadline)
        self.t = t
        return self

    def _feed(self, event: eng.Event, t: float) -> list[eng.Command]:
        out = self.engine.handle(event, t)
        self.commands.extend(out)
        return out

    def press(self, action: str) -> list[eng.Command]:
        return self._feed(eng.Press(action), self.t)

    def finish_audio(self) -> list[eng.Command]:
        sound = self.engine.playing
        assert sound is not None, "nothing is playing"
        return self._feed(eng.AudioFinished(sound), self.t)

    def speech(self, start: float, end: float, hangover: float = 0.0) -> None:
        """Someone speaks from start to end; the listener says so `hangover` seconds late."""
        self.at(start + hangover)
        self._feed(eng.SpeechStarted(start), start + hangover)
        self.at(end + hangover)
        self._feed(eng.SpeechEnded(end, end - start), end + hangover)

    def logs(self, event: str) -> list[dict]:
        return [c.fields for c in self.commands if isinstance(c, eng.Log) and c.event == event]

    def played(self) -> list[str]:
        return [c.sound for c in self.commands if isinstance(c, eng.Play)]


def test_next_starts_the_circle_and_plays_the_first_step():
    h = Harness()
    out = h.press("next")
    assert eng.Play("step:welcome") in out
    assert h.engine.state == eng.SPEAKING
    assert h.logs("session_started")[0]["script"] == "test-circle"


def test_say_step_waits_for_next_then_exercise_continues_by_itself():
    h = Harness()
    h.press("next")
    h.at(5).finish_audio()
    assert h.engine.state == eng.WAITING
    h.at(8).press("next")
    assert h.engine.step.id == "breathe"
    h.at(20).finish_audio()  # exercise has then: continue
    assert h.engine.step.id == "share"
    assert h.logs("step_finished")[0] == {"step": "welcome", "reason": "next", "delivered": True}
    assert h.logs("step_finished")[1] == {"step": "breathe", "reason": "done", "delivered": True}


@pytest.mark.parametrize(
    ("setup", "action", "expected_state", "expected_sound"),
    [
        ("idle", "next", eng.SPEAKING, "step:welcome"),
        ("idle", "repeat", eng.IDLE, "msg:ready"),
        ("idle", "help", eng.HELP, "msg:help"),
        ("speaking", "repeat", eng.SPEAKING, "step:welcome"),
        ("speaking", "pause", eng.PAUSED, None),
        ("speaking", "help", eng.HELP, "msg:help"),
        ("speaking", "next", eng.SPEAKING, "step:breathe"),
        ("waiting", "repeat", eng.SPEAKING, "step:welcome"),
        ("turn", "next", eng.IN_ROUND, "bell:soft_bell"),
        ("turn", "repeat", eng.IN_ROUND, "step:share"),
        ("turn", "help", eng.HELP, "msg:help"),
        ("turn", "skip", eng.TIMER, "step:talk"),
        ("paused", "pause", eng.SPEAKING, None),
        ("help", "pause", eng.SPEAKING, "step:welcome"),
        ("finished", "next", eng.IDLE, "msg:finished"),
    ],
)
def test_every_button_works_in_every_state(setup, action, expected_state, expected_sound):
    h = Harness()
    if setup != "idle":
        h.press("next")
    if setup == "waiting":
        h.at(3).finish_audio()
    if setup == "turn":
        h.press("goto:share")
        h.at(4).finish_audio()
        assert h.engine.turn == 1
    if setup == "paused":
        h.at(1).press("pause")
    if setup == "help":
        h.at(1).press("help")
    if setup == "finished":
        h.press("stop")
    h.at(h.t + 1)
    out = h.press(action)
    assert h.engine.state == expected_state
    plays = [c.sound for c in out if isinstance(c, eng.Play)]
    if expected_sound is None:
        assert plays == []
    else:
        assert expected_sound in plays


def test_pause_holds_the_sound_and_resume_continues_it():
    h = Harness()
    h.press("next")
    assert eng.PauseAudio() in h.at(2).press("pause")
    assert eng.ResumeAudio() in h.at(30).press("pause")
    assert h.logs("paused") and h.logs("resumed")


def test_help_pauses_lights_the_help_led_and_replays_the_instruction_after():
    h = Harness()
    h.press("next")
    out = h.at(2).press("help")
    assert eng.SetHelpLed(True) in out and eng.Play("msg:help") in out
    out = h.at(40).press("pause")
    assert eng.SetHelpLed(False) in out
    assert eng.Play("step:welcome") in out  # the interrupted instruction, from its start
    assert len(h.logs("help")) == 1


def test_time_in_pause_does_not_count_against_a_turn():
    h = Harness(listening=True)
    h.press("goto:share")
    h.at(3).finish_audio()  # turn 1 starts at t=3; a pass would come at t=13
    h.at(5).press("pause")
    h.at(500).press("pause")  # a long break; 2 s of the turn had passed, 8 s remain
    h.at(507.9)
    assert h.logs("turn_ended") == []
    h.at(508.1)
    assert h.logs("turn_ended")[0]["reason"] == "pass"


def test_round_turns_end_by_button_and_the_round_ends_after_count():
    h = Harness()
    h.press("goto:share")
    h.at(3).finish_audio()
    for n in (1, 2, 3):
        assert h.engine.turn == n
        h.at(h.t + 20).press("next")
        if n < 3:
            assert h.engine.playing == "bell:soft_bell"
            h.at(h.t + 2).finish_audio()
    assert [e["reason"] for e in h.logs("turn_ended")] == ["button"] * 3
    assert h.logs("round_ended")[-1]["reason"] == "count"
    assert h.engine.state == eng.WAITING


def test_without_listening_time_limits_only_show_on_the_led_and_never_speak():
    h = Harness(listening=False)
    h.press("goto:share")
    h.at(3).finish_audio()
    out_before = len(h.commands)
    h.at(3 + 61)
    assert eng.SetLed("turn_warn") in h.commands[out_before:]
    h.at(3 + 91)
    assert h.engine.turn == 1  # nobody was cut off
    assert [p for p in h.played() if p.startswith("msg:")] == []


def test_listening_turn_ends_after_silence_not_inside_a_thinking_pause():
    h = Harness(listening=True)
    h.press("goto:share")
    h.at(3).finish_audio()
    h.speech(4, 10)
    h.speech(12, 20)  # a 2 s thinking pause: same turn
    assert h.logs("turn_ended") == []
    h.at(22.9)
    assert h.logs("turn_ended") == []
    h.at(23.1)
    assert h.logs("turn_ended")[0]["reason"] == "silence"


def test_nobody_speaks_is_a_pass_and_long_silence_ends_the_round():
    h = Harness(listening=True)
    h.press("goto:share")
    h.at(3).finish_audio()
    h.at(13.1)
    assert h.logs("turn_ended")[0]["reason"] == "pass"
    assert h.engine.playing == "bell:soft_bell"


def test_over_max_waits_for_a_pause_then_plays_the_wrap_up():
    h = Harness(listening=True)
    h.press("goto:share")
    h.at(3).finish_audio()
    h.at(4)
    h._feed(eng.SpeechStarted(4), 4)
    h.at(150)  # well past warn (63) and max (93), still speaking
    assert "msg:wrap_up" not in h.played() and "msg:reminder" not in h.played()
    h._feed(eng.SpeechEnded(150, 146), 150)
    h.at(150.9)
    assert "msg:wrap_up" not in h.played()
    h.at(151.1)
    assert h.engine.playing == "msg:wrap_up"
    h.at(155).finish_audio()
    assert h.logs("turn_ended")[0]["reason"] == "max"


def test_reminder_at_a_pause_after_warn():
    h = Harness(listening=True)
    h.press("goto:share")
    h.at(3).finish_audio()
    h.speech(4, 70)  # warn at 63 while speaking
    h.at(71.1)
    assert h.engine.playing == "msg:reminder"
    h.at(75).finish_audio()
    h.at(78.1)
    assert h.logs("turn_ended")[0]["reason"] == "reminder"


def test_timer_warns_and_ends_with_bells():
    h = Harness()
    h.press("goto:talk")
    h.at(2).finish_audio()
    h.at(241)
    assert "bell:warn_bell" in h.played()
    h.at(301)
    assert h.engine.playing == "bell:end_bell"
    h.at(304).finish_audio()
    assert h.engine.state == eng.WAITING


def test_bell_step_rings_count_times_and_the_session_finishes():
    h = Harness()
    h.press("goto:gong")
    h.at(2).finish_audio()
    h.at(4).finish_audio()
    assert h.played().count("bell:soft_bell") == 2
    assert h.logs("session_finished") == [{"completed": True, "duration_s": 4.0}]
    assert h.engine.state == eng.FINISHED


def test_long_press_repeat_goes_back_a_step():
    h = Harness()
    h.press("goto:share")
    h.at(1).press("previous")
    assert h.engine.step.id == "breathe"
    assert h.logs("step_finished")[-1]["reason"] == "previous"


def test_volume_is_capped_and_gives_a_tick_when_quiet():
    h = Harness()
    h.engine.volume = 0.85
    out = h.press("volume_up")
    assert eng.SetVolume(0.9) in out and eng.Play("bell:tick") in out
    out = h.press("volume_up")
    assert eng.SetVolume(0.9) in out


def test_explain_mode_says_what_buttons_do_instead_of_doing_it():
    h = Harness()
    h.press("explain")
    out = h.press("next")
    assert eng.Play("msg:action_next") in out
    assert h.engine.session_start is None  # NEXT did not start the circle
    h.press("explain")  # off again
    h.press("next")
    assert h.engine.state == eng.SPEAKING


def test_unknown_actions_and_steps_are_ignored_with_a_reason():
    h = Harness()
    h.press("dance")
    h.press("goto:nowhere")
    why = [e["why"] for e in h.logs("ignored")]
    assert "unknown action 'dance'" in why[0] and "no step 'nowhere'" in why[1]
    assert h.engine.state == eng.IDLE


def test_stale_audio_finished_is_ignored():
    h = Harness()
    h.press("next")
    h.at(1).press("next")  # now on breathe
    h._feed(eng.AudioFinished("step:welcome"), 2)
    assert h.engine.playing == "step:breathe"


def test_announcements_only_when_no_circle_is_running_unless_urgent():
    h = Harness()
    out = h._feed(eng.Announce(("sys:setup_code", "sys:digit_4")), 0)
    assert eng.Play("sys:setup_code") in out
    h.at(2).finish_audio()
    assert h.engine.playing == "sys:digit_4"
    h.at(3).finish_audio()
    h.at(4).press("next")
    out = h._feed(eng.Announce(("sys:setup_code",)), 5)
    assert eng.Play("sys:setup_code") not in out and h.engine.state == eng.SPEAKING
    out = h._feed(eng.Announce(("sys:update_keep_power",), urgent=True), 6)
    assert eng.Play("sys:update_keep_power") in out and h.engine.state == eng.PAUSED


def test_setup_code_chord_is_logged_not_acted_on_by_the_engine():
    h = Harness()
    h.press("setup_code")
    assert h.logs("setup_code_requested") == [{"running": False}]
    assert h.engine.state == eng.IDLE


ON_SILENCE = SCRIPT.replace(
    "    say: Welcome.\n", "    say: Welcome.\n    advance: on_silence\n    advance_silence_s: 5\n"
)


def test_advance_on_silence_moves_on_after_a_quiet_room_and_waits_while_people_talk():
    h = Harness(listening=True, text=ON_SILENCE)
    h.press("next")
    h.at(3).finish_audio()
    h.speech(5, 9)  # someone talks: the quiet time starts again after
    h.at(13.9)
    assert h.engine.step.id == "welcome"
    h.at(14.1)
    assert h.engine.step.id == "breathe"
    assert h.logs("step_finished")[0] == {"step": "welcome", "reason": "silence", "delivered": True}


def test_advance_on_silence_without_listening_waits_for_a_button():
    h = Harness(listening=False, text=ON_SILENCE)
    h.press("next")
    h.at(3).finish_audio()
    h.at(300)
    assert h.engine.step.id == "welcome" and h.engine.state == eng.WAITING


def test_an_exercise_cannot_be_advanced_by_listening():
    from device.script import ScriptError

    bad = SCRIPT.replace('    say: ["Breathe in.", {pause: 2}, "Breathe out."]\n',
                         '    say: ["Breathe in.", {pause: 2}, "Breathe out."]\n    advance: on_silence\n')
    with pytest.raises(ScriptError, match="step 2 'breathe', field advance"):
        parse_script(bad, "x.yaml")


def test_turn_silence_counts_from_the_real_end_of_speech_not_the_late_report():
    h = Harness(listening=True)
    h.press("goto:share")
    h.at(3).finish_audio()
    h.speech(4, 10, hangover=0.6)  # the listener knows at 10.6 that speech ended at 10.0
    h.at(12.9)
    assert h.logs("turn_ended") == []
    h.at(13.1)
    assert h.logs("turn_ended")[0]["reason"] == "silence"
