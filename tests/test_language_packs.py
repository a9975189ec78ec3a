"""Language packs: the box's own words (setup code, self-test, update messages) in the
therapist's language, recorded on the admin page or shipped as a `language_pack` bundle, and
voice bundles that bring a Piper voice with its language. Each test checks what the box would
actually play: the sounds in the runtime's bank are the recordings, sample for sample."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import make_config
from gpiozero.pins.mock import MockFactory
from takes_audio import tone_wav
from test_admin_support import make_app, ready_client, token
from test_update_helpers import Keys, make_box

from audio.cache import read_wav_pcm
from audio.silent import SilentSpeaker
from device.cli import main
from device.content import load_configured_circle
from device.datafolder import DataFolder
from device.language_packs import PACK_FILE, load_pack, pack_recordings
from device.runtime import Runtime
from device.system_prompts import system_manifest_path
from device.update import messages as M
from device.update.builder import build_bundle, files_of_dir
from device.update.installer import apply_bundle
from device.update.release import current_release

RATE = 22050  # the box's (defaults.yaml)
# Each recorded prompt is a tone of its own pitch, so a sound in the bank can be traced to its take.
TONES = {"sys:setup_code": 300.0, "sys:digit_3": 420.0, "update:S04": 560.0}




def pitch(pcm: bytes, rate: int = RATE) -> float:
    """The loudest frequency of a sound (Hz)."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / rate)[int(np.argmax(spectrum))])


def english(data: Path, prompt_id: str) -> bytes:
    """The English prompt the box's rendered system set has for `prompt_id`."""
    manifest_path = system_manifest_path(DataFolder(data).cache)
    entry = json.loads(manifest_path.read_text())["prompts"][prompt_id]
    return read_wav_pcm(DataFolder(data).cache / entry["file"], RATE)


def start_runtime(data: Path, **audio) -> Runtime:
    runtime = Runtime(make_config(data, audio=audio) if audio else make_config(data), pin_factory=MockFactory(),
                      speaker=SilentSpeaker(time.monotonic), listening=False, control=False)
    runtime.start()
    return runtime


def assert_plays_the_recordings(sounds, data: Path, recorded: dict[str, float]) -> None:
    """Every recorded prompt is its recording (traced by pitch); `digit:3` of the update
    messages is said with `sys:digit_3`'s; a prompt not recorded is still the English one."""
    for pid, freq in recorded.items():
        assert abs(pitch(sounds.pcm(pid)) - freq) < 5, pid
        assert sounds.pcm(pid) != english(data, pid), pid
    assert sounds.pcm("digit:3") == sounds.pcm("sys:digit_3")
    assert sounds.pcm("sys:setup_code_again") == english(data, "sys:setup_code_again")


# -- recorded on the admin page --------------------------------------------------------------


def _take(client, prompt_id: str, data: bytes, language: str = "sw"):
    return client.post("/system/messages/take", content_type="multipart/form-data", follow_redirects=True, data={
        "csrf_token": token(client, "/system/messages/"), "language": language, "prompt": prompt_id,
        "take": (io.BytesIO(data), "take.wav")})


