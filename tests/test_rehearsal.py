"""The engine's seams for courses (an intro before the first step, fields for the session log)
and rehearsal mode (facilitator notes, simulated turns, short timers, what was practised),
driven event by event on a virtual clock like tests/test_engine.py."""

from __future__ import annotations

from typing import Any

from test_engine import SCRIPT, Harness

from device import engine as eng


class Box(Harness):
    """tests/test_engine.py's Harness, with the engine built from keyword arguments."""

    def __init__(self, listening: bool = False, text: str = SCRIPT, **engine_args: Any) -> None:
        super().__init__(listening=listening, text=text)
        self.engine = eng.Engine(self.script, listening=listening, **engine_args)


COURSE_FIELDS = {"course": "support-group", "course_version": 1, "course_position": 2, "session": 3,
                 "sessions_total": 16, "bus_stop": False}


# -- the course seams: intro and session fields ---------------------------------------------------


def test_the_intro_is_said_after_next_and_before_the_first_step():
    h = Box(intro=("course:session",))
    h.press("next")
    assert h.engine.playing == "course:session" and h.engine.state == eng.State.SPEAKING
    assert "step:welcome" not in h.played()
    h.at(3).finish_audio()
    assert h.engine.playing == "step:welcome"
    assert h.played() == ["course:session", "step:welcome"]
    assert [e["step"] for e in h.logs("step_started")] == ["welcome"]  # the intro is not a step


def test_without_an_intro_the_first_step_starts_at_once():
    h = Box()
    h.press("start")
    assert h.played() == ["step:welcome"]


def test_the_intro_is_said_once_per_circle_not_before_later_steps():
    h = Box(intro=("course:session",))
    h.press("start")
    h.at(3).finish_audio()
    h.at(5).finish_audio()
    h.at(6).press("next")  # on to breathe
    assert h.played() == ["course:session", "step:welcome", "step:breathe"]
    h.at(7).press("stop")
    h.at(8).press("next")  # finished -> idle
    h.at(9).press("next")  # the next circle says it again
    assert h.played()[-1] == "course:session"


def test_repeat_during_the_intro_says_it_again_and_next_goes_to_the_first_step():
    h = Box(intro=("course:session",))
    h.press("next")
    out = h.at(1).press("repeat")
    assert eng.Play("course:session") in out and h.engine.state == eng.State.SPEAKING
    assert h.logs("step_finished") == []
    h.at(2).finish_audio()
    assert h.engine.playing == "step:welcome"
    h2 = Box(intro=("course:session",))
    h2.press("next")
    out = h2.at(1).press("next")
    assert eng.Play("step:welcome") in out and h2.logs("step_finished") == []


def test_help_holds_the_intro_and_it_carries_on_after():
    h = Box(intro=("course:session",))
    h.press("next")
    h.at(1).press("help")
    out = h.at(30).press("help")
    assert eng.Play("course:session") in out  # said again from its start
    h.at(33).finish_audio()
    assert h.engine.playing == "step:welcome"


def test_session_fields_go_into_session_started_and_it_always_says_whether_it_is_a_rehearsal():
    h = Box(session_fields=COURSE_FIELDS)
    h.press("next")
    started = h.logs("session_started")[0]
    assert {k: started[k] for k in COURSE_FIELDS} == COURSE_FIELDS
    assert started["script"] == "test-circle" and started["rehearsal"] is False
    plain = Box()
    plain.press("next")
    assert plain.logs("session_started")[0]["rehearsal"] is False
    assert "course" not in plain.logs("session_started")[0]


# -- the script model: facilitator notes and the rehearsal messages --------------------------------

NOTED = SCRIPT.replace(
    "    core: true\n    say: Welcome.\n",
    "    core: true\n    title: Welcome\n    say: Welcome.\n"
    "    notes: [Greet each person by name., {pause: 1}, \"If someone is upset, sit with them.\"]\n",
).replace(
    "    prompt: Share, one at a time.\n",
    "    prompt: Share, one at a time.\n    title: Sharing round\n    notes: Nobody has to speak.\n",
)


