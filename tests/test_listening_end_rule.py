"""The conservative end rule of the Listener, with a scripted detector and frames of known level:
hysteresis, no back-dating, a margin that grows with the noise, "too noisy" on the meter, and a
noise floor that a quiet speaker cannot drag up. Real detectors on real voices are in
test_listening_real_rooms.py."""

from __future__ import annotations

import numpy as np
import pytest

from device.listening import (
    FRAME_S,
    Listener,
    MaybeSpeech,
    MaybeSpeechEnded,
    RoomNoiseChanged,
    SpeechEnded,
    SpeechStarted,
    UnsureSound,
    UnsureSoundEnded,
    listening_settings,
)
from device.listening.events import UNSURE_QUIET_S
from device.listening.listener import RoomNoise

# The base rule; frames here are often as loud as the room, which the soft margin (tested at
# the end) would lengthen.
SETTINGS = listening_settings({"soft_margin_s": 0.0})


class ScriptedDetector:
    """Answers each frame's speech probability from a list."""

    def __init__(self, probabilities):
        self._p = iter(probabilities)
        self.resets = 0

    def probability(self, frame):
        return next(self._p)

    def reset(self):
        self.resets += 1


def frame_at(level_db: float, seed: int = 0) -> bytes:
    """A 30 ms frame of white noise at `level_db` dBFS RMS."""
    x = np.random.default_rng(seed).standard_normal(480)
    x *= 10 ** (level_db / 20) / np.sqrt(np.mean(x * x))
    return (x * 32768).astype("<i2").tobytes()


def run(probabilities, levels, settings=SETTINGS):
    listener = Listener(settings, vad=ScriptedDetector(probabilities))
    events = []
    for i, level in enumerate(levels):
        for e in listener.process(frame_at(level, i), box_playing=False):
            events.append((i, e))
    return listener, events


def ends(events):
    return [e for _, e in events if isinstance(e, SpeechEnded)]


def test_end_is_dated_where_the_detector_became_sure_not_at_the_last_sure_speech():
    # 1 s of quiet room, 1 s of speech, 0.6 s "not sure" (a soft last syllable in noise), then
    # sure silence: the end is dated at the first sure-silent frame, 0.6 s after the speech.
    probs = [0.0] * 33 + [0.95] * 33 + [0.4] * 20 + [0.05] * 60
    _, events = run(probs, [-50.0] * len(probs))
    (end,) = ends(events)
    assert end.t == pytest.approx((33 + 33 + 20) * FRAME_S)


def test_not_sure_frames_never_end_speech():
    # probability hovering between leaving (0.3) and entering (0.5) for 4 s: still speech
    probs = [0.0] * 33 + [0.9] * 20 + [0.45, 0.35, 0.4, 0.31] * 33
    listener, events = run(probs, [-50.0] * len(probs))
    assert [type(e) for _, e in events] == [SpeechStarted]
    assert listener.in_speech


def test_entering_speech_needs_the_higher_threshold():
    # "not sure" frames alone (below speech_enter_prob) never start speech
    probs = [0.0] * 33 + [0.45] * 100
    listener, events = run(probs, [-50.0] * len(probs))
    assert events == [] and not listener.in_speech


def _end_in_room(noise_db: float) -> tuple[Listener, float]:
    """The end's date after the last speech frame, with the room at `noise_db`."""
    n_room, n_speech = 200, 40
    probs = [0.0] * n_room + [0.95] * n_speech + [0.0] * 150
    levels = [noise_db] * n_room + [noise_db + 10] * n_speech + [noise_db] * 150
    listener, events = run(probs, levels)
    (end,) = ends(events)
    return listener, end.t - (n_room + n_speech) * FRAME_S


