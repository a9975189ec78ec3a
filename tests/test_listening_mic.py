"""Microphone sources: WAV files of any common format, and arecord as a subprocess."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from device.listening import FRAME_BYTES, MicError, open_arecord_mic, open_wav_mic


def _tone(rate: int, seconds: float, freq: float = 1000.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _write_wav(path, x: np.ndarray, rate: int, channels: int = 1):
    data = np.repeat(x[:, None], channels, axis=1)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((data * 32767).astype("<i2").tobytes())


def _read_all(mic) -> bytes:
    frames = []
    while (f := mic.read_frame()) is not None:
        assert len(f) == FRAME_BYTES
        frames.append(f)
    mic.close()
    return b"".join(frames)


def _dominant_hz(pcm: bytes) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * 16000 / len(x))


def test_16k_mono_passes_through_exactly_with_last_frame_padded(tmp_path):
    x = _tone(16000, 1.0)[: 16000 - 100]  # 15900 samples: 33 frames and a bit
    _write_wav(tmp_path / "a.wav", x, 16000)
    pcm = _read_all(open_wav_mic(tmp_path / "a.wav"))
    assert len(pcm) == 34 * FRAME_BYTES
    got = np.frombuffer(pcm, dtype="<i2")
    assert np.array_equal(got[:15900], (x * 32767).astype("<i2"))
    assert not got[15900:].any()  # zero padding


@pytest.mark.parametrize(
    ("rate", "channels", "sox_args"),
    [
        (44100, 2, []),
        (48000, 1, ["-b", "24"]),
        (22050, 1, ["-b", "8"]),
        (8000, 1, []),
        (32000, 1, ["-e", "floating-point", "-b", "32"]),
        (48000, 4, []),  # sox writes WAVE_FORMAT_EXTENSIBLE
    ],
)
def test_common_formats_become_16k_mono(tmp_path, rate, channels, sox_args):
    src = tmp_path / "src.wav"
    _write_wav(src, _tone(rate, 2.0, 1000.0), rate, channels)
    out = tmp_path / "conv.wav"
    subprocess.run(["sox", str(src), *sox_args, str(out)], check=True)
    pcm = _read_all(open_wav_mic(out))
    n = len(pcm) // 2
    assert abs(n - 32000) <= 480 + 64  # 2 s at 16 kHz, whole frames
    assert _dominant_hz(pcm[4000:-4000]) == pytest.approx(1000, abs=5)
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32)[2000:-2000] / 32768
    assert np.sqrt(np.mean(x * x)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


def test_not_a_wav_is_a_mic_error(tmp_path):
    bad = tmp_path / "x.wav"
    bad.write_bytes(b"hello, this is not audio")
    with pytest.raises(MicError, match="not a WAV"):
        open_wav_mic(bad)
    with pytest.raises(MicError, match="cannot open"):
        open_wav_mic(tmp_path / "missing.wav")


def _fake_arecord(tmp_path, body: str) -> str:
    path = tmp_path / "fake-arecord"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_arecord_frames_and_arguments(tmp_path):
    args_file = tmp_path / "args"
    cmd = _fake_arecord(tmp_path, f'echo "$@" > {args_file}\nhead -c 4800 /dev/zero\nsleep 5\n')
    mic = open_arecord_mic("plughw:1,0", command=cmd)
    try:
        frames = [mic.read_frame() for _ in range(5)]
    finally:
        mic.close()
    assert all(f == b"\0" * FRAME_BYTES for f in frames)
    assert args_file.read_text().split() == [
        "-q",
        "-D",
        "plughw:1,0",
        "-r",
        "16000",
        "-c",
        "1",
        "-f",
        "S16_LE",
        "-t",
        "raw",
    ]


def test_arecord_that_cannot_start_is_a_mic_error(tmp_path):
    cmd = _fake_arecord(
        tmp_path, 'echo "arecord: main:831: audio open error: No such file" >&2\nexit 1\n'
    )
    with pytest.raises(MicError, match=r"failed to start.*audio open error"):
        open_arecord_mic("hw:9", command=cmd)
    with pytest.raises(MicError, match="not installed"):
        open_arecord_mic(None, command="no-such-arecord-here")


def test_arecord_dying_mid_session_is_a_mic_error(tmp_path):
    cmd = _fake_arecord(
        tmp_path, "sleep 0.5\nhead -c 1000 /dev/zero\necho 'device unplugged' >&2\nexit 1\n"
    )
    mic = open_arecord_mic(None, command=cmd)
    assert mic.read_frame() == b"\0" * FRAME_BYTES
    with pytest.raises(MicError, match=r"stopped.*device unplugged"):
        mic.read_frame()
    mic.close()


def test_closing_arecord_ends_the_process(tmp_path):
    pid_file = tmp_path / "pid"
    cmd = _fake_arecord(tmp_path, f"echo $$ > {pid_file}\nexec cat /dev/zero\n")
    mic = open_arecord_mic(None, command=cmd)
    assert mic.read_frame() is not None
    pid = int(pid_file.read_text())
    mic.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.hardware
def test_the_real_microphone_gives_frames():
    """On the box: arecord on the default capture device gives 30 ms frames of sound."""
    mic = open_arecord_mic(os.environ.get("CIRCLEBOX_MIC_DEVICE"))
    try:
        frames = [mic.read_frame() for _ in range(100)]
    finally:
        mic.close()
    assert all(len(f) == FRAME_BYTES for f in frames)
    assert any(any(f) for f in frames), "the microphone gives only digital silence"


# -- issue 12: nothing but the system's ALSA configuration reaches arecord -----------------------

needs_arecord = pytest.mark.skipif(shutil.which("arecord") is None, reason="needs alsa-utils")


@needs_arecord
def test_a_device_name_that_is_alsa_configuration_never_reaches_arecord(tmp_path):
    """The review: listening.device `file:"|touch /tmp/x",raw` made arecord run the command."""
    marker = tmp_path / "ran"
    with pytest.raises(MicError, match="not a sound card name"):
        open_arecord_mic(f'file:"|touch {marker}",raw')
    assert not marker.exists()


@needs_arecord
def test_a_planted_asoundrc_in_the_old_home_is_never_read(tmp_path, monkeypatch):
    """The review: the runtime's HOME was the group-writable data folder; an .asoundrc there
    made `default` a `file` plugin that wrote the microphone to disk. Here the runtime's own
    environment still points at such a folder: arecord must not read it."""
    data = tmp_path / "data"
    (data / ".config" / "alsa").mkdir(parents=True)
    room = tmp_path / "room.raw"
    planted = (
        'pcm.!default { type file; slave.pcm "null"; '
        f'file "|head -c 4800 > {room}"; format "raw" }}\n'
    )
    (data / ".asoundrc").write_text(planted)
    (data / ".config" / "alsa" / "asoundrc").write_text(planted)
    monkeypatch.setenv("HOME", str(data))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(data / ".config"))
    try:
        mic = open_arecord_mic(None)
    except MicError:
        pass  # no sound card here: the system's default cannot open, and nothing was recorded
    else:
        mic.read_frame()
        mic.close()
    assert not room.exists()


def test_arecord_runs_with_a_home_no_service_can_write(tmp_path, monkeypatch):
    """What the runtime passes to arecord: its argv and an environment whose HOME is SAFE_HOME."""
    from device.listening.mic import SAFE_HOME

    env_file = tmp_path / "env"
    cmd = _fake_arecord(tmp_path, f"env > {env_file}\nhead -c 960 /dev/zero\nsleep 5\n")
    monkeypatch.setenv("HOME", "/var/lib/circlebox")
    monkeypatch.setenv("ALSA_CONFIG_PATH", "/var/lib/circlebox/asound.conf")
    mic = open_arecord_mic("hw:1,0", command=cmd)
    try:
        mic.read_frame()
    finally:
        mic.close()
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    assert env["HOME"] == SAFE_HOME and env["XDG_CONFIG_HOME"] == SAFE_HOME
    assert "ALSA_CONFIG_PATH" not in env
    assert mic.argv[1:4] == ["-q", "-D", "hw:1,0"] and mic.environment["HOME"] == SAFE_HOME


REPO = Path(__file__).resolve().parent.parent


def test_the_runtime_unit_and_tmpfiles_give_that_home():
    from device.listening.mic import SAFE_HOME

    unit = (REPO / "systemd" / "circlebox.service").read_text()
    assert f"Environment=HOME={SAFE_HOME} XDG_CONFIG_HOME={SAFE_HOME}" in unit.splitlines()
    tmpfiles = (REPO / "firmware_config" / "tmpfiles.d" / "circlebox.conf").read_text()
    assert f"d {SAFE_HOME} 0555 root root -".split() in [line.split() for line in tmpfiles.splitlines()]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to act as the service users")
@pytest.mark.parametrize(("uid", "groups"), [(940, "940,29"), (941, "941,940")])
def test_no_service_user_can_plant_an_asoundrc_in_that_home(tmp_path, uid, groups):
    """The runtime (940, groups circlebox audio) and the admin page (941, groups circlebox-admin
    circlebox) try to write HOME/.asoundrc, on a folder made as tmpfiles.d says."""
    from device.listening.mic import SAFE_HOME

    tmpfiles = (REPO / "firmware_config" / "tmpfiles.d" / "circlebox.conf").read_text()
    line = next(f for f in (x.split() for x in tmpfiles.splitlines()) if f[:2] == ["d", SAFE_HOME])
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, 0, 0)  # root root, as the line says
    home.chmod(int(line[2], 8))
    tmp_path.chmod(0o755)
    proc = subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", f"--groups={groups}", "--",
         "sh", "-c", f"echo 'pcm.!default {{ type file }}' > {home}/.asoundrc"],
        capture_output=True, text=True,
    )
    assert proc.returncode != 0 and "Permission denied" in proc.stderr
    assert not (home / ".asoundrc").exists()