def test_a_pack_recorded_on_the_admin_page_is_what_the_box_plays(box_data):
    app = make_app(box_data)
    client = ready_client(app, box_data)
    page = client.get("/system/messages/?language=sw").get_data(as_text=True)
    for pid in ("sys:setup_code", "sys:digit_3", "update:S04", "sys:doctor_press_next"):
        assert f'data-prompt="{pid}"' in page, pid
    assert 'data-prompt="digit:3"' not in page  # said with sys:digit_3's recording: recorded once
    assert 'accept="audio/*" capture' in page
    total = page.count('class="card prompt')
    assert f"{total} of {total} are not recorded in Swahili" in page

    refused = _take(client, "sys:setup_code", tone_wav(300, level=0.002)).get_data(as_text=True)
    assert "this recording is too quiet" in refused
    for pid, freq in TONES.items():
        assert "recorded." in _take(client, pid, tone_wav(freq)).get_data(as_text=True)
    page = client.get("/system/messages/?language=sw").get_data(as_text=True)
    assert f"{total - len(TONES)} of {total} are not recorded in Swahili" in page

    # the take is checked, trimmed and levelled at the box's rate, kept in the box's own pack
    own = DataFolder(box_data).language_pack("sw")
    pack = load_pack(own)
    assert pack is not None and set(pack.recordings()) == set(TONES)
    take = read_wav_pcm(own / pack.recordings()["sys:setup_code"], RATE)
    assert len(take) / 2 / RATE < 1.4  # 2/3 s of silence around the tone was cut (a margin stays)

    # listen: the recording itself
    listened = client.get("/system/messages/listen/sw/sys:setup_code")
    assert listened.status_code == 200 and listened.data == (own / pack.recordings()["sys:setup_code"]).read_bytes()

    # before "Use Swahili", the box still speaks English
    runtime = start_runtime(box_data)
    try:
        assert runtime.box.sounds.pcm("sys:setup_code") == english(box_data, "sys:setup_code")
    finally:
        runtime.close()
    response = client.post("/system/messages/use", data={"csrf_token": token(client, "/system/messages/"),
                                                          "language": "sw"}, follow_redirects=True)
    assert "now in Swahili" in response.get_data(as_text=True)
    assert make_config(box_data).audio.system_language == "sw"  # the admin layer says so

    runtime = start_runtime(box_data)  # reads the admin layer, as the box does
    try:
        assert_plays_the_recordings(runtime.box.sounds, box_data, TONES)
        assert runtime.box.sounds.pcm("sys:setup_code") == take  # sample for sample: the take
        # a new take reaches the running box without a restart
        _take(client, "sys:setup_code_again", tone_wav(700))
        assert runtime.maybe_reload()
        assert abs(pitch(runtime.box.sounds.pcm("sys:setup_code_again")) - 700) < 5
    finally:
        runtime.close()

    # delete: the box's English comes back for that prompt
    client.post("/system/messages/delete", data={"csrf_token": token(client, "/system/messages/"),
                                                 "language": "sw", "prompt": "sys:setup_code"})
    circle = load_configured_circle("three-step-circle", box_data, "sw")
    assert circle.bank.pcm("sys:setup_code") == english(box_data, "sys:setup_code")
    assert not (own / pack.recordings()["sys:setup_code"]).exists()


def test_the_doctor_names_what_a_pack_still_says_in_english(box_data):
    from test_doctor import seams

    from device.doctor import Doctor
    from device.language_packs import save_take

    save_take(box_data, "sw", "sys:setup_code", tone_wav(300, rate=RATE), "a" * 64)
    doctor = Doctor(make_config(box_data, audio={"system_language": "sw"}), seams())
    doctor.check_content()
    check = next(c for c in doctor.checks if c.name == "language pack")
    assert check.status == "WARN"
    assert "Swahili:" in check.detail and "are said in English (first: sys:setup_code_again)" in check.detail


# -- shipped as a language_pack bundle --------------------------------------------------------


@pytest.fixture
def keypair(tmp_path):
    assert main(["bundle", "keygen", "--out", str(tmp_path / "keys")]) == 0
    return tmp_path / "keys" / "circlebox-signing.key", tmp_path / "keys" / "circlebox-signing.pub"


def write_pack_source(folder: Path, prompts: dict, **extra) -> Path:
    folder.mkdir(parents=True)
    entries = {}
    for pid, value in prompts.items():
        if isinstance(value, float):
            name = pid.replace(":", "_") + ".wav"
            (folder / name).write_bytes(tone_wav(value))
            entries[pid] = {"audio": name}
        else:
            entries[pid] = {"text": value}
    (folder / PACK_FILE).write_text(yaml.safe_dump({"language": "sw", **extra, "prompts": entries}))
    return folder


def test_a_language_pack_bundle_is_built_applied_and_played_by_the_runtime(tmp_path, box_data, keypair, capsys):
    key, pub = keypair
    write_pack_source(tmp_path / "packs" / "sw", TONES)
    out = tmp_path / "language_pack-1.cbx"
    assert main(["--data", str(tmp_path / "laptop"), "bundle", "build", "--key", str(key), "--kind", "language_pack",
                 "--version", "1", "--out", str(out), str(tmp_path / "packs")]) == 0
    assert f"language packs: sw ({len(TONES)} recordings at {RATE} Hz)" in capsys.readouterr().out

    assert main(["bundle", "apply", str(out), "--root", str(box_data), "--pubkey", str(pub)]) == 0
    assert current_release(box_data, "language_pack") == "language_pack-1"
    installed, problems = pack_recordings(box_data, "sw")
    assert problems == [] and {r.origin for r in installed.values()} == {"installed"}

    runtime = start_runtime(box_data, system_language="sw")
    try:
        assert_plays_the_recordings(runtime.box.sounds, box_data, TONES)
        for pid, rec in installed.items():  # sample for sample: the installed recordings
            assert runtime.box.sounds.pcm(pid) == read_wav_pcm(rec.path, RATE)
    finally:
        runtime.close()


