"""How clearly the box heard a voice (issue 13): the levels an utterance's sure speech stood over
the room's noise, added up over a turn, and the line under which the box leaves the end of the
turn to the facilitator (`heard_clearly`)."""

from __future__ import annotations

from device.listening import CLEAR_VOICE_DB, VoiceLevels, heard_clearly


def test_a_voice_is_judged_by_its_loud_part_once_there_is_enough_of_it():
    assert VoiceLevels.steady(20.0, 1.0).level_db == 20.0
    assert VoiceLevels.steady(20.0, 0.3).level_db is None  # under half a second: not measured
    assert VoiceLevels().level_db is None and not heard_clearly(VoiceLevels())


def test_a_turns_utterances_add_up():
    soft, word = VoiceLevels.steady(10.0, 4.0), VoiceLevels.steady(22.0, 0.3)
    assert (soft + word).frames == soft.frames + word.frames == (word + soft).frames
    assert (soft + word).level_db == 22.0  # a loud word in 4 s: more than 2 % of the frames
    assert (VoiceLevels.steady(10.0, 60.0) + word).level_db == 10.0  # one in 60 s is not
    assert heard_clearly(soft + word) and not heard_clearly(soft)


def test_the_line_is_the_meters():
    assert heard_clearly(VoiceLevels.steady(CLEAR_VOICE_DB, 1.0))
    assert not heard_clearly(VoiceLevels.steady(CLEAR_VOICE_DB - 0.5, 1.0))
    assert VoiceLevels.steady(80.0, 1.0).level_db == 50.0  # clipped to the range kept