def test_margin_grows_with_the_noise_and_the_box_says_when_it_is_too_noisy():
    quiet, quiet_extra = _end_in_room(-60.0)
    _, middle_extra = _end_in_room(-40.0)
    loud, loud_extra = _end_in_room(-34.0)
    too_loud, too_loud_extra = _end_in_room(-25.0)
    assert quiet_extra == pytest.approx(0.0, abs=1e-6)
    assert 0 < middle_extra < loud_extra <= SETTINGS.end_margin_s + FRAME_S
    assert too_loud_extra == pytest.approx(SETTINGS.too_noisy_margin_s, abs=FRAME_S)
    assert not loud.too_noisy and too_loud.too_noisy
    assert too_loud.status()["too_noisy"] is True
    assert quiet.status()["too_noisy"] is False
    # the meter: quiet enough for soft voices, loud (a soft voice may go unheard), too noisy
    assert [r.status()["room_noise"] for r in (quiet, loud, too_loud)] == [
        "quiet", "loud", "too_noisy"]
    assert _end_in_room(-46.0)[0].room_noise == RoomNoise.QUIET


def test_the_engine_is_told_when_the_room_becomes_too_noisy_and_quiet_again():
    # a fan at -25 dBFS switched on for 10 s, then off: one event each way, not one a frame
    levels = [-50.0] * 100 + [-25.0] * 333 + [-50.0] * 333
    _, events = run([0.0] * len(levels), levels)
    changes = [(i, e.too_noisy) for i, e in events if isinstance(e, RoomNoiseChanged)]
    assert [on for _, on in changes] == [True, False]
    assert 100 < changes[0][0] < 433 < changes[1][0]  # once the floor has learnt each


def test_a_quiet_speaker_who_never_pauses_does_not_become_the_room():
    # quiet room at -60 dBFS, then 10 s of soft speech at -45 dBFS without a dip
    probs = [0.0] * 100 + [0.9] * 333
    levels = [-60.0] * 100 + [-45.0] * 333
    listener, events = run(probs, levels)
    assert listener.noise_floor_db < -55
    assert listener.in_speech and ends(events) == []


def test_the_floor_still_learns_a_steady_noise_the_detector_calls_silence():
    probs = [0.0] * 400
    levels = [-60.0] * 100 + [-35.0] * 300  # a fan switched on
    listener, _ = run(probs, levels)
    assert listener.noise_floor_db > -37


def test_a_knock_after_an_end_does_not_reopen_speech_but_a_speaker_picking_up_does():
    # after speech has ended, 0.15 s of sure "speech" (a knock and its ring) starts nothing;
    # the same start rule as at first (most of speech_start_s) lets a speaker pick up again
    probs = [0.0] * 33 + [0.9] * 30 + [0.0] * 60 + [0.9] * 5 + [0.0] * 30
    _, events = run(probs, [-50.0] * len(probs))
    assert [type(e) for _, e in events] == [SpeechStarted, SpeechEnded]
    probs = [0.0] * 33 + [0.9] * 30 + [0.0] * 60 + [0.9] * 10
    _, events = run(probs, [-50.0] * len(probs))
    assert [type(e) for _, e in events] == [SpeechStarted, SpeechEnded, SpeechStarted]


def test_a_blip_inside_a_silence_does_not_start_the_silence_again():
    # speech, 0.3 s of sure silence, two frames of "maybe" (a cup put down), sure silence:
    # the end is dated where the silence first began
    probs = [0.0] * 33 + [0.95] * 33 + [0.05] * 10 + [0.45, 0.6] + [0.05] * 60
    _, events = run(probs, [-50.0] * len(probs))
    (end,) = ends(events)
    assert end.t == pytest.approx((33 + 33) * FRAME_S)


def test_a_soft_word_inside_a_silence_starts_it_again():
    # speech, 0.3 s of sure silence, 0.18 s of "not sure" (a soft word): the silence begins
    # again after the word
    probs = [0.0] * 33 + [0.95] * 33 + [0.05] * 10 + [0.4] * 6 + [0.05] * 60
    _, events = run(probs, [-50.0] * len(probs))
    (end,) = ends(events)
    assert end.t == pytest.approx((33 + 33 + 10 + 6) * FRAME_S)