def test_a_note_is_a_prompt_of_its_step_said_before_it():
    from device.script import Pause, parse_script

    script = parse_script(NOTED, "noted.yaml").script
    prompts = script.prompts()
    assert prompts["step:welcome:notes"] == ("Greet each person by name.", Pause(pause=1),
                                             "If someone is upset, sit with them.")
    assert prompts["step:share:notes"] == ("Nobody has to speak.",)
    ids = list(prompts)
    assert ids.index("step:welcome:notes") + 1 == ids.index("step:welcome")
    assert "step:breathe:notes" not in prompts


def test_a_bad_note_is_named_by_step_field_and_line():
    import pytest

    from device.script import ScriptError, parse_script

    bad = NOTED.replace("{pause: 1}", "{pause: 500}")
    with pytest.raises(ScriptError) as caught:
        parse_script(bad, "noted.yaml")
    assert caught.value.problems == [
        "step 1 'welcome', field notes.1 (line 11): pause must be more than 0 and at most 120 seconds"]


def test_the_rehearsal_end_message_names_the_steps_by_their_titles():
    from device.script import parse_script

    script = parse_script(NOTED, "noted.yaml").script
    assert script.prompts()["msg:rehearsal_done"] == (
        "That is the end of the rehearsal. You practised: Welcome, breathe, Sharing round, talk, gong.",)
    own = parse_script(NOTED + "messages:\n  rehearsal_done: Mwisho wa mazoezi. {steps}.\n", "x.yaml").script
    assert own.prompts()["msg:rehearsal_done"] == ("Mwisho wa mazoezi. Welcome, breathe, Sharing round, talk, gong.",)
    assert "msg:rehearsal_start" in script.prompts() and "msg:rehearsal_stopped" in script.prompts()


def test_validate_names_a_note_without_a_recording_in_a_circle_made_of_recordings(tmp_path):
    from device.commands.validate import prompt_problems
    from device.script import DEFAULT_MESSAGES, load_script

    messages = "\n".join(f"  {name}: {{audio: {name}.wav}}" for name in DEFAULT_MESSAGES)
    text = ("script: rec\nversion: 1\nlanguage: sw\nsteps:\n  - id: karibu\n"
            "    say: {audio: karibu.wav}\n    notes: Angalia kila mtu.\n" + f"messages:\n{messages}\n")
    (tmp_path / "rec.yaml").write_text(text, encoding="utf-8")
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    for name in [*DEFAULT_MESSAGES, "karibu"]:
        (recordings / f"{name}.wav").write_bytes(b"")
    problems = prompt_problems(load_script(tmp_path / "rec.yaml"), {})
    assert problems == ["Step 1 'karibu': facilitator note: has words but no recording, "
                        "and this circle has no voice: record it"]
    recorded = text.replace("notes: Angalia kila mtu.", "notes: {audio: note.wav}")
    (tmp_path / "rec.yaml").write_text(recorded, encoding="utf-8")
    assert prompt_problems(load_script(tmp_path / "rec.yaml"), {}) == [
        "Step 1 'karibu': facilitator note: the recording note.wav is not on the box: record it again"]
    (recordings / "note.wav").write_bytes(b"")
    assert prompt_problems(load_script(tmp_path / "rec.yaml"), {}) == []


# -- rehearsal in the engine -----------------------------------------------------------------------


def _rehearse(listening: bool = False, text: str = NOTED, **engine_args: Any) -> Box:
    h = Box(listening=listening, text=text, **engine_args)
    h.press("rehearse")
    return h


