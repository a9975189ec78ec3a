"""Recordings as phones save them (M4A/AAC, 3GP/AMR, WebM/Opus), read by FFmpeg in a child
process (audio/phone_decode.py): accepted through the studio like a WAV, and every file it cannot
or must not read refused in plain words. The test audio is made with PyAV's encoders here."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import yaml
from phone_audio import PHONE_FORMATS, encode, phone_recording, speech_like, video_only_mp4
from takes_audio import tone_wav
from test_admin_studio import _studio_draft, _take
from test_admin_support import make_app, ready_client

from audio.phone_decode import ChildLimits, decode_phone_recording
from audio.recording import RecordingError
from audio.takes import TakeError, make_take
from device.datafolder import DataFolder

RATE = 22_050
LUFS = -18.0


def _wav(x: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    soundfile.write(buf, x, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _rms_db(wav: bytes) -> float:
    x, _rate = soundfile.read(io.BytesIO(wav), dtype="float32")
    return 20 * float(np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2))))


@pytest.mark.parametrize("kind", sorted(PHONE_FORMATS))
def test_a_phone_recording_is_trimmed_and_levelled_like_the_same_words_in_a_wav(kind):
    _container, _codec, rate, _channels = PHONE_FORMATS[kind]
    phone = make_take(phone_recording(kind, seconds=1.0), f"take.{kind}", RATE, LUFS, phone_formats=True)
    as_wav = make_take(_wav(speech_like(1.0, rate), rate), "take.wav", RATE, LUFS)
    assert abs(phone.seconds - as_wav.seconds) < 0.06  # the same words kept, codec delay aside
    assert 0.5 < phone.trimmed_s < 1.0  # 0.5 s of silence each side, less the margins kept
    assert abs(_rms_db(phone.wav) - _rms_db(as_wav.wav)) < 1.0  # brought to the same loudness
    assert soundfile.info(io.BytesIO(phone.wav)).samplerate == RATE


def test_each_phone_format_is_accepted_through_the_studio(tmp_path):
    data_dir = tmp_path / "data"
    client = ready_client(make_app(data_dir), data_dir)
    _studio_draft(client)
    takes = {"step:karibu": ("m4a", "Sauti Memo.m4a"), "step:zamu": ("3gp", "rec001.3gp"),
             "msg:ready": ("webm", "recording.webm")}
    for prompt_id, (kind, name) in takes.items():
        page = _take(client, prompt_id, phone_recording(kind), "maneno", name=name).get_data(as_text=True)
        assert "recorded. Listen to it below." in page, page[-3000:]
    draft = yaml.safe_load(DataFolder(data_dir).draft("mduara").read_text(encoding="utf-8"))
    names = [draft["steps"][0]["say"]["audio"], draft["steps"][1]["prompt"]["audio"],
             draft["messages"]["ready"]["audio"]]
    for name in names:
        info = soundfile.info(str(DataFolder(data_dir).recordings / name))
        assert info.format == "WAV" and info.samplerate == RATE and 1.0 < info.duration < 1.6


def _whisper() -> bytes:
    return _wav(speech_like(1.0, 16_000) * 10 ** (-40 / 20), 16_000)  # its loudest frames under -45 dBFS


@pytest.mark.parametrize(("language", "make", "words", "detail"), [
    ("en", video_only_mp4,
     "this recording could not be read: the file holds pictures or video but no sound; record it again",
     "no audio stream"),
    ("fr", video_only_mp4,
     "cet enregistrement n&#39;a pas pu être lu : le fichier contient des images ou une vidéo, mais pas de son",
     "no audio stream"),
    ("sw", video_only_mp4, "rekodi hii haikuweza kusomwa: faili ina picha au video lakini haina sauti; irekodi tena",
     "no audio stream"),
    ("en", _whisper, "this recording is too quiet: hold the phone closer, speak up, and record again", ""),
    ("fr", _whisper, "cet enregistrement est trop faible : tenez le téléphone plus près", ""),
    ("sw", _whisper, "rekodi hii ina sauti ndogo mno: shika simu karibu zaidi", ""),
])
def test_a_refusal_in_the_studio_is_said_in_the_readers_language(tmp_path, language, make, words, detail):
    data_dir = tmp_path / "data"
    client = ready_client(make_app(data_dir), data_dir)
    _studio_draft(client)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
    page = _take(client, "step:karibu", make(), name="take").get_data(as_text=True)
    assert words in page, page[-2000:]
    assert detail in page  # the technical detail, after the plain words
    step = {"en": "Step 1 &#39;karibu&#39;: ", "fr": "Étape 1 « karibu » : ", "sw": "Hatua ya 1 “karibu”: "}
    assert step[language] + words.split(":")[0] in page  # which prompt, in the reader's words too


@pytest.mark.parametrize(("make", "max_seconds", "message"), [
    pytest.param(lambda: phone_recording("m4a", 2.0)[:5000], 900,
                 r"could not be read: the file is damaged, or is not a recording; record it again, "
                 r"or save it as WAV or MP3 \(technical detail: .*moov atom not found\)", id="damaged"),
    pytest.param(video_only_mp4, 900, r"could not be read: the file holds pictures or video but no sound",
                 id="video-only"),
    pytest.param(lambda: phone_recording("3gp", 5.0), 3.0,
                 r"this recording is 6 seconds long; one recording may be at most 3 seconds", id="too-long"),
    pytest.param(lambda: encode(speech_like(1.0, 16_000), "avi", "pcm_s16le", 16_000), 900,
                 r"could not be read: the file is of a kind the box does not read.*avi: Format not on whitelist",
                 id="avi"),
    pytest.param(lambda: encode(speech_like(1.0, 48_000), "mpegts", "mp2", 48_000), 900,
                 r"could not be read: the file is of a kind the box does not read", id="mpeg-ts"),
    pytest.param(lambda: encode(speech_like(1.0, 48_000), "matroska", "mp2", 48_000), 900,
                 r"could not be read: the file is of a kind the box does not read.*audio codec mp2", id="mp2-codec"),
])
def test_a_file_the_box_must_not_use_is_refused_in_plain_words(make, max_seconds, message):
    with pytest.raises(TakeError, match=message):
        make_take(make(), "take.m4a", RATE, LUFS, max_seconds=max_seconds, phone_formats=True)


def test_a_live_recording_that_does_not_say_its_length_is_stopped_at_the_limit():
    """A browser's WebM says no length: the limit is counted while decoding instead."""
    live = encode(speech_like(5.0, 48_000), "webm", "libopus", 48_000, streamed=True)
    with pytest.raises(RecordingError, match="this recording runs on; one recording may be at most 3 seconds"):
        decode_phone_recording(live, RATE, 3.0)
    assert decode_phone_recording(live, RATE, 8.0).size > 5 * RATE  # under the limit: all of it
    # The child itself stops at the limit (the parent's cap on what it reads is a second guard).
    child = subprocess.run([sys.executable, "-m", "audio.phone_decode", "--rate", str(RATE), "--max-seconds", "3"],
                           input=live, capture_output=True, check=False)
    assert child.returncode == 3 and b'"why": "too_long"' in child.stderr
    assert len(child.stdout) <= 4 * 3 * RATE


