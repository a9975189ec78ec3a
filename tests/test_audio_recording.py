"""Uploaded recordings (issue 12): the length is checked from the header before anything is
decoded, and decoding goes a block at a time, so a small file of hours of sound cannot fill the
admin page's memory. Reproduced as the review did: a 0.67 MB FLAC of one hour of tone."""

from __future__ import annotations

import io
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile
from test_admin_editor import form, three_steps
from test_admin_support import FakeRender, make_app, ready_client, token

from audio.recording import BLOCK_FRAMES, MAX_RECORDING_S, RecordingError, decode_mono

REPO = Path(__file__).resolve().parent.parent
RATE = 22050


@pytest.fixture(scope="module")
def hour_flac(tmp_path_factory) -> Path:
    """The review's file: one hour of 48 kHz stereo tone in 0.67 MB of FLAC."""
    sys.path.insert(0, str(REPO))
    from bench.bench_limits import one_hour_flac

    path = one_hour_flac(tmp_path_factory.mktemp("bomb") / "hour.flac")
    assert path.stat().st_size < 1_000_000
    return path


def _unknown_length(flac: bytes) -> bytes:
    """The same FLAC with STREAMINFO's sample count set to 0 ("unknown"), as a stream has."""
    data = bytearray(flac)
    assert data[:4] == b"fLaC"
    data[8 + 13] &= 0xF0
    data[8 + 14 : 8 + 18] = b"\0\0\0\0"
    return bytes(data)


class _Counted:
    """Counts the frames libsndfile decodes (SoundFile.read is what every decoding path calls)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.frames = 0
        real = soundfile.SoundFile.read

        def read(sound, *args, **kwargs):
            out = real(sound, *args, **kwargs)
            self.frames += len(out)
            return out

        monkeypatch.setattr(soundfile.SoundFile, "read", read)


_CHILD = """
import io, resource, sys
import numpy, soundfile, soxr
from audio.recording import decode_mono, RecordingError
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    decode_mono(io.BytesIO(data), 22050)
except RecordingError as exc:
    print("refused:", exc)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_an_hour_of_flac_is_refused_from_its_header_in_a_fresh_process(hour_flac):
    """Peak memory of a process refusing the file: was +2.6 GB (decoded whole to float64)."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(hour_flac)], cwd=REPO, capture_output=True,
        text=True, timeout=300, check=True,
    ).stdout.splitlines()
    assert out[0].startswith("refused: this recording is 60 minutes long; one recording may be "
                             "at most 15 minutes")
    assert int(out[1]) < 50  # MB of growth: nothing decoded


def test_the_editor_refuses_the_hour_without_decoding_it(hour_flac, tmp_path, monkeypatch):
    """Through the admin page, as the review uploaded it: a plain message, no frame decoded."""
    data_dir = tmp_path / "data"
    app = make_app(data_dir, render=FakeRender())
    client = ready_client(app, data_dir)
    counted = _Counted(monkeypatch)
    data = form(token(client, "/circles/new"), three_steps(), op="check")
    data["s0_recording"] = (io.BytesIO(hour_flac.read_bytes()), "tone.flac")
    response = client.post("/circles/new", data=data, content_type="multipart/form-data")
    html = response.get_data(as_text=True)
    assert 'id="err-s0_recording"' in html and "60 minutes long" in html
    assert counted.frames == 0
    assert not list((data_dir / "scripts" / "recordings").glob("*.wav"))


def test_a_header_that_does_not_say_the_length_is_stopped_at_the_limit(hour_flac, monkeypatch):
    counted = _Counted(monkeypatch)
    with pytest.raises(RecordingError, match="runs on; one recording may be at most 15 minutes"):
        decode_mono(io.BytesIO(_unknown_length(hour_flac.read_bytes())), RATE)
    # decoded up to the limit (and one block past it), never the whole hour
    assert counted.frames <= MAX_RECORDING_S * 48_000 + BLOCK_FRAMES


def test_a_recording_is_decoded_in_blocks_to_mono_at_the_boxs_rate(tmp_path, monkeypatch):
    rate, seconds = 44_100, 5.0
    t = np.arange(int(rate * seconds)) / rate
    left, right = 0.3 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 440 * t + 0.2)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.stack([left, right], axis=1) * 32767).astype("<i2").tobytes())
    reads: list[int] = []
    real = soundfile.SoundFile.read
    monkeypatch.setattr(
        soundfile.SoundFile, "read",
        lambda sound, *a, **k: (out := real(sound, *a, **k), reads.append(len(out)))[0],
    )
    mono = decode_mono(io.BytesIO(buf.getvalue()), RATE)
    assert mono.dtype == np.float32
    assert mono.size == pytest.approx(seconds * RATE, abs=RATE * 0.01)
    assert max(reads) <= BLOCK_FRAMES and len(reads) > 1  # a block at a time
    spectrum = np.abs(np.fft.rfft(mono))
    assert np.fft.rfftfreq(mono.size, 1 / RATE)[np.argmax(spectrum)] == pytest.approx(440, abs=2)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"RIFF not really a wave file" * 20, "cannot be read as sound"),
        (None, "not numbers"),  # a float WAV holding NaN
    ],
)
def test_damaged_files_are_refused_in_plain_words(payload, message):
    if payload is None:
        buf = io.BytesIO()
        x = np.full(RATE, np.nan, dtype=np.float32)
        soundfile.write(buf, x, RATE, format="WAV", subtype="FLOAT")
        payload = buf.getvalue()
    with pytest.raises(RecordingError, match=message):
        decode_mono(io.BytesIO(payload), RATE)
