"""Soak, short form: circles back to back in virtual time with memory and file handles sampled.
The long form (an eight-hour day, with and without room audio) is `python -m bench.soak [--mic]`
or `pytest -m slow tests/test_soak.py`; its figures are in BENCHMARKS.md ("## Soak")."""

from __future__ import annotations

import pytest

from bench.soak import FD_BOUND, RSS_BOUND_MB, day_of_events, run_soak


def test_a_day_of_events_is_circles_back_to_back():
    events, circles = day_of_events(8, seed=3)
    assert circles >= 10
    assert [e["t"] for e in events] == sorted(e["t"] for e in events)
    assert events[-1]["t"] < 8 * 3600
    buttons = {e["button"] for e in events if "button" in e}
    assert {"next", "pause", "help", "repeat"} <= buttons  # not only NEXT: pauses, help, repeats, volume


def check(result, hours: float) -> None:
    assert result.circles_started >= 2
    assert result.circles_finished == result.circles_started, "a circle got stuck"
    assert result.completed == result.circles_started
    assert result.final_state in ("finished", "idle")
    assert len(result.samples) >= int(hours)
    assert result.rss_growth_mb <= RSS_BOUND_MB
    assert result.fd_growth <= FD_BOUND
    assert result.passed


def test_two_hours_of_circles_do_not_grow_or_stick(rendered_default, tmp_path):
    check(run_soak(rendered_default, hours=2, seed=5, work=tmp_path), 2)


def test_room_audio_drives_the_listener_through_circles(rendered_default, tmp_path):
    result = run_soak(rendered_default, hours=1.6, seed=6, work=tmp_path, mic=True)
    assert result.heard["speech_started"] > 50 and result.heard["speech_ended"] > 50
    check(result, 1.6)


@pytest.mark.slow
@pytest.mark.parametrize("mic", [False, True])
def test_eight_hour_day(rendered_default, tmp_path, mic):
    check(run_soak(rendered_default, hours=8, seed=1, work=tmp_path, mic=mic), 8)