def test_the_detector_is_started_afresh_after_the_box_spoke():
    det = ScriptedDetector([0.0] * 20)
    listener = Listener(SETTINGS, vad=det)
    for playing in [False] * 5 + [True] * 5 + [False] * 30:
        listener.process(frame_at(-50), box_playing=playing)
    assert det.resets == 1


END_ON_SILENCE_S = 3.0
SOFT = listening_settings({"soft_margin_s": 1.0})
SOFT_OFF = SETTINGS


def _thinking_pause(voice_over_floor_db: float, settings):
    """A speaker in a -40 dBFS room: 1.2 s of speech `voice_over_floor_db` over the room, a
    3 s pause the detector is sure is silence, then she goes on. Returns the end of speech
    dated at the pause, and whether an engine waiting `end_on_silence_s` after it would have
    ended her turn before she was heard again."""
    room, speech, pause = 200, 40, 100
    probs = [0.0] * room + [0.95] * speech + [0.0] * pause + [0.95] * 20 + [0.0] * 40
    voice = -40.0 + voice_over_floor_db
    levels = ([-40.0] * room + [voice] * speech + [-40.0] * pause + [voice] * 20
              + [-40.0] * 40)
    _, events = run(probs, levels, settings)
    end = ends(events)[0]
    heard_again = next((i + 1) * FRAME_S for i, e in events
                       if isinstance(e, SpeechStarted) and e.t > end.t)
    return end, end.t + END_ON_SILENCE_S <= heard_again


def test_a_soft_speakers_thinking_pause_is_not_taken_for_her_end():
    # 3 dB over the room: her soft words may be unheard, so the box waits soft_margin_s longer
    _, cut_without = _thinking_pause(3.0, SOFT_OFF)
    end, cut_with = _thinking_pause(3.0, SOFT)
    assert cut_without, "the base rule alone ends this pause (the case the margin is for)"
    assert not cut_with
    assert end.t == pytest.approx((200 + 40) * FRAME_S + 1.0, abs=0.2)


def test_a_loud_speakers_end_is_not_delayed():
    # 15 dB over the room: every word is heard, the end is dated as without the margin
    end_off, _ = _thinking_pause(15.0, SOFT_OFF)
    end_on, _ = _thinking_pause(15.0, SOFT)
    assert end_on.t == end_off.t


def test_each_utterance_is_judged_on_its_own_loudness():
    # a soft utterance, then a loud one: the loud one's end gets no soft margin
    probs = ([0.0] * 200 + [0.95] * 40 + [0.0] * 100 + [0.95] * 40 + [0.0] * 100)
    levels = ([-40.0] * 200 + [-37.0] * 40 + [-40.0] * 100 + [-25.0] * 40 + [-40.0] * 100)
    _, soft_then_loud = run(probs, levels, SOFT)
    _, off = run(probs, levels, SOFT_OFF)
    assert ends(soft_then_loud)[0].t > ends(off)[0].t
    assert ends(soft_then_loud)[1].t == ends(off)[1].t


# -- a half-heard voice after an end (MaybeSpeech) -------------------------------------------


def _after_an_end(tail_probs, tail_levels, room_db=-45.0):
    """1 s of room, 1 s of clear speech, 1 s of sure silence (the end), then `tail_*`."""
    probs = [0.0] * 33 + [0.95] * 33 + [0.05] * 33 + list(tail_probs)
    levels = [room_db] * 33 + [room_db + 15] * 33 + [room_db] * 33 + list(tail_levels)
    return run(probs, levels)


def maybes(events):
    return [(i, e) for i, e in events if isinstance(e, MaybeSpeech | MaybeSpeechEnded)]


