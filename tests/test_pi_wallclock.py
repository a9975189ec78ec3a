"""device/wallclock.py: time that never goes backwards on a box with no RTC."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from device.wallclock import WallClock

BUILD = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
DAY = 86400.0


class Sources:
    """Injected system clock, monotonic clock and NTP flag."""

    def __init__(self, system: float, synced: bool = True) -> None:
        self.system = system
        self.mono = 1000.0
        self.synced = synced

    def advance(self, seconds: float) -> None:
        self.system += seconds
        self.mono += seconds

    def clock(self, path, **kw) -> WallClock:
        return WallClock(
            path,
            system_time=lambda: self.system,
            monotonic=lambda: self.mono,
            synced=lambda: self.synced,
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
