"""The circle editor: write, validate at the field, save (render, then switch), versions, files."""

from __future__ import annotations

import io
import threading
import wave

import numpy as np
import pytest
import yaml
from test_admin_support import FakeRender, make_app, ready_client, token

from device.script import load_script

VOICE = "en_US-joe-medium"


def step(i, id, kind="say", text="", **extra):
    data = {
        f"s{i}_orig": extra.pop("orig", ""),
        f"s{i}_id": id,
        f"s{i}_kind": kind,
        f"s{i}_text": text,
        f"s{i}_then": extra.pop("then", "wait_for_next"),
    }
    if extra.pop("core", False):
        data[f"s{i}_core"] = "on"
    data.update({f"s{i}_{k}": v for k, v in extra.items()})
    return data


def three_steps():
    return [
        step(0, "welcome", text="Welcome to our circle.", core=True, title="Welcome"),
        step(
            1,
            "share",
            "round",
            "Share one thing from your week.",
            core=True,
            between="soft_bell",
            end_on_silence_s="3",
            pass_on_silence_s="10",
            warn_s="60",
            max_s="120",
        ),
        step(2, "close", text="Thank you. [pause 2] The circle is closed.", then="continue"),
    ]


def form(
    tok, steps, op="save", script="new-circle", title="New circle", voice=VOICE, language="en_US"
):
    data = {
        "csrf_token": tok,
        "op": op,
        "script": script,
        "title": title,
        "language": language,
        "voice": voice,
        "nsteps": str(len(steps)),
    }
    for s in steps:
        data.update(s)
    return data


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def render():
    return FakeRender()


@pytest.fixture
def app(data_dir, render):
    return make_app(data_dir, render=render)


@pytest.fixture
def client(app, data_dir):
    return ready_client(app, data_dir)


def save_and_wait(app, client, url, data):
    response = client.post(url, data=data, content_type="multipart/form-data")
    assert response.status_code == 302, response.get_data(as_text=True)[:3000]
    assert "/circles/jobs/" in response.location
    assert app.extensions["circlebox"].renders.wait_idle(30)
    job_id = response.location.rsplit("/", 1)[1]
    return client.get(f"/circles/jobs/{job_id}.json").get_json()


def test_write_a_new_three_step_circle(app, client, data_dir, render):
    job = save_and_wait(
        app, client, "/circles/new", form(token(client, "/circles/new"), three_steps())
    )
    assert job["state"] == "done" and job["percent"] == 100 and job["version"] == 1
    saved = load_script(data_dir / "scripts" / "new-circle.yaml").script
    assert [s.id for s in saved.steps] == ["welcome", "share", "close"]
    assert saved.steps[1].kind == "round" and saved.steps[1].turns.max_s == 120
    assert saved.steps[0].core and not saved.steps[2].core
    assert saved.steps[2].say[1].pause == 2 and saved.steps[2].then == "continue"
    assert render.calls == [("new-circle", 1)]
    page = client.get("/circles/").get_data(as_text=True)
    assert "New circle" in page and "version 1" in page


def test_validation_errors_are_shown_at_the_field_and_nothing_is_saved(
    app, client, data_dir, render
):
    steps = three_steps()
    steps[1]["s1_warn_s"] = "200"  # reminder after the wrap-up: not allowed
    steps[0]["s0_id"] = "Welcome Step"
    steps[2]["s2_text"] = ""
    response = client.post("/circles/new", data=form(token(client, "/circles/new"), steps))
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    warn_error = html.split('id="err-s1_warn_s"')[1].split("</span>")[0]
    assert "must be less than" in warn_error and "Wrap-up after" in warn_error
    assert 'id="err-s0_id"' in html and "lower-case letters" in html
    assert 'id="err-s2_text"' in html
    assert 'value="Welcome Step"' in html  # the person's text is kept for fixing
    assert not (data_dir / "scripts" / "new-circle.yaml").exists() and render.calls == []


def test_a_new_circle_without_a_short_name_is_asked_for_one(client, data_dir, render):
    response = client.post("/circles/new", data=form(token(client, "/circles/new"), three_steps(), script=""))
    assert response.status_code == 400
    message = response.get_data(as_text=True).split('id="err-script"')[1].split("</span>")[0]
    assert "give the circle a short name" in message and render.calls == []


