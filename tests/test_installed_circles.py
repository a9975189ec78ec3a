"""Circles a content bundle installed, on the admin page: listed, marked, copied to be edited.

The bundle is built and installed with the real `circlebox bundle` commands into the admin
page's data folder, as on a box; the page and the runtime answer "which circle, from where"
with the same resolver (device.content.resolve_circle).
"""

from __future__ import annotations

import pytest
from test_admin_editor import save_and_wait
from test_admin_support import FakeRender, make_app, ready_client, token
from test_update_bundle import fake_render

from device.cli import main
from device.content import Origin, resolve_circle
from device.datafolder import DataFolder
from device.script import packaged_scripts_dir


@pytest.fixture
def data(tmp_path) -> DataFolder:
    """A box whose content bundle version 4 installed `friday-circle`."""
    keys = tmp_path / "keys"
    assert main(["bundle", "keygen", "--out", str(keys)]) == 0
    laptop = tmp_path / "laptop"
    laptop.mkdir()
    script = laptop / "friday-circle.yaml"
    text = (packaged_scripts_dir() / "three-step-circle.yaml").read_text()
    script.write_text(text.replace("script: three-step-circle", "script: friday-circle", 1)
                      .replace("title: ", "title: Friday ", 1))
    fake_render(script, laptop / "cache")
    bundle = tmp_path / "content-4.cbx"
    assert main(["bundle", "build", "--key", str(keys / "circlebox-signing.key"), "--kind", "content",
                 "--version", "4", "--script", str(script), "--cache", str(laptop / "cache"),
                 "--out", str(bundle)]) == 0
    box = DataFolder(tmp_path / "data")
    assert main(["bundle", "apply", str(bundle), "--root", str(box.root),
                 "--pubkey", str(keys / "circlebox-signing.pub"), "--stay-up", "0"]) == 0
    return box


@pytest.fixture
def app(data):
    return make_app(data.root, render=FakeRender())


@pytest.fixture
def client(app, data):
    return ready_client(app, data.root)


def card(page: str, script_id: str) -> str:
    """The list entry of one circle on the circles page."""
    found = [c for c in page.split('<li class="card circle">')[1:] if f"{script_id} · version" in c]
    assert len(found) == 1, page
    return found[0].split("</li>")[0]


def test_the_resolver_says_the_circle_comes_from_the_content_bundle(data):
    source = resolve_circle("friday-circle", data)
    assert source.origin is Origin.INSTALLED and source.release_version == 4
    assert source.cache == data.installed_cache and not source.editable


def test_an_installed_circle_is_listed_marked_installed_and_not_editable_in_place(client, data):
    page = client.get("/circles/").get_data(as_text=True)
    friday = card(page, "friday-circle")
    assert "installed (content bundle version 4)" in friday
    assert "/circles/friday-circle/edit" not in friday and "Copy to edit" in friday
    assert "/circles/three-step-circle/edit" in card(page, "three-step-circle")  # a packaged one: edit saves a copy
    response = client.get("/circles/friday-circle/edit")
    assert response.status_code == 302
    after = client.get(response.location).get_data(as_text=True)
    assert "installed by a content bundle and is not changed on the box" in after
    assert not data.script("friday-circle").exists()


def test_copy_to_edit_makes_a_box_copy(app, client, data):
    tok = token(client, "/circles/")
    page = client.post("/circles/friday-circle/copy", data={"csrf_token": tok, "new_id": "my-friday"})
    assert page.status_code == 200 and "Friday" in page.get_data(as_text=True)
    form = {"csrf_token": tok, "op": "save", "script": "my-friday", "title": "My Friday", "language": "en_US",
            "voice": "en_US-joe-medium", "nsteps": "1", "s0_orig": "", "s0_id": "welcome", "s0_kind": "say",
            "s0_text": "Welcome.", "s0_then": "wait_for_next"}
    job = save_and_wait(app, client, "/circles/new", form)
    assert job["state"] == "done", job
    assert resolve_circle("my-friday", data).origin is Origin.BOX
    assert "/circles/my-friday/edit" in card(client.get("/circles/").get_data(as_text=True), "my-friday")


def test_using_an_installed_circle_marks_it_as_the_one_on_the_box(app, client, data):
    tok = token(client, "/circles/")
    response = client.post("/circles/friday-circle/use", data={"csrf_token": tok})
    assert response.status_code == 302
    assert app.extensions["circlebox"].config.session.script == "friday-circle"
    page = client.get("/circles/").get_data(as_text=True)
    on_the_box = '<span class="badge on">on the box</span>'
    assert on_the_box in card(page, "friday-circle") and on_the_box not in card(page, "three-step-circle")
    assert "from its next circle" not in page  # the old untruthful promise (the runtime read its config once)


def test_use_on_the_box_tells_the_running_box_and_says_when_it_plays_the_circle(app, client, data):
    """After session.script is saved the page asks the runtime to reload over the control socket
    (the real ControlServer here) and repeats its answer; with no box running it says so."""
    from test_admin_support import FakeBox

    from device.control import ControlServer, socket_path

    tok = token(client, "/circles/")
    off = client.post("/circles/friday-circle/use", data={"csrf_token": tok}, follow_redirects=True)
    assert "The box is off: it will use friday-circle when it starts." in off.get_data(as_text=True)

    seen: list[str] = []

    def reload(request: dict) -> dict:
        seen.append(data.admin_config.read_text())  # the runtime is told after the save
        return {"ok": True, "when": "after_circle"}

    box = FakeBox()
    server = ControlServer(socket_path(data.root), box.status, box.dispatch, handlers={"reload": reload}).start()
    try:
        page = client.post("/circles/three-step-circle/use", data={"csrf_token": tok}, follow_redirects=True)
    finally:
        server.close()
    assert "script: three-step-circle" in seen[0]
    text = page.get_data(as_text=True)
    assert "A circle is running: the box will use three-step-circle when this circle ends." in text


def test_saving_the_circle_the_box_plays_tells_the_box_and_says_when(tmp_path):
    """A new version of the circle the box runs is announced to the runtime once it is live (the
    runtime then plays it without waiting for its own file check); a circle the box does not
    run says how to put it on the box."""
    from test_admin_editor import form, save_and_wait, three_steps
    from test_admin_support import FakeBox

    from device.control import ControlServer, socket_path

    data = DataFolder(tmp_path / "data")
    data.root.mkdir()
    data.admin_config.write_text("session: {script: new-circle}\n")
    app = make_app(data.root, render=FakeRender())
    client = ready_client(app, data.root)
    seen: list[bool] = []

    def reload(request: dict) -> dict:
        seen.append(data.script("new-circle").exists())  # told after the switch, never before
        return {"ok": True, "when": "now"}

    box = FakeBox()
    server = ControlServer(socket_path(data.root), box.status, box.dispatch, handlers={"reload": reload}).start()
    try:
        job = save_and_wait(app, client, "/circles/new", form(token(client, "/circles/new"), three_steps()))
    finally:
        server.close()
    assert seen == [True]
    assert job["message"].endswith("The box is using version 1 now."), job

    other = save_and_wait(app, client, "/circles/new",
                          form(token(client, "/circles/new"), three_steps(), script="other-circle"))
    assert seen == [True]  # not told: the box does not run it
    assert other["message"].endswith('Press "Use on the box" on the Circles page to play it.'), other
