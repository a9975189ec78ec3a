"""The editor and the studio for a circle in another language than the box's voice: every
prompt named where it is wrong, recorded one at a time, then saved."""

from __future__ import annotations

import io

import pytest
import yaml
from admin_forms import form_values
from takes_audio import tone_wav
from test_admin_support import FakeRender, make_app, ready_client, token

from device.datafolder import DataFolder
from device.script import DEFAULT_MESSAGES, Recording, load_script, parse_script

SPANISH = """script: circulo
version: 1
language: es
voice: en_US-joe-medium
steps:
  - id: bienvenida
    say: Bienvenidos al círculo.
  - id: ronda
    kind: round
    prompt: Cada persona comparte una cosa.
messages:
  help: Hagamos una pausa.
  wrap_up: Gracias por compartir.
  reminder: Un recordatorio amable.
  finished: El círculo ha terminado.
"""
SWAHILI_FORM = {"script": "mduara", "title": "Mduara wa jioni", "language": "sw", "voice": "",
                "nsteps": "2", "s0_id": "karibu", "s0_kind": "say", "s0_text": "Karibu kwenye mduara.",
                "s0_then": "wait_for_next", "s1_id": "zamu", "s1_kind": "round",
                "s1_text": "Kila mtu aseme jambo moja.", "s1_then": "wait_for_next", "s1_between": "soft_bell"}






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


def _put_spanish(data_dir):
    path = DataFolder(data_dir).script("circulo")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SPANISH, encoding="utf-8")


def test_the_spanish_circle_marks_every_prompt_at_its_field(client, data_dir):
    _put_spanish(data_dir)
    values = form_values(client.get("/circles/circulo/edit").get_data(as_text=True))
    assert {f"msg_{n}" for n in DEFAULT_MESSAGES} <= set(values)  # a field for every box message
    values["op"] = "check"
    page = client.post("/circles/circulo/edit", data=values).get_data(as_text=True)
    for name in DEFAULT_MESSAGES:  # each one marked at its own field
        assert f'id="err-msg_{name}"' in page, name
    assert 'id="err-s0_text"' in page and 'id="err-s1_text"' in page
    assert "en_US-joe-medium speaks English; this circle is in Spanish: record this, or add a Spanish voice" in page
    assert ">The box is ready</a>: the box&#39;s own words for this are English" in page  # which prompt, in words


def test_the_spanish_circle_can_now_be_saved_from_the_editor(app, client, data_dir, render):
    _put_spanish(data_dir)
    values = form_values(client.get("/circles/circulo/edit").get_data(as_text=True))
    for name in DEFAULT_MESSAGES:
        if not values[f"msg_{name}"].strip():
            values[f"msg_{name}"] = f"Mensaje {name.replace('_', ' ')}."
    values["allow_other_language"] = "on"  # the therapist accepts the English voice for Spanish words
    values["op"] = "save"
    response = client.post("/circles/circulo/edit", data=values)
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    assert app.extensions["circlebox"].renders.wait_idle(30)
    saved = load_script(DataFolder(data_dir).script("circulo")).script
    assert saved.version == 2 and saved.allow_other_language
    assert set(saved.messages) == set(DEFAULT_MESSAGES) and saved.message("help") == ("Hagamos una pausa.",)


def test_a_message_recorded_in_the_editor_is_no_longer_a_problem(client, data_dir):
    _put_spanish(data_dir)
    values = form_values(client.get("/circles/circulo/edit").get_data(as_text=True))
    values.update(op="check", msg_ready="Listo.")
    values["msg_resumed_recording"] = (io.BytesIO(tone_wav(330)), "seguimos.wav")
    page = client.post("/circles/circulo/edit", data=values, content_type="multipart/form-data").get_data(as_text=True)
    assert 'id="err-msg_ready"' in page  # written in Spanish, but the voice speaks English
    assert 'id="err-msg_resumed"' not in page  # recorded: nothing wrong with it
    assert 'id="err-msg_explain"' in page


