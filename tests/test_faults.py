"""device/faults.py: every fault the runtime reports, in plain words, with what to do."""

from __future__ import annotations

import pytest

from device.faults import explain_fault, is_ok, split_fault

# (fault text exactly as device/runtime.py and device/box.py produce it, start of the summary,
#  words the advice must contain)
RUNTIME_FAULTS = [
    ("mic: microphone default failed to start (exit 1): arecord: main:831: audio open error: "
     "No such file or directory; retrying, buttons still work",
     "The microphone is not working.", "buttons still work"),
    ("mic: listening unavailable: No module named 'webrtcvad'",
     "Listening to the room is not available", "buttons"),
    ("mic: listening.noise_margin_db: must be between 3 and 30, not 99",
     "The listening settings are not valid", "Settings page"),
    ("speaker: No available audio device", "The speaker is not working", "plugged in"),
    ("circle: friday-circle has not been rendered yet; run: circlebox render friday-circle",
     "The circle's sounds have not been made yet", "Save the circle again"),
    ("circle: kept version 3: steps[2].turns.warn_s: must be less than max_s",
     "The newest version of the circle could not be used", "fix what it marks"),
    ("circle: no circle called 'friday' (looked in /var/lib/circlebox/scripts)",
     "The box could not load the circle", "Circles page"),
    ("buttons: no GPIO (Unable to load any default pin factory!); only the admin panel can "
     "press buttons", "The box's own buttons are not connected", "on-screen buttons"),
    ("buttons: pin GPIO17 is already in use", "The box's buttons are not working",
     "on-screen buttons"),
    ("leds: pin 23 is already in use", "The box's lights are not working", "technician"),
    ("control: admin page cannot reach the box: [Errno 13] Permission denied",
     "This page cannot reach the box", "Restart the circle service"),
    ("settings: audio: volume 0.95 is above volume_cap 0.9",
     "The box could not use the settings saved last", "Settings page"),
    ("sound 'step:share' is not rendered; run: circlebox render",
     "A sound of this circle is missing", "Save the circle again"),
]


@pytest.mark.parametrize(("text", "summary", "advice"), RUNTIME_FAULTS)
def test_each_runtime_fault_has_plain_words_and_what_to_do(text, summary, advice):
    plain = explain_fault(text)
    assert plain.summary.startswith(summary)
    assert advice in plain.advice
    assert plain.detail == text  # the technician still gets every character
    assert plain.sentence == f"{plain.summary} {plain.advice}"
    for jargon in ("arecord", "GPIO", "Errno", "exit 1", "volume_cap", "render"):
        assert jargon not in plain.summary


def test_an_unknown_fault_still_reads_as_a_sentence_with_its_detail():
    plain = explain_fault("kernel: oops at 0xdeadbeef")
    assert plain.part == "" and plain.summary == "Something went wrong in the box."
    assert "tell your technician" in plain.advice and plain.detail == "kernel: oops at 0xdeadbeef"


def test_parts_and_ok_values():
    assert split_fault("mic: arecord: main:831: x") == ("mic", "arecord: main:831: x")
    assert split_fault("arecord: main:831: x") == ("", "arecord: main:831: x")
    assert is_ok("ok") and is_ok("ok (joe-us)") and not is_ok("model missing") and not is_ok(None)