def test_a_voice_half_heard_after_an_end_is_reported_and_then_its_silence():
    # her soft words go on after the end: "not sure" frames 5 dB over the room for 0.6 s
    _, events = _after_an_end([0.4] * 20 + [0.05] * 40, [-40.0] * 20 + [-45.0] * 40)
    (_, start), (i_end, end) = maybes(events)
    assert isinstance(start, MaybeSpeech) and start.t == pytest.approx(99 * FRAME_S)
    assert isinstance(end, MaybeSpeechEnded)
    assert end.t == pytest.approx(119 * FRAME_S)  # the silence counts from her last half-heard frame
    assert i_end > 119  # reported a hangover later, dated back to where the quiet began
    assert [type(e) for _, e in events].count(SpeechStarted) == 1  # not a start of speech


def sounds(events):
    return [(i, e) for i, e in events if isinstance(e, UnsureSound | UnsureSoundEnded)]


def test_each_sound_after_an_end_is_reported_at_once_and_its_end_after_a_quiet():
    # a knock 0.15 s long, 7 dB over the room, 1 s after the end of speech: too short to be a
    # voice (no MaybeSpeech), but the engine hears of it at its first frame, and of its end
    # when UNSURE_QUIET_S of sure silence have followed it
    _, events = _after_an_end([0.05] * 10 + [0.45] * 5 + [0.05] * 40,
                              [-45.0] * 10 + [-38.0] * 5 + [-45.0] * 40)
    (i_start, start), (i_end, end) = sounds(events)
    assert isinstance(start, UnsureSound) and start.t == pytest.approx(109 * FRAME_S)
    assert i_start == 109  # said on the frame itself, not later
    quiet = round(UNSURE_QUIET_S / FRAME_S)
    assert isinstance(end, UnsureSoundEnded) and i_end == 113 + quiet
    assert end.t == pytest.approx((113 + quiet + 1) * FRAME_S)
    assert maybes(events) == []


def test_a_sound_at_the_rooms_own_level_or_sure_silence_is_not_reported():
    _, events = _after_an_end([0.45] * 10 + [0.05] * 30, [-44.5] * 10 + [-38.0] * 30)
    assert sounds(events) == []


def test_a_speaker_picking_up_ends_the_sound_with_her_speech():
    _, events = _after_an_end([0.45] * 3 + [0.95] * 30, [-38.0] * 3 + [-30.0] * 30)
    kinds = [type(e) for _, e in events]
    assert kinds[-1] is SpeechStarted and UnsureSound in kinds
    assert UnsureSoundEnded not in kinds  # speech supersedes the sound: no end is sent


def test_a_cup_or_a_chair_after_an_end_is_not_a_half_heard_voice():
    # 0.15 s of "maybe" (a knock): shorter than MAYBE_S
    _, events = _after_an_end([0.45] * 5 + [0.05] * 60, [-38.0] * 5 + [-45.0] * 60)
    assert maybes(events) == []


def test_a_maybe_at_the_rooms_own_level_is_not_a_voice():
    # "not sure" frames no louder than the room (a fan the detector is unsure of, a far room)
    _, events = _after_an_end([0.4] * 30 + [0.05] * 30, [-44.5] * 30 + [-45.0] * 30)
    assert maybes(events) == []


def test_a_frame_far_above_the_room_is_never_sure_silence():
    # a voice the detector hears only as p 0.2, its syllables 17 dB above a quiet room, keeps
    # speech open; the same answers at the room's level are sure silence, and speech ends
    syllables = [-33.0, -33.0, -33.0, -48.0] * 15
    probs = [0.0] * 33 + [0.95] * 20 + [0.2] * len(syllables)
    listener, events = run(probs, [-50.0] * 53 + syllables)
    assert ends(events) == [] and listener.in_speech
    listener, events = run(probs, [-50.0] * 53 + [-49.0] * len(syllables))
    assert len(ends(events)) == 1


