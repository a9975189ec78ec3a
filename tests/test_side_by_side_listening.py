"""The side-by-side listening harness (bench/bench_side_by_side_listening.py) itself: the plain
0.7 s detector follows its rule, the scoring counts what it says, and on a generated circle with
known thinking pauses the plain detector ends turns inside them while Circlebox does not.
Behaviour only; the figures (delays, CPU) are in BENCHMARKS.md."""

from __future__ import annotations

import numpy as np
import pytest
from audio_fixtures import SPEAKERS, SR, Scene, build_circle, maker_for

from bench.bench_side_by_side_listening import (
    PlainSilenceDetector,
    circlebox_decisions,
    plain_decisions,
    score,
)
from device.listening import FRAME_BYTES, FRAME_S


class ScriptedVad:
    """Answers is_speech from a list of flags, one per frame."""

    def __init__(self, flags):
        self._flags = iter(flags)

    def is_speech(self, frame, rate):
        assert len(frame) == FRAME_BYTES and rate == 16000
        return next(self._flags)


def test_plain_detector_ends_a_turn_after_0_7_s_without_a_speech_frame():
    # silence first (no turn), 10 speech frames, 23 quiet (0.69 s: not enough), 5 speech,
    # 30 quiet (ends at the 24th: 0.72 s), 2 speech, 10 quiet (input ends: no decision)
    flags = [False] * 5 + [True] * 10 + [False] * 23 + [True] * 5 + [False] * 30
    flags += [True] * 2 + [False] * 10
    scene = Scene(audio=np.zeros(len(flags) * int(FRAME_S * SR), np.float32))
    decisions = plain_decisions(scene, vad=ScriptedVad(flags))
    assert decisions == [pytest.approx((5 + 10 + 23 + 5 + 24) * FRAME_S)]
    # one frame of speech is enough to open speech again (no start rule)
    det = PlainSilenceDetector(0.7, vad=ScriptedVad([True] + [False] * 24))
    assert [d for _ in range(25) if (d := det.process(b"\0" * FRAME_BYTES))] == [
        pytest.approx(25 * FRAME_S)]


def test_scoring_counts_false_missed_and_delayed_turn_ends():
    scene = Scene(
        audio=np.zeros(20 * SR, np.float32),
        utterances=[(1.0, 2.0, 0), (3.0, 4.0, 0), (10.0, 11.0, 1)],
        turns=[(1.0, 4.0), (10.0, 11.0)],
    )
    s = score([0.5, 2.8, 4.9, 6.0], scene)
    assert (s.turns, s.pauses) == (2, 1)
    assert s.false_ends == 1 and s.turns_cut == 1 and s.pauses_cut == 1
    assert s.ended == 1 and s.missed == 1  # turn 2 never ended before the file did
    assert s.delays == [pytest.approx(0.9)]
    assert s.extra_between == 2  # 6.0 after turn 1's end, 0.5 before the first turn


@pytest.fixture(scope="module")
def paused_circle(request):
    """Three turns of three utterances (espeak-ng voices, fan noise), with thinking pauses of
    1.2-1.8 s: longer than the plain detector's 0.7 s, shorter than the box's 3 s."""
    return build_circle(maker_for(request.config), seed=5, n_turns=3, speakers=SPEAKERS[1:4],
                        utterances_per_turn=(3, 3), pause_s=(1.2, 1.8))


def test_plain_detector_cuts_thinking_pauses_that_circlebox_waits_through(paused_circle):
    scene = paused_circle
    box = score(circlebox_decisions(scene), scene)
    plain = score(plain_decisions(scene), scene)
    assert box.pauses == plain.pauses == 6
    # Circlebox: every turn ends once, after its last word; no pause is taken for an end
    assert (box.false_ends, box.pauses_cut, box.missed, box.ended) == (0, 0, 0, 3)
    assert all(d > 0 for d in box.delays)
    # the plain detector also finds every end, but declares the turn over inside the pauses
    assert plain.missed == 0
    assert plain.pauses_cut >= plain.pauses - 1
    assert plain.turns_cut == 3
    # and it decides sooner after the true end: that is the trade it makes
    assert max(plain.delays) < min(box.delays)
