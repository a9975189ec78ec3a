"""Hostile events files for the simulator: a list of events or an `EventsError` naming the line."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from fuzzing import fuzz_settings
from hypothesis import example, given
from hypothesis import strategies as st

from device.buttons import ButtonMap
from device.config import ButtonSpec, package_defaults
from device.simulate import EventsError, SimEvent, read_events

FUZZ = fuzz_settings(200)
BUTTONS = ButtonMap(tuple(ButtonSpec(**b) for b in package_defaults()["buttons"]["map"]))
NAMES = [b.name for b in BUTTONS.buttons]

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
    st.sampled_from([*NAMES, "next", "goto:share", "goto:", "goto:nope", "volume_up", "start", ""]),
)
json_values = st.recursive(json_scalars, lambda c: st.one_of(st.lists(c, max_size=3),
                                                             st.dictionaries(st.text(max_size=5), c, max_size=3)),
                           max_leaves=8)
event_objects = st.dictionaries(
    st.one_of(st.sampled_from(["t", "button", "hold", "action"]), st.text(max_size=6)), json_values, max_size=4,
)
raw_lines = st.one_of(
    event_objects.map(json.dumps),
    st.text(max_size=60),
    st.sampled_from(["{", "[]", "1", "null", '"x"', "# comment", "", "   ", '{"t": NaN, "button": "next"}',
                     '{"t": Infinity, "action": "next"}', '{"t": 1e999, "action": "next"}',
                     '{"t": ' + "9" * 5000 + ', "action": "next"}', "[" * 100000 + "]" * 100000]),
)


def check(content: bytes) -> list[SimEvent] | None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        path.write_bytes(content)
        try:
            events = read_events(path, BUTTONS)
        except EventsError as exc:
            assert str(exc).startswith(str(path)), "the error names the file (and line)"
            return None
    assert all(isinstance(e, SimEvent) and e.t >= 0 and isinstance(e.action, str) for e in events)
    assert [e.t for e in events] == sorted(e.t for e in events)
    return events


@FUZZ
@given(st.lists(raw_lines, max_size=8))
def test_random_lines(lines):
    check("\n".join(lines).encode("utf-8", "surrogatepass"))


@FUZZ
@given(st.binary(max_size=200))
@example(b"\xff\xfe{")
@example(b'{"t": 1, "action": "next"}\n\x80')
def test_random_bytes(data):
    check(data)


# -- regressions found by the fuzz above ----------------------------------------------------------


@pytest.mark.parametrize("content", [
    b'{"t": 1, "action": "next"}\n\xff\n',  # not UTF-8: was UnicodeDecodeError
    ('{"t": 1' + "0" * 400 + ', "action": "next"}').encode(),  # a huge integer: was OverflowError
    b"[" * 100000 + b"]" * 100000,  # nested too deep: was RecursionError
])
def test_bad_files_are_events_errors(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        path.write_bytes(content)
        with pytest.raises(EventsError):
            read_events(path, BUTTONS)


def test_a_good_file_still_reads():
    events = check(b'{"t": 2, "button": "next"}\n# c\n{"t": 1, "action": "goto:share"}\n')
    assert events is not None and [e.t for e in events] == [1.0, 2.0]