def _studio_draft(client) -> str:
    response = client.post("/circles/new", data={**SWAHILI_FORM, "csrf_token": token(client, "/circles/new"),
                                                 "op": "studio"})
    assert response.status_code == 302 and response.location.endswith("/circles/mduara/studio/")
    return client.get("/circles/mduara/studio/").get_data(as_text=True)


def _take(client, prompt_id: str, data: bytes, words: str = "", name: str = "take.wav"):
    return client.post("/circles/mduara/studio/take", content_type="multipart/form-data", data={
        "csrf_token": token(client, "/circles/mduara/studio/"), "prompt": prompt_id, "words": words,
        "take": (io.BytesIO(data), name)}, follow_redirects=True)


def test_the_studio_lists_every_prompt_and_records_them_one_by_one(app, client, data_dir, render):
    page = _studio_draft(client)
    prompts = ["step:karibu", "step:zamu", *(f"msg:{n}" for n in DEFAULT_MESSAGES)]
    for pid in prompts:
        assert f'data-prompt="{pid}"' in page
    assert f"{len(prompts)} still need a recording" in page
    assert 'accept="audio/*" capture' in page  # the phone's recorder, even over plain http

    refused = _take(client, "step:karibu", tone_wav(440, level=0.002)).get_data(as_text=True)
    assert "Step 1 &#39;karibu&#39;: this recording is too quiet" in refused
    assert f"{len(prompts)} still need a recording" in refused  # nothing changed

    for i, pid in enumerate(prompts):
        words = "Karibu kwenye mduara." if pid == "step:karibu" else f"maneno {i}"
        assert _take(client, pid, tone_wav(200 + 20 * i), words).status_code == 200
    page = client.get("/circles/mduara/studio/").get_data(as_text=True)
    assert "every prompt is ready" in page
    draft = yaml.safe_load(DataFolder(data_dir).draft("mduara").read_text(encoding="utf-8"))
    first = draft["steps"][0]["say"]
    assert first["text"] == "Karibu kwenye mduara." and (DataFolder(data_dir).recordings / first["audio"]).is_file()

    response = client.post("/circles/mduara/studio/save", data={"csrf_token": token(client, "/circles/mduara/studio/")})
    assert response.status_code == 302 and "/circles/jobs/" in response.location
    assert app.extensions["circlebox"].renders.wait_idle(30)
    saved = load_script(DataFolder(data_dir).script("mduara")).script
    assert saved.voice is None
    assert all(isinstance(p, Recording) for parts in saved.prompts().values() for p in parts)


def test_save_is_refused_while_prompts_miss_a_recording(client, data_dir):
    _studio_draft(client)
    page = client.post("/circles/mduara/studio/save", data={"csrf_token": token(client, "/circles/mduara/studio/")},
                       follow_redirects=True).get_data(as_text=True)
    draft = parse_script(DataFolder(data_dir).draft("mduara").read_text(encoding="utf-8"), "draft").script
    every_prompt = len(draft.prompts())  # none recorded yet: every prompt of the circle waits
    assert f"{every_prompt} prompts are not ready yet: Step 1 &#39;karibu&#39;: has words but no recording" in page
    assert not DataFolder(data_dir).script("mduara").exists()


def test_deleting_a_take_gives_the_prompt_its_words_back(client, data_dir):
    _studio_draft(client)
    _take(client, "step:karibu", tone_wav(300), "Karibu kwenye mduara.")
    _take(client, "msg:ready", tone_wav(350), "Tayari.")
    for pid in ("step:karibu", "msg:ready"):
        client.post("/circles/mduara/studio/delete", data={
            "csrf_token": token(client, "/circles/mduara/studio/"), "prompt": pid})
    draft = yaml.safe_load(DataFolder(data_dir).draft("mduara").read_text(encoding="utf-8"))
    assert draft["steps"][0]["say"] == "Karibu kwenye mduara."
    assert draft["messages"]["ready"] == "Tayari."