def test_the_voice_check_says_how_far_the_last_voice_stood_out_of_the_room():
    """The meter's voice check: after each utterance of half a second or more, how far it stood
    out of the room's noise; a knock too short to be a voice leaves the last one shown."""
    from device.listening import CLEAR_VOICE_DB, heard_clearly

    room, clear, soft, knock, after = 100, 60, 60, 14, 120
    probs = ([0.0] * room + [0.95] * clear + [0.0] * after + [0.95] * soft + [0.0] * after
             + [0.95] * knock + [0.0] * after)
    levels = ([-50.0] * room + [-30.0] * clear + [-50.0] * after + [-42.0] * soft
              + [-50.0] * after + [-35.0] * knock + [-50.0] * after)
    listener = Listener(SETTINGS, vad=ScriptedDetector(probs))
    shown, ended = [], []
    for i, level in enumerate(levels):
        got = listener.process(frame_at(level, i), box_playing=False)
        if any(isinstance(e, SpeechEnded) for e in got):
            shown.append(listener.status()["last_voice_db"])
            ended += [e for e in got if isinstance(e, SpeechEnded)]
    assert listener.status()["clear_voice_db"] == CLEAR_VOICE_DB
    # each end of speech carries what the meter shows: the engine judges turns by the same
    assert [e.voice_db for e in ended] == [shown[0], shown[1], None]
    assert heard_clearly(ended[0].voice) and not heard_clearly(ended[1].voice)
    assert not heard_clearly(ended[2].voice)  # a knock: too short to say anything of a voice
    # a clear voice 20 dB over the room, a soft one 8 dB over, then a knock that shows nothing new
    assert shown[0] == pytest.approx(20.0, abs=1.0) and shown[0] >= CLEAR_VOICE_DB
    assert shown[1] == pytest.approx(8.0, abs=1.0) and shown[1] < CLEAR_VOICE_DB
    assert len(shown) == 3 and shown[2] == shown[1]
    # how long ago the soft voice ended, in audio time: the meter drops an old one
    age = listener.status()["last_voice_age_s"]
    assert age == pytest.approx((after + knock + after) * FRAME_S, abs=0.2)
    fresh = Listener(SETTINGS, vad=ScriptedDetector([0.0] * 10))
    for i in range(10):
        fresh.process(frame_at(-50.0, i), box_playing=False)
    assert fresh.status()["last_voice_db"] is None and fresh.status()["last_voice_age_s"] is None


def test_the_settings_only_webrtc_uses_change_nothing_with_a_detector_that_hears_noise_apart():
    """`config_sections.WEBRTC_ONLY` is what the admin page puts under "For the WebRTC detector
    only": with a probability detector (Silero) the listener decides the same whatever they
    are; with webrtc's yes/no the level gate does change what starts speech."""
    from device.config_sections import WEBRTC_ONLY

    # a soft voice 4 dB over a -40 dBFS room, sure to the detector
    probs = [0.0] * 100 + [0.95] * 60 + [0.0] * 150
    levels = [-40.0] * 100 + [-36.0] * 60 + [-40.0] * 150
    extreme = {"noise_margin_db": 40.0, "vad_aggressiveness": 0}
    assert set(extreme) == set(WEBRTC_ONLY)
    _, base = run(probs, levels)
    assert ends(base)  # heard, and ended
    for key, value in extreme.items():
        _, changed = run(probs, levels, listening_settings({"soft_margin_s": 0.0, key: value}))
        assert changed == base, key

    class YesNo:  # webrtcvad's answer: speech or not
        def __init__(self, answers):
            self._a = iter(answers)

        def is_speech(self, frame, rate):
            return next(self._a) > 0.5

    def webrtc_run(margin_db):
        settings = listening_settings({"soft_margin_s": 0.0, "noise_margin_db": margin_db})
        listener = Listener(settings, vad=YesNo(probs))
        return [e for i, level in enumerate(levels)
                for e in listener.process(frame_at(level, i), box_playing=False)]

    assert ends(list(enumerate(webrtc_run(0.0)))) and not webrtc_run(40.0)
