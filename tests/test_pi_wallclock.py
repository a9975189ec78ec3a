"""device/wallclock.py: time that never goes backwards on a box with no RTC."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from device.wallclock import ClockSetRefused, WallClock

BUILD = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
DAY = 86400.0


class Sources:
    """Injected system clock, monotonic clock and NTP flag."""

    def __init__(self, system: float, synced: bool = True) -> None:
        self.system = system
        self.mono = 1000.0
        self.synced = synced
        self.boot = "boot-1"

    def advance(self, seconds: float) -> None:
        self.system += seconds
        self.mono += seconds

    def clock(self, path, **kw) -> WallClock:
        return WallClock(
            path,
            system_time=lambda: self.system,
            monotonic=lambda: self.mono,
            synced=lambda: self.synced,
            boot_id=lambda: self.boot,
            build_epoch=BUILD,
            **kw,
        )


def stored(path) -> float:
    return json.loads(path.read_text())["high_water"]


def test_good_clock_is_trusted_and_utc(tmp_path):
    src = Sources(BUILD + 10 * DAY)
    when, trusted = src.clock(tmp_path / "clock.json").now()
    assert trusted
    assert when == datetime.fromtimestamp(BUILD + 10 * DAY, UTC)
    assert when.tzinfo is UTC


def test_before_build_date_is_untrusted_and_clamped(tmp_path):
    src = Sources(BUILD - 300 * DAY)  # a Pi that booted at 1970 or an old fake-hwclock
    reading = src.clock(tmp_path / "clock.json").read()
    assert not reading.trusted
    assert "build date" in reading.reason
    assert reading.time.timestamp() == BUILD


def test_ntp_unknown_is_untrusted(tmp_path):
    src = Sources(BUILD + DAY, synced=False)
    when, trusted = src.clock(tmp_path / "clock.json").now()
    assert not trusted
    assert when.timestamp() == BUILD + DAY


def test_never_goes_backwards_across_a_restart(tmp_path):
    path = tmp_path / "clock.json"
    src = Sources(BUILD + 20 * DAY)
    first = src.clock(path)
    t1, _ = first.now()
    src.advance(30)
    first.checkpoint()
    assert stored(path) == BUILD + 20 * DAY + 30

    # Power cut; the box boots with its clock five days behind.
    src.system -= 5 * DAY
    src.mono = 5.0
    second = src.clock(path)
    t2, trusted = second.now()
    assert t2.timestamp() >= BUILD + 20 * DAY + 30 > t1.timestamp()
    assert not trusted
    # Time keeps moving at the monotonic rate from the mark instead of freezing.
    src.advance(10)
    t3, _ = second.now()
    assert t3.timestamp() == t2.timestamp() + 10

    # NTP arrives and puts the clock right (ahead of the mark): trusted again, still monotone.
    src.system = BUILD + 25 * DAY
    t4, trusted = second.now()
    assert trusted and t4.timestamp() == BUILD + 25 * DAY


def test_backwards_jump_within_a_run(tmp_path):
    src = Sources(BUILD + 3 * DAY)
    clock = src.clock(tmp_path / "clock.json")
    a, _ = clock.now()
    src.system -= 3600  # NTP steps the clock back an hour
    src.mono += 2
    b, trusted = clock.now()
    assert b.timestamp() == a.timestamp() + 2
    assert not trusted


def test_writes_at_most_once_a_minute(tmp_path, monkeypatch):
    import device.wallclock as wc

    writes = []
    real = wc.atomic_write_text
    monkeypatch.setattr(wc, "atomic_write_text", lambda *a, **k: (writes.append(1), real(*a, **k)))
    src = Sources(BUILD + DAY)
    clock = src.clock(tmp_path / "clock.json")
    for _ in range(100):
        clock.now()
        src.advance(0.5)  # 50 s of readings
    assert len(writes) == 1
    src.advance(15)
    clock.now()
    assert len(writes) == 2


def test_damaged_state_file_is_not_fatal(tmp_path):
    path = tmp_path / "clock.json"
    path.write_text("{not json")
    src = Sources(BUILD + DAY)
    when, trusted = src.clock(path).now()
    assert trusted and when.timestamp() == BUILD + DAY
    assert stored(path) == BUILD + DAY  # repaired by the first checkpoint


def test_unwritable_state_does_not_raise(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    src = Sources(BUILD + DAY)
    clock = src.clock(blocker / "clock.json")  # parent is a file: every write fails
    clock.now()
    clock.checkpoint()


def test_monotonic_is_the_injected_source(tmp_path):
    src = Sources(BUILD)
    clock = src.clock(tmp_path / "c.json")
    start = clock.monotonic()
    src.system -= DAY  # wall clock jumps: durations do not care
    src.mono += 7
    assert clock.monotonic() - start == 7


# -- setting the time from a phone (the live panel's "set the box clock" button)


def test_a_set_time_is_followed_and_trusted_until_ntp_arrives(tmp_path):
    path = tmp_path / "clock.json"
    src = Sources(BUILD - 300 * DAY, synced=False)  # booted at an old fake-hwclock time
    clock = src.clock(path)
    assert not clock.read().trusted
    phone = BUILD + 40 * DAY + 0.5
    reading = clock.set_now(phone, "admin panel")
    assert reading.trusted and reading.time.timestamp() == phone
    assert stored(path) == phone  # written at once, not at the next minute
    src.advance(90)
    later = clock.read()
    assert later.trusted and later.time.timestamp() == phone + 90 and later.reason == ""

    # The runtime restarts in the same boot: the set time still holds.
    src.advance(10)
    again = src.clock(path).read()
    assert again.trusted and again.time.timestamp() == phone + 100

    # NTP synchronises: the system clock is right now, and wins.
    src.system = BUILD + 41 * DAY
    src.synced = True
    assert clock.read().time.timestamp() == BUILD + 41 * DAY and clock.read().trusted


def test_a_set_time_does_not_survive_a_reboot(tmp_path):
    path = tmp_path / "clock.json"
    src = Sources(BUILD + DAY, synced=False)
    phone = BUILD + 40 * DAY
    src.clock(path).set_now(phone, "admin panel")
    src.boot, src.mono = "boot-2", 3.0  # power cut: the monotonic clock starts again
    reading = src.clock(path).read()
    assert not reading.trusted  # nobody knows how long the box was off
    assert reading.time.timestamp() >= phone  # ...but it never goes below what was handed out


def test_a_set_may_move_time_back_and_the_mark_restarts_there(tmp_path):
    path = tmp_path / "clock.json"
    src = Sources(BUILD + 90 * DAY, synced=False)  # a clock that booted far ahead
    clock = src.clock(path)
    clock.checkpoint()
    assert stored(path) == BUILD + 90 * DAY
    phone = BUILD + 10 * DAY
    clock.set_now(phone, "admin panel")
    assert stored(path) == phone  # the old guess no longer pins the time
    src.advance(5)
    assert clock.read().time.timestamp() == phone + 5
    # After a reboot without a set, the mark carries on from the phone's time, not the guess.
    src.boot, src.mono, src.system = "boot-2", 3.0, BUILD - DAY
    assert src.clock(path).read().time.timestamp() == phone  # the mark saved by the set


def test_an_impossible_time_is_refused_and_changes_nothing(tmp_path):
    path = tmp_path / "clock.json"
    src = Sources(BUILD + DAY)
    clock = src.clock(path)
    clock.checkpoint()
    for bad in (BUILD - DAY, float("nan"), float("inf"), "soon"):
        with pytest.raises(ClockSetRefused):
            clock.set_now(bad, "admin panel")
    assert stored(path) == BUILD + DAY and "set" not in json.loads(path.read_text())
