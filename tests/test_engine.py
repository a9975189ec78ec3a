"""The session engine, driven event by event on a virtual clock (no audio, no threads)."""

from __future__ import annotations

import json

import pytest

from device import engine as eng
from device.actions import ACTIONS, Action, UnknownAction, parse_action
from device.listening.events import UNSURE_WAIT_MAX_S, VoiceLevels
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


CLEAR_VOICE = 22.0  # dB over the room's noise: a voice the box hears clearly
SOFT_VOICE = 10.0  # a voice near the room's noise: the box is not sure of the silence after it


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

    def speech(self, start: float, end: float, hangover: float = 0.0,
               voice_db: float | None = CLEAR_VOICE) -> None:
        """Someone speaks from start to end, `voice_db` over the room's noise (None: too short
        to measure); the listener says so `hangover` seconds late."""
        self.at(start + hangover)
        self._feed(eng.SpeechStarted(start), start + hangover)
        self.at(end + hangover)
        voice = VoiceLevels() if voice_db is None else VoiceLevels.steady(voice_db, end - start)
        self._feed(eng.SpeechEnded(end, end - start, voice), end + hangover)

    def maybe_speech(self, start: float, quiet_from: float, hangover: float = 0.0) -> None:
        """The listener half hears a voice from `start` (not sure enough to call it speech); the
        silence after it counts from `quiet_from`, reported `hangover` seconds late."""
        self.at(start + hangover)
        self._feed(eng.MaybeSpeech(start), start + hangover)
        self.at(quiet_from + hangover)
        self._feed(eng.MaybeSpeechEnded(quiet_from), quiet_from + hangover)

    def unsure_sound(self, start: float, quiet_from: float | None = None) -> None:
        """The listener hears a sound it cannot yet tell from a voice from `start`, and (if
        given) UNSURE_QUIET_S of sure silence again by `quiet_from`."""
        self.at(start)
        self._feed(eng.UnsureSound(start), start)
        if quiet_from is not None:
            self.at(quiet_from)
            self._feed(eng.UnsureSoundEnded(quiet_from), quiet_from)

    def first_turn(self) -> Harness:
        """Go to the sharing round and let its prompt end: turn 1 begins at t=3."""
        self.press("goto:share")
        self.at(3).finish_audio()
        return self

    def logs(self, event: str) -> list[dict]:
        return [c.fields for c in self.commands if isinstance(c, eng.Log) and c.event == event]

    def played(self) -> list[str]:
        return [c.sound for c in self.commands if isinstance(c, eng.Play)]


def test_next_starts_the_circle_and_plays_the_first_step():
    h = Harness()
    out = h.press("next")
    assert eng.Play("step:welcome") in out
    assert h.engine.state == eng.State.SPEAKING
    assert h.logs("session_started")[0]["script"] == "test-circle"


def test_say_step_waits_for_next_then_exercise_continues_by_itself():
    h = Harness()
    h.press("next")
    h.at(5).finish_audio()
    assert h.engine.state == eng.State.WAITING
    h.at(8).press("next")
    assert h.engine.step.id == "breathe"
    h.at(20).finish_audio()  # exercise has then: continue
    assert h.engine.step.id == "share"
    assert h.logs("step_finished")[0] == {"step": "welcome", "reason": "next", "delivered": True}
    assert h.logs("step_finished")[1] == {"step": "breathe", "reason": "done", "delivered": True}


