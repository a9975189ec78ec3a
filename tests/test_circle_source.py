"""One answer to "which circle does the box play, and from where" (device.content.resolve_circle).

The runtime, the doctor, the admin page, `render` and `bundle build` all ask it; these tests pin
down its answer for each origin and that what it names is what the runtime loads.
"""

from __future__ import annotations

import shutil

import pytest

from device.content import Origin, load_configured_circle, resolve_circle, system_manifest_for
from device.datafolder import DataFolder
from local_admin import store


def install(data: DataFolder, script_id: str, text: str, *, from_cache: DataFolder) -> None:
    """What `bundle apply` leaves for a content bundle: current/content/{scripts,cache}; its
    cache holds the circle's set and prompts only (no system set of its own)."""
    data.installed_scripts.mkdir(parents=True)
    (data.installed_scripts / f"{script_id}.yaml").write_text(text)
    shutil.copytree(from_cache.cache / "prompts", data.installed_cache / "prompts")
    (data.installed_cache / "sets").mkdir()
    shutil.copy(from_cache.cache / "sets" / f"{script_id}.json", data.installed_cache / "sets")


@pytest.fixture
def data(box_data) -> DataFolder:
    return DataFolder(box_data)


def test_the_box_copy_plays_when_nothing_newer_is_installed(data):
    source = resolve_circle("three-step-circle", data)
    assert source.origin is Origin.BOX and source.cache == data.cache and source.editable
    assert load_configured_circle("three-step-circle", data.root).loaded.text == source.loaded.text


def test_a_newer_installed_version_wins_and_plays_from_its_release_with_the_box_own_prompts(data, tmp_path):
    """A programme's update of the circle the box runs (same id, higher version) takes over; its
    sounds come from the release, the box's own prompts (help, setup code) from the box's cache."""
    text = data.script("three-step-circle").read_text().replace("version: 1", "version: 2", 1)
    install(data, "three-step-circle", text, from_cache=data)
    source = resolve_circle("three-step-circle", data)
    assert source.origin is Origin.INSTALLED and source.version == 2 and source.cache == data.installed_cache
    assert not source.editable
    assert system_manifest_for(source) == data.cache / "sets" / "system.json"
    # what the admin page's panel lists is the circle that plays
    assert [s for s, _ in store.active_steps(data.root, "three-step-circle")] == [
        s.id for s in source.loaded.script.steps]
    assert next(c for c in store.list_circles(data.root) if c.id == "three-step-circle").shadowed is not None


def test_an_installed_circle_plays_with_the_system_prompts_the_box_rendered(data):
    text = data.script("three-step-circle").read_text().replace("version: 1", "version: 2", 1)
    install(data, "three-step-circle", text, from_cache=data)
    (data.cache / "sets" / "three-step-circle.json").unlink()  # the circle's sounds: only in the release
    circle = load_configured_circle("three-step-circle", data.root)
    assert circle.loaded.script.version == 2
    assert any(k.startswith("sys:") for k in circle.bank.ids())


def test_no_such_circle_names_every_place_it_looked(data):
    from device.script import ScriptError

    with pytest.raises(ScriptError) as caught:
        resolve_circle("friday-circle", data)
    message = str(caught.value)
    assert str(data.scripts) in message and str(data.installed_scripts) in message


def test_render_finds_the_circle_the_box_plays_and_leaves_an_installed_release_alone(data, capsys):
    from device.cli import main

    text = data.script("three-step-circle").read_text().replace("version: 1", "version: 2", 1)
    install(data, "three-step-circle", text, from_cache=data)
    (data.cache / "sets" / "three-step-circle.json").unlink()
    assert main(["--data", str(data.root), "render", "three-step-circle"]) == 0
    out = capsys.readouterr().out
    assert "installed by a content bundle" in out and "nothing to render" in out
    assert str(data.installed_cache / "sets" / "three-step-circle.json") in out
    assert not (data.cache / "sets" / "three-step-circle.json").exists()  # no render for a copy not played