def test_a_pack_with_text_for_a_voice_of_another_language_is_not_built(tmp_path, keypair, capsys):
    key, _pub = keypair
    src = write_pack_source(tmp_path / "sw", {"sys:setup_code": 300.0, "sys:digit_1": "moja"},
                            voice="en_US-joe-medium")
    code = main(["--data", str(tmp_path / "laptop"), "bundle", "build", "--key", str(key), "--kind", "language_pack",
                 "--version", "1", "--out", str(tmp_path / "x.cbx"), str(src)])
    assert code == 2 and not (tmp_path / "x.cbx").exists()
    assert ("en_US-joe-medium speaks English; this pack is in Swahili: record sys:digit_1"
            in capsys.readouterr().err)


def test_the_box_refuses_a_language_pack_it_could_not_play(tmp_path):
    """Signed, but built by hand with text in it: the self-test refuses it (U11), nothing changes."""
    keys = Keys()
    raw = tmp_path / "raw" / "sw"
    raw.mkdir(parents=True)
    (raw / PACK_FILE).write_text(yaml.safe_dump({"language": "sw", "prompts": {"sys:digit_1": {"text": "moja"}}}))
    bundle = tmp_path / "lp.cbx"
    build_bundle(bundle, files_of_dir(tmp_path / "raw"), keys.private, kind="language_pack", version=1,
                 min_installed=0)
    root = tmp_path / "root"
    result = apply_bundle(bundle, make_box(root, keys))
    assert result.code == M.SELF_TEST_FAILED and "sys:digit_1 is text" in result.detail
    assert current_release(root, "language_pack") is None


# -- voice bundles -----------------------------------------------------------------------------


SWAHILI_CIRCLE = {
    "script": "mduara", "version": 1, "language": "sw", "voice": "sw_KE-test-medium",
    "steps": [{"id": "karibu", "say": "Karibu kwenye mduara."}],
}


def test_a_voice_bundle_lists_its_voice_with_its_language_and_a_circle_in_it_validates(tmp_path, keypair, capsys):
    from device.script import DEFAULT_MESSAGES

    key, pub = keypair
    data = tmp_path / "data"
    voices = tmp_path / "voices"
    voices.mkdir()
    (voices / "sw_KE-test-medium.onnx").write_bytes(b"a model")
    config = {"audio": {"sample_rate": 22050}, "language": {"code": "sw_KE"}}
    (voices / "sw_KE-test-medium.onnx.json").write_text(json.dumps(config))
    circle = tmp_path / "mduara.yaml"
    messages = {name: f"Ujumbe {i}." for i, name in enumerate(DEFAULT_MESSAGES)}
    circle.write_text(yaml.safe_dump({**SWAHILI_CIRCLE, "messages": messages}, allow_unicode=True))

    assert main(["--data", str(data), "validate", str(circle)]) == 2  # no such voice on the box yet
    assert "'sw_KE-test-medium' is not on this box" in capsys.readouterr().err

    out = tmp_path / "voice-1.cbx"
    assert main(["bundle", "build", "--key", str(key), "--kind", "voice", "--version", "1", "--out", str(out),
                 str(voices)]) == 0
    assert main(["bundle", "apply", str(out), "--root", str(data), "--pubkey", str(pub)]) == 0
    assert (DataFolder(data).installed_voices / "sw_KE-test-medium.onnx.json").is_file()

    capsys.readouterr()
    assert main(["--data", str(data), "validate", str(circle)]) == 0
    assert "mduara.yaml: ok" in capsys.readouterr().out

    app = make_app(data)
    listed = {v.id: v.language for v in app.extensions["circlebox"].voices()[0]}
    assert listed["sw_KE-test-medium"] == "sw_KE"
    client = ready_client(app, data)
    editor = client.get("/circles/new").get_data(as_text=True)
    assert 'value="sw_KE-test-medium"' in editor and "Swahili" in editor


def test_a_voice_bundle_without_a_language_is_not_built(tmp_path, keypair, capsys):
    key, _pub = keypair
    voices = tmp_path / "voices"
    voices.mkdir()
    (voices / "xx-test.onnx").write_bytes(b"a model")
    (voices / "xx-test.onnx.json").write_text(json.dumps({"audio": {"sample_rate": 22050}}))
    assert main(["bundle", "build", "--key", str(key), "--kind", "voice", "--version", "1",
                 "--out", str(tmp_path / "v.cbx"), str(voices)]) == 2
    assert "xx-test.onnx.json declares no language" in capsys.readouterr().err


def test_the_installed_voice_folder_is_found_only_once_a_bundle_brought_it(tmp_path):
    data = tmp_path / "data"
    assert make_config(data).voice_dirs == ()
    installed = DataFolder(data).installed_voices
    installed.mkdir(parents=True)
    assert make_config(data).voice_dirs == (installed,)