def _walk_to(h: Box, step_id: str) -> None:
    """Move the rehearsal on as a trainee would (each sound heard to its end, NEXT when the box
    waits) until step `step_id` begins; 10 virtual seconds per move."""
    for _ in range(60):
        if h.engine.step is not None and h.engine.step.id == step_id:
            return
        h.at(h.t + 10)
        if h.engine.playing is not None:
            h.finish_audio()
        elif h.engine.state in (eng.State.WAITING, eng.State.IN_ROUND):
            h.press("next")
    raise AssertionError(f"never reached step {step_id}")


def test_a_rehearsal_says_so_then_each_note_before_its_step():
    h = _rehearse()
    assert h.engine.playing == "msg:rehearsal_start" and h.engine.state == eng.State.SPEAKING
    h.at(5).finish_audio()
    assert h.engine.playing == "step:welcome:notes"
    h.at(15).finish_audio()
    assert h.engine.playing == "step:welcome"
    _walk_to(h, "share")
    assert h.engine.playing == "step:share:notes" and h.engine.state == eng.State.SPEAKING
    h.at(h.t + 5).finish_audio()
    assert h.engine.playing == "step:share" and h.engine.state == eng.State.IN_ROUND
    assert "step:breathe:notes" not in h.played()  # a step without a note starts at once


def test_a_circle_held_never_says_a_note():
    h = Box(text=NOTED)
    h.press("next")
    _walk_to(h, "gong")
    assert h.played()[0] == "step:welcome"
    assert not [s for s in h.played() if s.endswith(":notes") or "rehearsal" in s]


def test_a_rehearsal_has_no_course_intro_and_no_course_fields():
    h = _rehearse(intro=("course:session",), session_fields=COURSE_FIELDS)
    assert h.played() == ["msg:rehearsal_start"]
    started = h.logs("session_started")[0]
    assert started["rehearsal"] is True and "course" not in started and started["script"] == "test-circle"


def test_next_during_a_note_begins_the_step_and_repeat_says_the_note_again():
    h = _rehearse()
    h.at(2).finish_audio()
    out = h.at(3).press("repeat")
    assert eng.Play("msg:rehearsal_start") in out  # the lead-in again, from its start
    h.at(5).finish_audio()
    out = h.at(6).press("next")
    assert eng.Play("step:welcome") in out and h.logs("step_finished") == []


def test_simulated_turns_end_on_their_own_and_the_round_ends_after_a_few():
    h = _rehearse(text=NOTED.replace("turns: {count: 3,", "turns: {count: 12,"))
    _walk_to(h, "share")
    h.at(h.t + 5).finish_audio()  # the note
    h.at(h.t + 5).finish_audio()  # the round's prompt: turn 1 begins
    start = h.t
    assert h.engine.turn == 1 and h.engine.countdown(start + 5)["limit_s"] == eng.REHEARSAL_TURN_S
    h.at(start + eng.REHEARSAL_TURN_S - 0.1)
    assert h.logs("turn_ended") == []
    h.at(start + eng.REHEARSAL_TURN_S + 0.1)
    assert h.logs("turn_ended")[0]["reason"] == "simulated" and h.engine.playing == "bell:soft_bell"
    h.finish_audio()
    h.at(h.t + 3).press("next")  # NEXT ends a simulated turn too
    h.finish_audio()
    h.at(h.t + eng.REHEARSAL_TURN_S + 1)
    assert [e["reason"] for e in h.logs("turn_ended")] == ["simulated", "button", "simulated"]
    assert h.logs("round_ended")[-1] == {"step": "share", "turns": eng.REHEARSAL_TURNS, "reason": "count"}
    assert h.engine.state == eng.State.WAITING
    assert "bell:chime" not in h.played()  # no time limits on a turn nobody speaks in


