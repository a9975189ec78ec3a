"""Any sequence of presses, sounds ending, speech and time passing: the session engine keeps its
books straight. Every `session_finished` closes exactly one `session_started`, and no step is
started or finished outside a session. (The power-cut harness found a stop during HELP after a
circle had ended logging a second `session_finished`; this property makes that a test.)"""

from __future__ import annotations

from fuzzing import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from device import engine as eng
from device.actions import ACTIONS
from device.listening.events import VoiceLevels
from device.script import packaged_scripts_dir, parse_script

SCRIPT = parse_script((packaged_scripts_dir() / "three-step-circle.yaml").read_text(encoding="utf-8"),
                      "three-step-circle.yaml").script
PRESSES = [*sorted(ACTIONS), "goto:share", "goto:close", "goto:nope", "volume:35", "volume:0"]
FUZZ = fuzz_settings(300)

events = st.one_of(
    st.sampled_from(PRESSES).map(lambda a: ("press", a)),
    st.just(("audio_end", None)),
    st.floats(min_value=0.01, max_value=400).map(lambda dt: ("wait", dt)),
    st.tuples(st.floats(min_value=0.1, max_value=200),  # how long, and how clearly heard
              st.one_of(st.none(), st.floats(min_value=0, max_value=40))).map(lambda s: ("speech", s)),
    st.booleans().map(lambda on: ("listening", on)),
    st.booleans().map(lambda on: ("unsure", on)),  # a sound the listener cannot yet tell from a voice
    st.booleans().map(lambda on: ("maybe", on)),
    st.booleans().map(lambda on: ("too_noisy", on)),
)


def run(sequence, listening: bool) -> list[tuple[str, dict]]:
    engine = eng.Engine(SCRIPT, listening=listening)
    t = 0.0
    log: list[tuple[str, dict]] = []

    def feed(event) -> None:
        for cmd in engine.handle(event, t):
            if isinstance(cmd, eng.Log):
                log.append((cmd.event, dict(cmd.fields)))

    for kind, value in sequence:
        if kind == "press":
            feed(eng.Press(value))
        elif kind == "audio_end" and engine.playing is not None:
            feed(eng.AudioFinished(engine.playing))
        elif kind == "wait":
            target = t + value
            while (deadline := engine.next_deadline()) is not None and deadline <= target:
                t = max(t, deadline)
                feed(eng.Tick())
            t = target
        elif kind == "speech":
            duration, voice_db = value
            feed(eng.SpeechStarted(t))  # when speech really happened, on the engine's clock
            t += duration
            voice = VoiceLevels() if voice_db is None else VoiceLevels.steady(voice_db, duration)
            feed(eng.SpeechEnded(t, duration, voice))
        elif kind == "listening":
            feed(eng.ListeningChanged(value))
        elif kind == "unsure":
            feed(eng.UnsureSound(t) if value else eng.UnsureSoundEnded(t))
        elif kind == "maybe":
            feed(eng.MaybeSpeech(t) if value else eng.MaybeSpeechEnded(t))
        elif kind == "too_noisy":
            feed(eng.RoomNoiseChanged(t, too_noisy=value))
        elif kind == "look":  # a test's own check at this point: value(engine, log so far)
            value(engine, log)
    return log


def check_books(log: list[tuple[str, dict]]) -> None:
    open_session = False
    for event, _fields in log:
        if event == "session_started":
            assert not open_session, "a session started inside another"
            open_session = True
        elif event == "session_finished":
            assert open_session, "session_finished without a session (a second end, or a phantom one)"
            open_session = False
        elif event in ("step_started", "step_finished", "round_started", "turn_started"):
            assert open_session, f"{event} outside a session"


@FUZZ
@given(st.lists(events, max_size=60), st.booleans())
def test_sessions_open_and_close_exactly_once(sequence, listening):
    check_books(run(sequence, listening))


@FUZZ
@given(st.lists(events, max_size=40), st.booleans(), st.sampled_from(["help", "pause"]))
def test_next_out_of_help_or_pause_carries_on_and_never_ends_a_step(sequence, listening, hold):
    before: dict = {}

    def remember(engine: eng.Engine, log: list) -> None:
        before.update(where=(engine.state, engine.step_index, engine.turn), logged=len(log))

    def compare(engine: eng.Engine, log: list) -> None:
        if before["where"][0] not in (eng.State.SPEAKING, eng.State.WAITING, eng.State.IN_ROUND, eng.State.TIMER):
            return
        assert (engine.state, engine.step_index, engine.turn) == before["where"]
        ended = [e for e, _ in log[before["logged"]:] if e in ("step_finished", "turn_ended", "round_ended")]
        assert ended == []

    run([*sequence, ("look", remember), ("press", hold), ("wait", 30.0), ("press", "next"), ("look", compare)],
        listening)


def test_stop_during_help_after_the_circle_ended_does_not_end_it_twice():
    """Regression: FINISHED -> help -> stop logged session_finished a second time."""
    seq = [("press", "next"), ("press", "stop"), ("press", "help"), ("press", "stop")]
    log = run(seq, listening=False)
    assert [e for e, _ in log].count("session_finished") == 1
    check_books(log)


def test_previous_or_goto_during_help_while_idle_start_a_real_session():
    """Regression: idle -> help -> previous/goto started steps with no session_started."""
    for action in ("previous", "goto:share", "skip"):
        log = run([("press", "help"), ("press", action)], listening=False)
        check_books(log)