def test_numbers_unknown_voice_and_bad_names_are_refused(app, client, data_dir):
    steps = three_steps()
    steps[1]["s1_max_s"] = "two minutes"
    response = client.post(
        "/circles/new",
        data=form(token(client, "/circles/new"), steps, voice="xx_XX-nobody", script="Bad Name"),
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'id="err-s1_max_s"' in html and "enter a number" in html
    assert 'id="err-voice"' in html and "unknown voice" in html
    assert 'id="err-script"' in html


def test_structure_edits_work_without_javascript(client):
    tok = token(client, "/circles/new")
    html = client.post(
        "/circles/new", data={**form(tok, three_steps(), op="add"), "new_kind": "timer"}
    ).get_data(as_text=True)
    assert 'name="nsteps" value="4"' in html and 'data-kind="timer"' in html
    html = client.post("/circles/new", data=form(tok, three_steps(), op="up:2")).get_data(
        as_text=True
    )
    assert html.index('value="close"') < html.index('value="share"')
    html = client.post("/circles/new", data=form(tok, three_steps(), op="del:0")).get_data(
        as_text=True
    )
    assert 'name="nsteps" value="2"' in html and 'value="welcome"' not in html


def test_versions_are_kept_and_restorable(app, client, data_dir):
    save_and_wait(app, client, "/circles/new", form(token(client, "/circles/new"), three_steps()))
    steps = three_steps()
    for i, s in enumerate(steps):
        s[f"s{i}_orig"] = s[f"s{i}_id"]
    steps[0]["s0_text"] = "Welcome, everyone. Version two."
    job = save_and_wait(
        app,
        client,
        "/circles/new-circle/edit",
        form(token(client, "/circles/new-circle/edit"), steps, script=""),
    )
    assert job["version"] == 2
    live = load_script(data_dir / "scripts" / "new-circle.yaml").script
    assert live.version == 2 and "Version two" in live.steps[0].say[0]
    history = list((data_dir / "scripts" / ".history" / "new-circle").glob("1-*.yaml"))
    assert len(history) == 1
    page = client.get("/circles/new-circle/history").get_data(as_text=True)
    assert "Version 1" in page
    response = client.post(
        "/circles/new-circle/restore",
        data={"csrf_token": token(client, "/circles/new-circle/history"), "name": history[0].name},
    )
    assert response.status_code == 302
    app.extensions["circlebox"].renders.wait_idle(30)
    live = load_script(data_dir / "scripts" / "new-circle.yaml").script
    assert live.version == 3 and live.steps[0].say[0] == "Welcome to our circle."


def test_the_box_switches_only_when_everything_is_rendered(data_dir):
    gate = threading.Event()
    app = make_app(data_dir, render=FakeRender(gate=gate))
    client = ready_client(app, data_dir)
    save_and_wait_started = client.post(
        "/circles/new", data=form(token(client, "/circles/new"), three_steps())
    )
    assert save_and_wait_started.status_code == 302
    live = data_dir / "scripts" / "new-circle.yaml"
    assert not live.exists()  # still rendering: nothing switched yet
    job_url = save_and_wait_started.location + ".json"
    assert client.get(job_url).get_json()["state"] in ("queued", "running")
    page = client.get(save_and_wait_started.location).get_data(as_text=True)
    assert "<progress" in page and 'http-equiv="refresh"' in page  # no-JS fallback refreshes
    gate.set()
    assert app.extensions["circlebox"].renders.wait_idle(30)
    assert live.exists() and client.get(job_url).get_json()["percent"] == 100


def test_a_failed_render_loses_nothing(data_dir):
    app = make_app(data_dir, render=FakeRender())
    client = ready_client(app, data_dir)
    save_and_wait(app, client, "/circles/new", form(token(client, "/circles/new"), three_steps()))
    live = data_dir / "scripts" / "new-circle.yaml"
    before = live.read_text()
    app.extensions["circlebox"].render_script = FakeRender(fail="the voice crashed")
    steps = three_steps()
    steps[0]["s0_text"] = "A changed welcome."
    job = save_and_wait(
        app,
        client,
        "/circles/new-circle/edit",
        form(token(client, "/circles/new-circle/edit"), steps),
    )
    assert job["state"] == "failed" and "the voice crashed" in job["message"]
    assert live.read_text() == before  # the box keeps the version it had
    page = client.get("/circles/new-circle/edit").get_data(as_text=True)
    assert "A changed welcome." in page and "rendering failed" in page  # the draft is offered


def test_export_and_import(app, client, data_dir):
    exported = client.get("/circles/three-step-circle/export")
    assert exported.status_code == 200 and "attachment" in exported.headers["Content-Disposition"]
    data = yaml.safe_load(exported.get_data(as_text=True))
    data["script"] = "imported"
    tok = token(client, "/circles/")
    ok = client.post(
        "/circles/import",
        data={
            "csrf_token": tok,
            "file": (io.BytesIO(yaml.safe_dump(data).encode()), "imported.yaml"),
        },
        content_type="multipart/form-data",
    )
    assert ok.status_code == 302
    app.extensions["circlebox"].renders.wait_idle(30)
    live = data_dir / "scripts" / "imported.yaml"
    assert load_script(live).script.steps[0].id == "welcome"
    before = live.read_text()
    data["steps"][2]["turns"]["max_s"] = 5  # invalid
    bad = client.post(
        "/circles/import",
        data={
            "csrf_token": tok,
            "file": (io.BytesIO(yaml.safe_dump(data).encode()), "imported.yaml"),
        },
        content_type="multipart/form-data",
    )
    html = bad.get_data(as_text=True)
    assert bad.status_code == 400 and "share" in html and "max_s" in html
    assert live.read_text() == before
    data["steps"][2]["turns"]["max_s"] = 180
    data["voice"] = "xx_XX-nobody"
    bad_voice = client.post(
        "/circles/import",
        data={"csrf_token": tok, "file": (io.BytesIO(yaml.safe_dump(data).encode()), "x.yaml")},
        content_type="multipart/form-data",
    )
    assert bad_voice.status_code == 400 and "unknown voice" in bad_voice.get_data(as_text=True)
    binary = client.post(
        "/circles/import",
        data={"csrf_token": tok, "file": (io.BytesIO(b"\xff\xfe\x00garbage"), "x.yaml")},
        content_type="multipart/form-data",
    )
    assert binary.status_code == 400 and live.read_text() == before


def _wav_bytes(seconds=1.0, rate=16000):
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def test_uploaded_recording_is_checked_decoded_and_normalised(app, client, data_dir):
    tok = token(client, "/circles/new")
    steps = three_steps()
    data = form(tok, steps, op="check")
    data["s0_recording"] = (io.BytesIO(_wav_bytes()), "welcome.wav")
    response = client.post("/circles/new", data=data, content_type="multipart/form-data")
    html = response.get_data(as_text=True)
    assert response.status_code == 200, html[:2000]
    recordings = list((data_dir / "scripts" / "recordings").glob("new-circle-welcome-*.wav"))
    assert len(recordings) == 1
    with wave.open(str(recordings[0])) as w:
        assert w.getframerate() == app.extensions["circlebox"].config.audio.sample_rate
        assert w.getnchannels() == 1 and w.getnframes() > 0.9 * w.getframerate()
    assert f"[recording {recordings[0].name}]" in html

    bad = form(tok, steps, op="check")
    bad["s0_recording"] = (io.BytesIO(b"RIFF not really a wave file" * 20), "broken.wav")
    html = client.post("/circles/new", data=bad, content_type="multipart/form-data").get_data(
        as_text=True
    )
    assert 'id="err-s0_recording"' in html and "could not be read: the file is damaged, or is not a recording" in html
    wrong_type = form(tok, steps, op="check")
    wrong_type["s0_recording"] = (io.BytesIO(b"x" * 500), "notes.txt")
    html = client.post(
        "/circles/new", data=wrong_type, content_type="multipart/form-data"
    ).get_data(as_text=True)
    assert 'id="err-s0_recording"' in html and "WAV, MP3" in html
    missing = three_steps()
    missing[0]["s0_text"] = "[recording nothing-here.wav]"
    response = client.post("/circles/new", data=form(tok, missing))
    assert response.status_code == 400 and "not on the box" in response.get_data(as_text=True)


def test_oversized_upload_is_refused(app, client, data_dir):
    tok = token(client, "/circles/")
    big = io.BytesIO(b"0" * (app.config["MAX_CONTENT_LENGTH"] + 1))
    response = client.post(
        "/circles/import",
        data={"csrf_token": tok, "file": (big, "big.yaml")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 413 and "too big" in response.get_data(as_text=True)


def test_copy_use_and_delete(app, client, data_dir):
    tok = token(client, "/circles/")
    page = client.post(
        "/circles/three-step-circle/copy", data={"csrf_token": tok, "new_id": "my-copy"}
    )
    assert page.status_code == 200 and 'value="my-copy"' in page.get_data(as_text=True)
    bad = client.post(
        "/circles/three-step-circle/copy", data={"csrf_token": tok, "new_id": "Bad Id"}
    )
    assert bad.status_code == 400 and 'id="err-new_id"' in bad.get_data(as_text=True)
    save_and_wait(app, client, "/circles/new", form(tok, three_steps()))
    assert client.post("/circles/new-circle/use", data={"csrf_token": tok}).status_code == 302
    assert app.extensions["circlebox"].config.session.script == "new-circle"
    assert "script: new-circle" in (data_dir / "admin-config.yaml").read_text()
    client.post("/circles/new-circle/delete", data={"csrf_token": tok, "confirm": "yes"})
    assert (data_dir / "scripts" / "new-circle.yaml").exists()  # the running one is never deleted
    client.post("/circles/three-step-circle/use", data={"csrf_token": tok})
    client.post("/circles/new-circle/delete", data={"csrf_token": tok})
    assert (data_dir / "scripts" / "new-circle.yaml").exists()  # needs the confirmation tick
    client.post("/circles/new-circle/delete", data={"csrf_token": tok, "confirm": "yes"})
    assert not (data_dir / "scripts" / "new-circle.yaml").exists()
    assert list((data_dir / "scripts" / ".history" / "new-circle").glob("1-*.yaml"))  # restorable


def test_listen_without_javascript_plays_a_real_wav(data_dir):
    """The no-JS path: the Listen button posts the form; the page comes back with the audio."""
    app = make_app(data_dir)
    client = ready_client(app, data_dir)
    tok = token(client, "/circles/new")
    steps = three_steps()
    steps.append(step(3, "bell", "bell", bell="soft_bell", bells="2"))
    bell = client.post("/circles/new", data=form(tok, steps, op="listen:3"))
    assert bell.status_code == 400 and "no words" in bell.get_data(as_text=True)
    voice = client.post("/circles/new", data=form(tok, steps, op="listen:0", voice="xx_XX-nobody"))
    assert voice.status_code == 400 and 'id="err-voice"' in voice.get_data(as_text=True)
    response = client.post("/circles/new", data=form(tok, steps, op="listen:0"))
    html = response.get_data(as_text=True)
    assert response.status_code == 200, html[:3000]
    src = html.split('<audio controls autoplay src="')[1].split('"')[0]
    wav = client.get(src)
    assert wav.status_code == 200 and wav.mimetype == "audio/wav"
    with wave.open(io.BytesIO(wav.data)) as w:
        assert w.getframerate() == app.extensions["circlebox"].config.audio.sample_rate
        assert w.getnframes() / w.getframerate() > 1.0  # "Welcome to our circle." spoken
    assert 'value="Welcome to our circle."' in html or "Welcome to our circle." in html
    assert not (data_dir / "scripts" / "new-circle.yaml").exists()  # listening saves nothing


def test_the_form_round_trips_every_packaged_circle_unchanged():
    """Opening a circle in the editor and saving it without edits changes nothing it means."""
    from werkzeug.datastructures import MultiDict

    from device.script import packaged_scripts_dir, parse_script
    from local_admin import store

    for path in sorted(packaged_scripts_dir().glob("*.yaml")):
        original = load_script(path)
        raw = store.raw_dict(original.text)
        form_view = store.script_to_form(raw)
        posted = MultiDict({"script": form_view["script"], "title": form_view["title"],
                            "language": form_view["language"], "voice": form_view["voice"],
                            "nsteps": str(len(form_view["steps"]))})
        for i, s in enumerate(form_view["steps"]):
            for key, value in s.items():
                if key == "core":
                    if value:
                        posted[f"s{i}_core"] = "on"
                else:
                    posted[f"s{i}_{key}"] = str(value)
        errors: dict = {}
        data = store.form_to_script(store.form_from_request(posted), raw, original.script.version, errors)
        assert errors == {}
        again = parse_script(store.dump_yaml(data), "round trip").script
        assert again == original.script, path.name


def test_a_new_circle_whose_first_save_failed_is_kept_as_a_draft(data_dir):
    app = make_app(data_dir, render=FakeRender(fail="out of memory"))
    client = ready_client(app, data_dir)
    job = save_and_wait(app, client, "/circles/new", form(token(client, "/circles/new"), three_steps()))
    assert job["state"] == "failed"
    assert not (data_dir / "scripts" / "new-circle.yaml").exists()
    listing = client.get("/circles/").get_data(as_text=True)
    assert "New circle" in listing and "unsaved draft" in listing
    page = client.get("/circles/new-circle/edit").get_data(as_text=True)
    assert "Welcome to our circle." in page and "rendering failed" in page


def _round_with_own_words(**fields):
    """three_steps() with the round's own between-turns words, reminder and wrap-up fields."""
    steps = three_steps()
    steps[1].update({f"s1_{name}": value for name, value in fields.items()})
    return steps


def test_a_rounds_between_turns_words_reminder_and_wrap_up_are_edited_and_saved(app, client, data_dir):
    steps = _round_with_own_words(between="spoken", between_say="Thank you. [pause 1] Who is next?",
                                  reminder="Please begin to finish.", wrap_up="Thank you, let us move on.")
    save_and_wait(app, client, "/circles/new", form(token(client, "/circles/new"), steps))
    saved = yaml.safe_load((data_dir / "scripts" / "new-circle.yaml").read_text())["steps"][1]
    assert saved["between_turns"] == {"say": ["Thank you.", {"pause": 1}, "Who is next?"]}
    assert saved["reminder"] == "Please begin to finish." and saved["wrap_up"] == "Thank you, let us move on."
    page = client.get("/circles/new-circle/edit").get_data(as_text=True)
    assert '<option value="spoken" selected>' in page
    assert "Who is next?</textarea>" in page and "Please begin to finish.</textarea>" in page


def test_a_rounds_own_words_are_checked_at_their_fields(app, client, data_dir, render):
    steps = _round_with_own_words(between="spoken", between_say="  ", reminder="Finish now [pause abc]")
    response = client.post("/circles/new", data=form(token(client, "/circles/new"), steps))
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "choose a bell" in html.split('id="err-s1_between_say"')[1].split("</span>")[0]
    steps = _round_with_own_words(between="spoken", between_say="Next, please.", reminder="Finish now [pause abc]")
    response = client.post("/circles/new", data=form(token(client, "/circles/new"), steps))
    assert response.status_code == 400
    assert "pause" in response.get_data(as_text=True).split('id="err-s1_reminder"')[1].split("</span>")[0]
    assert not (data_dir / "scripts" / "new-circle.yaml").exists() and render.calls == []


def test_a_rounds_own_words_are_kept_when_the_form_lacks_their_fields_and_cleared_when_emptied(
    app, client, data_dir
):
    steps = _round_with_own_words(between="spoken", between_say="Next, please.",
                                  reminder="Please begin to finish.", wrap_up="Thank you.")
    save_and_wait(app, client, "/circles/new", form(token(client, "/circles/new"), steps))
    url = "/circles/new-circle/edit"
    steps = three_steps()  # an older page: no fields for the round's own words
    steps[1].update(s1_orig="share", s1_between="spoken")
    save_and_wait(app, client, url, form(token(client, url), steps, script="new-circle"))
    saved = yaml.safe_load((data_dir / "scripts" / "new-circle.yaml").read_text())["steps"][1]
    assert saved["between_turns"] == {"say": "Next, please."}
    assert saved["reminder"] == "Please begin to finish." and saved["wrap_up"] == "Thank you."
    steps = _round_with_own_words(orig="share", between="chime", between_say="Next, please.", reminder="", wrap_up="")
    save_and_wait(app, client, url, form(token(client, url), steps, script="new-circle"))
    saved = yaml.safe_load((data_dir / "scripts" / "new-circle.yaml").read_text())["steps"][1]
    assert saved["between_turns"] == "chime" and "reminder" not in saved and "wrap_up" not in saved


def test_a_between_turns_prompt_the_voice_cannot_say_is_named_at_its_words(app, client, data_dir):
    steps = _round_with_own_words(between="spoken", between_say="Asante. Nani anafuata?")
    response = client.post("/circles/new", data=form(token(client, "/circles/new"), steps, op="check", language="sw"))
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "record" in html.split('id="err-s1_between_say"')[1].split("</span>")[0]
