"""Voice activity on real speech (Piper and espeak-ng voices) in noisy, reverberant rooms."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from audio_fixtures import (
    NOISES,
    Speaker,
    build_circle,
    build_noise_only,
    maker_for,
    run_listener,
    turn_end_decisions,
)

from device.listening import (
    CLEAR_VOICE_DB,
    FRAME_BYTES,
    FRAME_S,
    Listener,
    SpeechEnded,
    SpeechStarted,
    listening_settings,
)


@pytest.fixture(scope="session")
def speech_maker(request):
    return maker_for(request.config)


SETTINGS = listening_settings({})
END_ON_SILENCE_S = 3.0  # the default turns.end_on_silence_s


def _overlaps(a0, a1, b0, b1) -> bool:
    return a0 < b1 and b0 < a1


def _check_circle(scene, run):
    segs = run.segments()
    assert segs, "no speech detected at all"
    # every detected segment is real speech (reverb may carry it a little past the end)
    for s0, s1 in segs:
        assert any(_overlaps(s0, s1, u0, u1 + 0.3) for u0, u1, _ in scene.utterances), (s0, s1)
    # every turn is heard
    for t0, t1 in scene.turns:
        assert any(_overlaps(s0, s1, t0, t1) for s0, s1 in segs), (t0, t1)
    # the engine (waiting end_on_silence_s after SpeechEnded) ends each turn once, after it is
    # really over, never inside a thinking pause of up to 2 s
    decisions = turn_end_decisions(run, END_ON_SILENCE_S, [t0 for t0, _ in scene.turns])
    for t0, t1 in scene.turns:
        inside = [d for d in decisions if t0 <= d < t1]
        assert not inside, f"turn {t0:.2f}-{t1:.2f} ended inside a pause at {inside}"
        after = [d for d in decisions if t1 <= d < t1 + END_ON_SILENCE_S + 1.5]
        assert len(after) == 1, (t0, t1, decisions)
    # nothing starts while the box plays or in its echo
    for p0, p1 in scene.playing:
        assert not [
            e for _, e in run.of(SpeechStarted) if p0 - 0.1 <= e.t < p1 + SETTINGS.self_mute_tail_s
        ]


@pytest.mark.parametrize("noise", NOISES)
@pytest.mark.parametrize("seed", [1, 2])
def test_turns_in_a_noisy_room(speech_maker, noise, seed):
    scene = build_circle(speech_maker, seed=seed, n_turns=6, noises=(noise,))
    run = run_listener(Listener(SETTINGS), scene)
    _check_circle(scene, run)


def test_all_noises_at_once_with_the_box_prompting(speech_maker):
    scene = build_circle(
        speech_maker, seed=5, n_turns=10, noises=NOISES, noise_level_db=-50, prompt_every=2
    )
    assert len(scene.playing) >= 3
    run = run_listener(Listener(SETTINGS), scene)
    _check_circle(scene, run)


def test_soft_voices_far_from_the_box_in_a_loud_room(speech_maker):
    """Quiet talkers (-34 dBFS) with fan, rain, hum and babble together (about -44 dBFS):
    about 10 dB of SNR. Their thinking pauses must still not end their turns."""
    far = (
        Speaker("grace", "espeak", "en-sc+f2", 175, 60, -34),
        Speaker("amina", "espeak", "en-us+f3", 150, 70, -34),
        Speaker("joe", "piper", speed=1.1, level_db=-34),
    )
    scene = build_circle(
        speech_maker, seed=21, n_turns=6, noises=NOISES, noise_level_db=-50, speakers=far
    )
    run = run_listener(Listener(SETTINGS), scene)
    _check_circle(scene, run)


def test_the_box_prompt_never_counts_as_speech(speech_maker):
    scene = build_circle(speech_maker, seed=3, n_turns=5, noises=("fan",), prompt_every=1)
    run = run_listener(Listener(SETTINGS), scene)
    _check_circle(scene, run)
    # and without the mute, the same prompts *would* count: the test can see the difference
    unmuted = scene.__class__(audio=scene.audio, utterances=scene.utterances, turns=scene.turns)
    run2 = run_listener(Listener(SETTINGS), unmuted)
    starts = [e.t for _, e in run2.of(SpeechStarted)]
    assert any(any(p0 <= t < p1 for p0, p1 in scene.playing) for t in starts)


@pytest.mark.parametrize("kind", [*NOISES, "hum100"])
@pytest.mark.parametrize("level", [None, -40.0])
def test_noise_alone_never_starts_speech(speech_maker, kind, level):
    scene = build_noise_only(speech_maker, kind, seconds=60, level_db=level)
    listener = Listener(SETTINGS)
    run = run_listener(listener, scene)
    if kind == "babble" and level is not None:
        # Six voices next door at -40 dBFS are as loud as a soft voice in the circle, and
        # Silero hears voices: it may hold speech open now and then (the box then waits longer;
        # it never ends a turn early). Most of the minute must still be heard as no one.
        talk = sum(e.duration_s for _, e in run.of(SpeechEnded))
        assert talk < 0.2 * scene.duration_s
        return
    assert run.events == []
    assert listener.noise_floor_db == pytest.approx(listener.level_db, abs=12)


@pytest.mark.parametrize("kind", ["fan", "rain", "hum", "hum100"])
def test_noise_switching_on_is_forgotten_within_seconds(speech_maker, kind):
    """A fan or generator starting up is a sudden loud sound: it may count once, briefly, but
    the floor catches up and it never holds the room "in speech". (Babble switching on is
    talk, and is heard as talk until it dips: a documented limitation.)"""
    scene = build_noise_only(speech_maker, kind, seconds=40, level_db=-40, onset_s=10)
    run = run_listener(Listener(SETTINGS), scene)
    segs = run.segments()
    assert len(segs) <= 1
    for s0, s1 in segs:
        assert s0 >= 9.9 and s1 - s0 < 10.0


def _frames(level_db: float, n: int, rng, speechy: bool = False) -> list[bytes]:
    out = []
    for _ in range(n):
        if speechy:
            t = np.arange(480) / 16000
            x = sum(
                np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (220, 440, 660, 880, 1320)
            )
        else:
            x = rng.standard_normal(480)
        x = x / np.sqrt(np.mean(x * x)) * 10 ** (level_db / 20)
        out.append((x * 32767).astype("<i2").tobytes())
    return out


class ScriptedVad:
    """A stand-in VAD that believes whatever the test says (to test the smoothing alone)."""

    def __init__(self):
        self.answer = False

    def is_speech(self, frame, rate):
        return self.answer


def test_smoothing_backdating_and_hangover():
    vad = ScriptedVad()
    listener = Listener(SETTINGS, vad=vad, start_t=100.0)
    rng = np.random.default_rng(0)
    quiet, loud = _frames(-70, 1, rng)[0], _frames(-20, 1, rng)[0]
    events = []
    for _ in range(50):
        events += listener.process(quiet, False)
    assert listener.t == pytest.approx(100.0 + 50 * FRAME_S)
    # 5 speech frames (0.15 s) do not start speech
    vad.answer = True
    for _ in range(5):
        events += listener.process(loud, False)
    vad.answer = False
    for _ in range(20):
        events += listener.process(quiet, False)
    assert events == []
    # 1 s of speech starts, back-dated to its first frame
    first = listener.t
    vad.answer = True
    for _ in range(34):
        events += listener.process(loud, False)
    assert events == [SpeechStarted(t=pytest.approx(first))]
    end = listener.t
    vad.answer = False
    for _ in range(round(SETTINGS.speech_end_hangover_s / FRAME_S) - 1):
        events += listener.process(quiet, False)
    assert len(events) == 1 and listener.in_speech  # still within the hangover
    events += listener.process(quiet, False)
    ended = events[1]
    assert isinstance(ended, SpeechEnded)
    assert (ended.t, ended.duration_s) == (pytest.approx(end), pytest.approx(end - first))
    assert ended.voice_db >= CLEAR_VOICE_DB  # 1 s of a voice far above the room: measured, clear
    assert not listener.in_speech


def test_mute_while_playing_and_for_the_tail():
    vad = ScriptedVad()
    listener = Listener(SETTINGS, vad=vad)
    quiet, loud = (
        _frames(-70, 1, np.random.default_rng(1))[0],
        _frames(-20, 1, np.random.default_rng(1))[0],
    )
    events = []
    for _ in range(30):  # a quiet room first
        events += listener.process(quiet, False)
    vad.answer = True
    for _ in range(100):  # the box plays: loud "speech" at the mic
        events += listener.process(loud, True)
    tail = round(SETTINGS.self_mute_tail_s / FRAME_S)
    for _ in range(tail):  # echo tail
        events += listener.process(loud, False)
    assert events == [] and not listener.in_speech
    stop = listener.t
    for _ in range(15):
        events += listener.process(loud, False)
    assert isinstance(events[0], SpeechStarted) and events[0].t >= stop - 1e-9


def test_the_box_starting_to_play_ends_speech_where_it_was():
    vad = ScriptedVad()
    listener = Listener(SETTINGS, vad=vad)
    quiet, loud = (
        _frames(-70, 1, np.random.default_rng(1))[0],
        _frames(-20, 1, np.random.default_rng(1))[0],
    )
    events = []
    for _ in range(30):
        events += listener.process(quiet, False)
    vad.answer = True
    for _ in range(40):
        events += listener.process(loud, False)
    cut = listener.t
    events += listener.process(loud, True)
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    assert events[1].t == pytest.approx(cut)


def test_same_audio_same_decisions(speech_maker):
    scene = build_circle(speech_maker, seed=2, n_turns=3, noises=("rain",))
    assert (
        run_listener(Listener(SETTINGS), scene).events
        == run_listener(Listener(SETTINGS), scene).events
    )


def test_frames_must_be_30ms():
    listener = Listener(SETTINGS)
    with pytest.raises(ValueError, match="960 bytes"):
        listener.process(b"\0" * 100, False)


def test_without_commands_no_audio_is_kept(speech_maker):
    """Pacing alone holds no frame after it is processed (the pre-roll ring is empty)."""
    scene = build_circle(speech_maker, seed=1, n_turns=2, noises=("fan",))
    listener = Listener(SETTINGS)
    run_listener(listener, scene)
    gc.collect()
    assert listener._preroll.maxlen == 0
    held = [
        o
        for o in gc.get_referents(*vars(listener).values())
        if isinstance(o, bytes) and len(o) == FRAME_BYTES
    ]
    assert held == []