def test_with_listening_the_trainee_speaking_takes_a_real_turn():
    h = _rehearse(listening=True)
    _walk_to(h, "share")
    h.at(h.t + 5).finish_audio()
    h.at(h.t + 5).finish_audio()  # turn 1 begins
    start = h.t
    h.speech(start + 2, start + 20)  # past the simulated turn's 15 s: the trainee has the turn
    assert h.logs("turn_ended") == []
    h.at(start + 20 + 3.1)  # end_on_silence_s 3, as in a circle held
    assert h.logs("turn_ended")[0]["reason"] == "silence"
    h.finish_audio()  # the bell: turn 2, nobody speaks
    second = h.t
    h.at(second + 12)  # a circle would pass this turn after 10 s of silence; a rehearsal simulates it
    assert len(h.logs("turn_ended")) == 1
    h.at(second + eng.REHEARSAL_TURN_S + 0.1)
    assert h.logs("turn_ended")[1]["reason"] == "simulated"


def test_a_timer_is_shortened_in_rehearsal():
    h = _rehearse()
    _walk_to(h, "talk")
    start = h.t
    assert h.engine.countdown(start)["limit_s"] == eng.REHEARSAL_TIMER_S
    h.at(start + 23.9)
    assert "bell:warn_bell" not in h.played()
    h.at(start + 24.1)  # 240 of 300 s in the circle: 24 of 30 s here
    assert "bell:warn_bell" in h.played()
    h.at(start + eng.REHEARSAL_TIMER_S + 0.1)
    assert h.logs("timer_ended") == [{"step": "talk"}] and h.engine.playing == "bell:end_bell"


def test_the_end_of_a_rehearsal_says_what_was_practised_and_logs_it():
    h = _rehearse()
    _walk_to(h, "gong")
    h.at(h.t + 1).finish_audio()
    h.at(h.t + 1).finish_audio()  # the bell step's two bells
    assert h.engine.state == eng.State.FINISHED and h.engine.playing == "msg:rehearsal_done"
    steps = ["welcome", "breathe", "share", "talk", "gong"]
    assert [e["step"] for e in h.logs("step_practised")] == steps
    assert [e["note_heard"] for e in h.logs("step_practised")] == [True, False, True, False, False]
    finished = h.logs("session_finished")
    assert len(finished) == 1 and finished[0]["completed"] is True and finished[0]["rehearsal"] is True
    assert finished[0]["steps_practised"] == steps and finished[0]["notes_heard"] == 2


def test_stop_during_a_rehearsal_says_it_stopped_and_logs_only_the_steps_walked():
    h = _rehearse()
    _walk_to(h, "share")
    h.at(h.t + 2).press("stop")
    assert h.engine.state == eng.State.FINISHED and h.engine.playing == "msg:rehearsal_stopped"
    assert "msg:rehearsal_done" not in h.played()
    finished = h.logs("session_finished")[0]
    assert finished["completed"] is False and finished["steps_practised"] == ["welcome", "breathe"]
    assert [e["step"] for e in h.logs("step_practised")] == ["welcome", "breathe"]


def test_a_note_cut_short_by_next_is_not_counted_as_heard():
    h = _rehearse()
    h.at(2).finish_audio()  # rehearsal_start; the welcome note begins
    h.at(3).press("next")
    h.at(5).press("stop")
    assert h.logs("session_finished")[0]["notes_heard"] == 0


def test_rehearse_while_a_circle_runs_is_ignored_and_the_next_circle_is_not_a_rehearsal():
    h = Box(text=NOTED)
    h.press("next")
    h.at(1).press("rehearse")
    assert h.logs("ignored")[-1] == {"action": "rehearse", "why": "a circle is already running"}
    assert h.engine.status()["rehearsal"] is False
    h.at(2).press("stop")
    h.at(3).press("rehearse")
    assert h.engine.status()["rehearsal"] is True
    h.at(4).press("stop")
    h.at(5).press("next")  # FINISHED -> idle
    h.at(6).press("next")
    assert [e["rehearsal"] for e in h.logs("session_started")] == [False, True, False]
    assert "rehearsal" not in h.logs("session_finished")[0]  # a circle held's end is as before