@pytest.mark.parametrize(
    ("setup", "action", "expected_state", "expected_sound"),
    [
        ("idle", "next", eng.State.SPEAKING, "step:welcome"),
        ("idle", "repeat", eng.State.IDLE, "msg:ready"),
        ("idle", "help", eng.State.HELP, "msg:help"),
        ("speaking", "repeat", eng.State.SPEAKING, "step:welcome"),
        ("speaking", "pause", eng.State.PAUSED, None),
        ("speaking", "help", eng.State.HELP, "msg:help"),
        ("speaking", "next", eng.State.SPEAKING, "step:breathe"),
        ("waiting", "repeat", eng.State.SPEAKING, "step:welcome"),
        ("turn", "next", eng.State.IN_ROUND, "bell:soft_bell"),
        ("turn", "repeat", eng.State.IN_ROUND, "step:share"),
        ("turn", "help", eng.State.HELP, "msg:help"),
        ("turn", "skip", eng.State.TIMER, "step:talk"),
        ("paused", "pause", eng.State.SPEAKING, None),
        ("help", "pause", eng.State.SPEAKING, "step:welcome"),
        ("help", "help", eng.State.SPEAKING, "step:welcome"),
        ("help", "next", eng.State.SPEAKING, "step:welcome"),
        ("paused", "next", eng.State.SPEAKING, None),
        ("finished", "next", eng.State.IDLE, "msg:finished"),
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
    assert h.engine.state == eng.State.WAITING


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


def test_a_half_heard_voice_after_speech_holds_the_end_of_the_turn():
    # issue 13: a soft speaker going on under the room's noise is only "maybe" speech to the
    # detector; the silence that ends her turn counts from after it
    h = Harness(listening=True)
    h.press("goto:share")
    h.at(3).finish_audio()
    h.speech(4, 10)
    h.maybe_speech(11, 12.5, hangover=0.6)  # her soft words, then quiet from 12.5
    h.at(15.4)
    assert h.logs("turn_ended") == []  # 5.4 s after her last sure word, 2.9 s after the maybe
    h.at(15.6)
    assert h.logs("turn_ended")[0]["reason"] == "silence"


def test_a_half_heard_voice_holds_the_end_while_it_lasts():
    h = Harness(listening=True)
    h.press("goto:share")
    h.at(3).finish_audio()
    h.speech(4, 10)
    h.at(12.5)
    h._feed(eng.MaybeSpeech(12.4), 12.5)
    h.at(20)  # still half heard: never ended under her
    assert h.logs("turn_ended") == []
    h._feed(eng.MaybeSpeechEnded(20), 20)
    h.at(23.1)
    assert h.logs("turn_ended")[0]["reason"] == "silence"


def test_a_half_heard_voice_is_not_speech_but_a_silent_turn_passes_only_after_it():
    # someone heard only as "maybe" (a soft voice under the noise, or the next room) is not
    # passed while she may be speaking: the turn passes pass_on_silence_s after the voice
    h = Harness(listening=True)
    h.press("goto:share")
    h.at(3).finish_audio()
    h.maybe_speech(5, 6)
    h.at(15.9)
    assert h.logs("turn_ended") == [] and h.logs("speech_started") == []
    h.at(16.1)
    assert h.logs("turn_ended")[0]["reason"] == "pass"


def test_a_turn_heard_only_as_maybe_is_never_passed_while_the_voice_lasts():
    h = Harness(listening=True).first_turn()
    h.at(5)
    h._feed(eng.MaybeSpeech(5), 5)  # 30 s of a voice the detector only half hears
    h.at(35)
    assert h.logs("turn_ended") == []
    h._feed(eng.MaybeSpeechEnded(35), 35)
    h.at(44.9)
    assert h.logs("turn_ended") == []
    h.at(45.1)
    assert h.logs("turn_ended")[0]["reason"] == "pass"


def test_a_turn_does_not_end_in_the_middle_of_a_sound_the_box_is_still_hearing():
    # issue 13: she picks up after a 2.4 s thinking pause; the detector has only begun to half
    # hear her when her 3 s of silence come due: the end waits for that sound to be over
    h = Harness(listening=True).first_turn()
    h.speech(4, 10)
    h.unsure_sound(12.9)
    h.at(13.3)
    assert h.logs("turn_ended") == []  # 3.3 s after her last word, but something is heard
    h.speech(13.3, 16)  # it was her: the turn goes on
    h.at(18.9)
    assert h.logs("turn_ended") == []
    h.at(19.1)
    assert h.logs("turn_ended")[0]["reason"] == "silence"


def test_an_unsure_sound_that_stops_lets_the_turn_end_then():
    h = Harness(listening=True).first_turn()
    h.speech(4, 10)
    h.unsure_sound(12.8)  # a cup put down as her 3 s of silence come due
    h.at(13.25)
    assert h.logs("turn_ended") == []
    h._feed(eng.UnsureSoundEnded(13.3), 13.3)  # 0.45 s of sure silence after the cup
    [ended] = h.logs("turn_ended")
    assert ended["reason"] == "silence" and h.engine.playing == "bell:soft_bell"


def test_the_wait_for_an_unsure_sound_is_short_and_bounded():
    h = Harness(listening=True).first_turn()
    h.speech(4, 10)
    h.unsure_sound(12.9)  # a fan that hums on and on, over the floor
    h.at(13.0 + UNSURE_WAIT_MAX_S - 0.05)
    assert h.logs("turn_ended") == []
    h.at(13.0 + UNSURE_WAIT_MAX_S + 0.05)
    assert h.logs("turn_ended")[0]["reason"] == "silence"


def test_a_sound_before_the_silence_came_due_does_not_delay_it():
    h = Harness(listening=True).first_turn()
    h.speech(4, 10)
    h.unsure_sound(11, quiet_from=11.5)  # over long before the 3 s
    h.at(13.05)
    assert h.logs("turn_ended")[0]["reason"] == "silence"


def test_a_turn_nobody_spoke_in_does_not_pass_in_the_middle_of_a_sound():
    # a soft speaker the detector never heard as speech, only as sounds it was not sure of
    h = Harness(listening=True).first_turn()
    h.unsure_sound(12.8)  # pass_on_silence_s is 10: due at 13
    h.at(13.2)
    assert h.logs("turn_ended") == []
    h.speech(13.2, 15)  # her voice, heard at last
    h.at(17)
    assert h.logs("turn_ended") == []


def test_in_a_room_too_noisy_to_be_sure_a_silent_turn_is_not_passed_by_the_box():
    # issue 13: at -28 dBFS the box "passed" two turns whose speakers it never heard, while
    # they spoke under the noise: there, a silent turn is the facilitator's to end
    h = Harness(listening=True).first_turn()
    h._feed(eng.RoomNoiseChanged(3.5, too_noisy=True), 3.5)
    h.at(40)  # pass_on_silence_s is 10
    assert h.logs("turn_ended") == [] and h.engine.led == "waiting"
    clock = h.engine.countdown(40)
    assert clock["left_to_facilitator"] and clock["room_too_noisy"]
    h.press("next")
    [ended] = h.logs("turn_ended")
    assert ended["reason"] == "button" and ended["left_to_facilitator"]


def test_a_clear_voice_in_a_too_noisy_room_is_still_paced_and_a_quieter_room_passes_again():
    h = Harness(listening=True).first_turn()
    h._feed(eng.RoomNoiseChanged(3.5, too_noisy=True), 3.5)
    h.speech(4, 10)  # heard clearly: the box ends her turn on silence, as before
    h.at(13.1)
    assert h.logs("turn_ended")[0]["reason"] == "silence"
    h.finish_audio()  # the bell: turn 2 begins at 13.1
    h.at(20)
    h._feed(eng.RoomNoiseChanged(20, too_noisy=False), 20)  # the generator stops
    h.at(23.0)
    assert len(h.logs("turn_ended")) == 1
    h.at(23.2)  # 10 s of silence since turn 2 began: a pass, as in a quiet room
    assert [e["reason"] for e in h.logs("turn_ended")] == ["silence", "pass"]


def test_the_wrap_up_is_not_spoken_into_a_sound_the_box_is_still_hearing():
    h = Harness(listening=True).first_turn()
    h.speech(4, 150)  # past max, still speaking; the wrap-up waits for a 1 s pause
    h.unsure_sound(150.9)
    h.at(151.3)
    assert "msg:wrap_up" not in h.played()
    h._feed(eng.UnsureSoundEnded(151.4), 151.4)
    assert h.engine.playing == "msg:wrap_up"


def test_a_half_heard_voice_waits_the_wrap_up_too():
    h = Harness(listening=True)
    h.press("goto:share")
    h.at(3).finish_audio()
    h.speech(4, 150)  # past max, still speaking
    h._feed(eng.MaybeSpeech(150.5), 150.5)
    h.at(153)
    assert "msg:wrap_up" not in h.played()  # not over words the box half hears
    h._feed(eng.MaybeSpeechEnded(153), 153)
    h.at(153.9)
    assert "msg:wrap_up" not in h.played()
    h.at(154.1)
    assert h.engine.playing == "msg:wrap_up"


def test_a_voice_the_box_did_not_hear_clearly_is_never_ended_by_silence_the_facilitator_ends_it():
    # issue 13: every cut-in left in rooms of real people was a voice near the room's noise;
    # after one, a silence may be her going on unheard, so the end of her turn is NEXT's
    h = Harness(listening=True).first_turn()
    h.speech(4, 10, voice_db=SOFT_VOICE)
    assert h.logs("turn_left_to_facilitator") == [{"n": 1}]
    assert h.engine.led == "waiting"  # the slow blink: the box waits for NEXT
    assert h.engine.countdown(20)["left_to_facilitator"]
    h.at(50)  # 40 s of what the box takes for silence
    assert h.logs("turn_ended") == [] and h.engine.turn == 1
    h.press("next")
    assert h.logs("turn_ended")[0]["reason"] == "button"
    h.finish_audio()  # the bell between turns
    assert h.engine.turn == 2 and h.engine.led == "listening"
    assert not h.engine.countdown(51)["left_to_facilitator"]  # the next speaker starts afresh


def test_each_ended_turn_says_whether_the_box_listened_and_left_it_to_the_facilitator():
    # the usage record counts these per round (device/usage.py): which rooms need the box moved
    h = Harness(listening=True).first_turn()
    h.speech(4, 10, voice_db=SOFT_VOICE)
    h.at(20).press("next")
    h.finish_audio()
    h.speech(22, 26, voice_db=CLEAR_VOICE)  # the next speaker, heard clearly
    h.at(30)
    first, second = h.logs("turn_ended")
    assert (first["reason"], first["listened"], first["left_to_facilitator"]) == ("button", True, True)
    assert (second["reason"], second["listened"], second["left_to_facilitator"]) == ("silence", True, False)
    buttons = Harness(listening=False).first_turn()
    buttons.at(10).press("next")
    [only] = buttons.logs("turn_ended")
    assert (only["listened"], only["left_to_facilitator"]) == (False, False)


def test_a_pause_keeps_the_turn_left_to_the_facilitator_and_its_light():
    h = Harness(listening=True).first_turn()
    h.speech(4, 10, voice_db=SOFT_VOICE)
    h.at(20).press("pause")
    assert h.engine.led == "paused"
    h.at(30).press("pause")
    assert h.engine.led == "waiting"  # still the facilitator's to end
    h.at(80)
    assert h.logs("turn_ended") == []


def test_a_turn_of_only_short_sounds_is_not_heard_clearly():
    h = Harness(listening=True).first_turn()
    h.speech(4, 4.4, voice_db=None)  # too short to measure how clearly she was heard
    h.at(30)
    assert h.logs("turn_ended") == [] and h.logs("turn_left_to_facilitator") == [{"n": 1}]


def test_a_turn_is_heard_clearly_by_all_its_speech_together():
    h = Harness(listening=True).first_turn()
    h.speech(4, 8, voice_db=SOFT_VOICE)  # a soft start: the facilitator's turn to end, for now
    assert h.logs("turn_left_to_facilitator") == [{"n": 1}] and h.engine.led == "waiting"
    h.speech(9, 12, voice_db=CLEAR_VOICE)  # then she speaks up: the loud part of her turn is clear
    assert h.logs("turn_heard_clearly") == [{"n": 1}] and h.engine.led == "listening"
    h.at(14.9)
    assert h.logs("turn_ended") == []
    h.at(15.1)
    assert h.logs("turn_ended")[0]["reason"] == "silence"


def test_short_utterances_are_judged_added_up_once_there_is_enough_to_measure():
    h = Harness(listening=True).first_turn()
    h.speech(4, 4.3, voice_db=CLEAR_VOICE)  # one loud "yes" of 0.3 s: too little to judge
    assert h.logs("turn_left_to_facilitator") == [{"n": 1}]
    h.speech(6, 6.3, voice_db=CLEAR_VOICE)  # two of them: 0.6 s of a voice 22 dB over the room
    assert h.logs("turn_heard_clearly") == [{"n": 1}]


def test_with_a_voice_not_heard_clearly_time_limits_show_on_the_light_and_never_speak():
    h = Harness(listening=True).first_turn()
    h.speech(4, 20, voice_db=SOFT_VOICE)
    h.at(3 + 61)
    assert h.engine.led == "turn_warn" and "msg:reminder" not in h.played()
    h.at(3 + 91)
    assert h.engine.led == "turn_over"
    assert h.engine.playing == "bell:chime"  # a soft chime, never words, over who may be speaking
    assert "msg:wrap_up" not in h.played() and h.engine.turn == 1


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
    h._feed(eng.SpeechEnded(150, 146, VoiceLevels.steady(CLEAR_VOICE, 146)), 150)
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
    assert h.engine.state == eng.State.WAITING


def test_bell_step_rings_count_times_and_the_session_finishes():
    h = Harness()
    h.press("goto:gong")
    h.at(2).finish_audio()
    h.at(4).finish_audio()
    assert h.played().count("bell:soft_bell") == 2
    assert h.logs("session_finished") == [{"completed": True, "duration_s": 4.0}]
    assert h.engine.state == eng.State.FINISHED


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
    assert h.engine.state == eng.State.SPEAKING


def test_unknown_actions_and_steps_are_ignored_with_a_reason():
    h = Harness()
    h.press("dance")
    h.press("goto:nowhere")
    why = [e["why"] for e in h.logs("ignored")]
    assert "unknown action 'dance'" in why[0] and "no step 'nowhere'" in why[1]
    assert h.engine.state == eng.State.IDLE


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
    assert eng.Play("sys:setup_code") not in out and h.engine.state == eng.State.SPEAKING
    out = h._feed(eng.Announce(("sys:update_keep_power",), urgent=True), 6)
    assert eng.Play("sys:update_keep_power") in out and h.engine.state == eng.State.PAUSED


def test_a_box_message_is_never_cut_off_by_the_next_one():
    """The updater's steps come faster than speech: "Checking the update" must be said whole,
    then "Copying", not cut off by it (heard in QEMU's WAV); a step already waiting is not said twice."""
    h = Harness()
    out = h._feed(eng.Announce(("update:S01",)), 0)
    assert eng.Play("update:S01") in out
    out = h._feed(eng.Announce(("update:S02",)), 0.2)
    assert not any(isinstance(c, eng.Play) for c in out) and h.engine.playing == "update:S01"
    h._feed(eng.Announce(("update:S02",)), 0.3)  # the same step again while it waits
    h.at(2).finish_audio()
    assert h.engine.playing == "update:S02"
    h.at(3).finish_audio()
    assert h.engine.playing is None
    out = h._feed(eng.Announce(("update:S04",)), 9)  # nothing being said: at once
    assert eng.Play("update:S04") in out


def test_setup_code_chord_is_logged_not_acted_on_by_the_engine():
    h = Harness()
    h.press("setup_code")
    assert h.logs("setup_code_requested") == [{"running": False}]
    assert h.engine.state == eng.State.IDLE


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


def test_advance_on_silence_waits_for_a_half_heard_voice_too():
    h = Harness(listening=True, text=ON_SILENCE)
    h.press("next")
    h.at(3).finish_audio()
    h.speech(5, 9)
    h.maybe_speech(12, 13)
    h.at(17.9)
    assert h.engine.step.id == "welcome"
    h.at(18.1)
    assert h.engine.step.id == "breathe"


def test_advance_on_silence_without_listening_waits_for_a_button():
    h = Harness(listening=False, text=ON_SILENCE)
    h.press("next")
    h.at(3).finish_audio()
    h.at(300)
    assert h.engine.step.id == "welcome" and h.engine.state == eng.State.WAITING


def test_advance_on_silence_waits_for_next_after_a_voice_not_heard_clearly():
    h = Harness(listening=True, text=ON_SILENCE)
    h.press("next")
    h.at(3).finish_audio()
    h.speech(5, 9, voice_db=SOFT_VOICE)
    h.at(300)
    assert h.engine.step.id == "welcome" and h.engine.state == eng.State.WAITING
    h.press("next")
    assert h.engine.step.id == "breathe"


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


# -- buttons while the circle is held (PAUSE, HELP) and explain mode ------------------------------


def test_help_again_leaves_help_and_the_circle_carries_on():
    h = Harness()
    h.press("next")
    h.at(2).press("help")
    out = h.at(30).press("help")
    assert h.engine.state == eng.State.SPEAKING and h.engine.led == "speaking"
    assert eng.SetHelpLed(False) in out
    assert [c.sound for c in out if isinstance(c, eng.Play)] == ["step:welcome"]  # not the help message again
    assert len(h.logs("help")) == 1 and h.logs("resumed")


def _into(setup: str) -> Harness:
    """A circle at `setup`: speaking, waiting for NEXT, in a round's first turn, or in a timer."""
    h = Harness()
    if setup in ("speaking", "waiting"):
        h.press("next")
        if setup == "waiting":
            h.at(3).finish_audio()
    elif setup == "turn":
        h.press("goto:share")
        h.at(3).finish_audio()
    elif setup == "timer":
        h.press("goto:talk")
    return h


@pytest.mark.parametrize("hold", ["help", "pause"])
@pytest.mark.parametrize("setup", ["speaking", "waiting", "turn", "timer"])
def test_next_out_of_help_or_pause_resumes_and_never_ends_the_step(hold, setup):
    h = _into(setup)
    state, step, turn = h.engine.state, h.engine.step.id, h.engine.turn
    h.at(h.t + 2).press(hold)
    h.at(h.t + 20).press("next")
    assert (h.engine.state, h.engine.step.id, h.engine.turn) == (state, step, turn)
    assert h.logs("step_finished") == [] and h.logs("turn_ended") == []
    assert h.engine.led == eng.LED_FOR_STATE[state]


def test_repeat_out_of_help_carries_on_and_says_the_instruction_again():
    h = _into("turn")
    h.at(10).press("help")
    out = h.at(40).press("repeat")
    assert eng.Play("step:share") in out and eng.SetHelpLed(False) in out
    assert h.engine.state == eng.State.IN_ROUND and h.engine.turn == 1  # the same person carries on
    assert h.logs("step_finished") == [] and h.logs("turn_ended") == []


def test_leaving_explain_mode_says_so_and_the_running_circle_carries_on():
    h = Harness()
    h.press("next")
    h.at(2).press("explain")
    h.at(5).press("next")  # explained, not done
    out = h.at(8).press("explain")
    assert h.engine.state == eng.State.SPEAKING
    assert [c.sound for c in out if isinstance(c, eng.Play)] == ["msg:resumed"]
    h.at(9).finish_audio()
    assert h.engine.playing == "step:welcome"  # the interrupted instruction, from its start
    h.at(15).finish_audio()
    assert h.engine.state == eng.State.WAITING and h.logs("step_finished") == []


def test_leaving_explain_mode_in_a_turn_keeps_the_turn_and_its_clock():
    h = _into("turn")
    h.at(10).press("explain")
    h.at(300).press("repeat")
    h.at(310).press("explain")
    assert h.engine.state == eng.State.IN_ROUND and h.engine.turn == 1
    assert h.engine.playing == "msg:resumed"
    assert h.engine.countdown(310)["elapsed_s"] == 7.0  # 7 s of turn before explain; none during


def test_leaving_explain_mode_while_idle_stays_idle_and_says_the_box_is_ready():
    h = Harness()
    h.press("explain")
    out = h.at(20).press("explain")
    assert h.engine.state == eng.State.IDLE and h.engine.led == "idle"
    assert [c.sound for c in out if isinstance(c, eng.Play)] == ["msg:ready"]
    h.at(25).finish_audio()
    h.press("next")
    assert h.engine.state == eng.State.SPEAKING and h.engine.step.id == "welcome"


def test_explain_mode_from_a_pause_goes_back_to_the_pause():
    h = Harness()
    h.press("next")
    h.at(2).press("pause")
    h.at(3).press("explain")
    h.at(9).press("explain")
    assert h.engine.state == eng.State.PAUSED and h.engine.playing is None
    out = h.at(12).press("pause")
    assert h.engine.state == eng.State.SPEAKING and eng.Play("step:welcome") in out


# -- volume:<percent> (the admin page's slider) ---------------------------------------------------


def test_volume_action_parses_round_trips_and_explains_bad_values():
    assert parse_action(" volume:35 ") == Action("volume", percent=35)
    for text in ("volume:0", "volume:35", "volume:100", "goto:share", "next"):
        assert parse_action(text).text == text
    with pytest.raises(UnknownAction, match="like volume:35"):
        parse_action("volume:")
    for bad in ("volume:abc", "volume:101", "volume:-5", "volume:3.5", "volume:35%"):
        with pytest.raises(UnknownAction, match=r"whole number from 0 to 100"):
            parse_action(bad)
    with pytest.raises(UnknownAction, match=r"volume:<percent>"):
        parse_action("volume")


def test_volume_action_sets_the_level_up_to_the_cap():
    h = Harness()
    out = h.press("volume:35")
    assert eng.SetVolume(0.35) in out and h.logs("volume") == [{"level": 0.35}]
    assert h.engine.status()["volume"] == 0.35
    out = h.press("volume:100")
    assert eng.SetVolume(0.9) in out  # volume_cap
    out = h.press("volume:0")
    assert eng.SetVolume(0.0) in out  # the slider may go silent; the buttons never do
    h.press("volume_down")
    assert h.engine.volume == 0.1


def test_volume_action_still_works_in_explain_mode():
    h = Harness()
    h.press("explain")
    out = h.press("volume:50")
    assert eng.SetVolume(0.5) in out and h.logs("explained") == []


# -- the panel's countdown, and the shape of the engine ------------------------------------------


def test_countdown_of_a_turn_counts_active_time_only():
    h = Harness()
    h.press("goto:share")
    assert h.engine.countdown(1) is None  # the round's prompt: no turn yet
    h.at(3).finish_audio()  # turn 1 from t=3; max_s 90, warn_s 60
    assert h.engine.countdown(23) == {"kind": "turn", "turn": 1, "elapsed_s": 20.0, "limit_s": 90.0,
                                      "remaining_s": 70.0, "warn_s": 60.0, "paused": False,
                                      "left_to_facilitator": False, "room_too_noisy": False}
    h.at(23).press("pause")
    assert h.engine.countdown(500)["elapsed_s"] == 20.0 and h.engine.countdown(500)["paused"]
    h.at(600).press("pause")
    assert h.engine.countdown(610)["elapsed_s"] == 30.0
    assert h.engine.countdown(800)["remaining_s"] == 0.0
    h.at(610).press("next")  # turn 2 after the bell
    h.finish_audio()
    assert h.engine.countdown(615)["turn"] == 2 and h.engine.countdown(615)["elapsed_s"] == 5.0


def test_countdown_of_a_timer_and_none_otherwise():
    h = Harness()
    assert h.engine.countdown(0) is None
    h.press("goto:talk")
    h.at(100).press("help")
    countdown = h.engine.countdown(400)
    assert countdown == {"kind": "timer", "elapsed_s": 100.0, "limit_s": 300.0, "remaining_s": 200.0,
                         "paused": True}
    h.at(400).press("help")
    assert h.engine.countdown(450)["elapsed_s"] == 150.0
    h.at(1000).finish_audio()  # the end bell: waiting for NEXT
    assert h.engine.state == eng.State.WAITING and h.engine.countdown(1000) is None


def test_every_action_has_its_handler_and_states_keep_their_names():
    engine = Harness().engine
    assert set(engine.actions) == {*ACTIONS, "goto", "volume"}
    assert eng.State.IN_ROUND == "in_round"
    engine.handle(eng.Press("next"), 0)
    assert json.loads(json.dumps(engine.status()))["state"] == "speaking"


def test_time_in_circle_is_read_on_the_callers_clock_not_frozen_at_the_last_event():
    """The panel asks for the status between events: a welcome spoken for 40 s is 0:40 in."""
    h = Harness().at(10)
    h.press("next")
    assert h.engine.status()["session_elapsed_s"] == 0
    assert h.engine.status(50.0)["session_elapsed_s"] == 40