def test_a_playlist_pointing_at_a_file_of_the_box_is_not_followed():
    playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"
    for data in (playlist, b"ffconcat version 1.0\nfile /etc/passwd\n"):
        with pytest.raises(RecordingError, match="could not be read"):
            decode_phone_recording(data, RATE, 900)


@pytest.mark.parametrize(("limits", "message"), [
    (ChildLimits(memory_bytes=1), "reading it needed more memory than the box allows"),
    (ChildLimits(cpu_s=0), r"reading it took longer than the box allows.*SIGXCPU"),
    (ChildLimits(wall_s=0.05), r"reading it took longer than the box allows.*stopped after 0.05 s"),
])
def test_the_readers_memory_cpu_and_time_limits_become_a_plain_refusal(limits, message):
    recording = phone_recording("m4a", 3.0)
    with pytest.raises(RecordingError, match=r"this recording could not be read: " + message):
        decode_phone_recording(recording, RATE, 900, limits)


def test_soundfile_still_reads_what_it_can_without_a_child_process(monkeypatch):
    """WAV (and MP3, OGG, FLAC) never start the child: FFmpeg is for what libsndfile cannot open."""
    import audio.phone_decode

    def no_child(*_args, **_kwargs):
        raise AssertionError("the child was started for a WAV")

    monkeypatch.setattr(audio.phone_decode, "decode_phone_recording", no_child)
    assert make_take(tone_wav(300), "take.wav", RATE, LUFS, phone_formats=True).seconds > 0.9


def test_outside_the_admin_page_a_phone_format_is_not_read():
    """The bundle builder and the renderer stay with soundfile: no child, no FFmpeg."""
    with pytest.raises(TakeError, match="cannot be read as sound"):
        make_take(phone_recording("m4a"), "take.m4a", RATE, LUFS)


def test_the_runtime_never_loads_ffmpeg():
    """`circlebox run` pays nothing for PyAV: the modules it and the studio share import it lazily."""
    code = ("import sys, device.runtime, device.pump, audio.render, audio.recording, audio.takes, "
            "audio.phone_decode, device.commands.run; print('av' in sys.modules)")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "False"
