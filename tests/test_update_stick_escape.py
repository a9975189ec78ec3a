"""A hostile stick cannot make root write anywhere but on the stick (security review, issue 12):
a `circlebox` folder that is a symlink, a box name like `../../../x`, an `updates` folder or a
bundle that is a symlink, a FIFO named like a bundle."""

from __future__ import annotations

import os

import pytest
from test_update_helpers import FakeClock, Keys, RecordingAnnouncer, good_bundle, make_box
from test_update_usb import FakeUsage

from device.update import messages as M
from device.update.factory import read_box_id
from device.update.usb import find_bundles, import_from_stick


@pytest.fixture
def setup(tmp_path):
    keys = Keys()
    clock = FakeClock()
    box = make_box(tmp_path / "root", keys, clock, announcer=RecordingAnnouncer(clock))
    stick = tmp_path / "stick"
    stick.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    return keys, box, stick, outside


def test_circlebox_folder_that_is_a_symlink_is_not_followed(setup):
    keys, box, stick, outside = setup
    (stick / "circlebox").symlink_to(outside)
    good_bundle(stick, keys, 1, name="app-1.cbx")
    usage = FakeUsage()
    report = import_from_stick(stick, box, "box7", usage)
    assert report["code"] == M.UPDATED  # the install itself is fine
    assert list(outside.iterdir()) == []  # but nothing was written off the stick
    assert "symbolic link" in report["write_error"]
    assert usage.marked == []
    assert box.seams.announcer.codes[-2:] == [M.DATA_NOT_SAVED, M.REMOVE_STICK]


def test_box_folder_that_is_a_symlink_is_not_followed(setup):
    _keys, box, stick, outside = setup
    (stick / "circlebox").mkdir()
    (stick / "circlebox" / "box7").symlink_to(outside)
    report = import_from_stick(stick, box, "box7", FakeUsage())
    assert list(outside.iterdir()) == [] and "symbolic link" in report["write_error"]


def test_a_planted_report_name_is_replaced_not_written_through(setup, monkeypatch):
    _keys, _box, stick, outside = setup
    folder = stick / "circlebox" / "box7"
    folder.mkdir(parents=True)
    victim = outside / "victim"
    victim.write_text("untouched\n")
    monkeypatch.setattr("device.update.field_export.exists_at", lambda fd, name: False)
    import device.update.field_export as fe

    stamp_name = "report-20260101T000000Z-001.json"
    (folder / stamp_name).symlink_to(victim)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        from datetime import UTC, datetime

        fe.write_report(fd, {"ok": True}, now=datetime(2026, 1, 1, tzinfo=UTC))
    finally:
        os.close(fd)
    assert victim.read_text() == "untouched\n"
    assert not (folder / stamp_name).is_symlink()


@pytest.mark.parametrize("name", ["../../../x", "..", "a/b", ".hidden", "", "x" * 80])
def test_box_names_that_are_not_one_folder_are_refused(setup, name):
    _keys, box, stick, outside = setup
    report = import_from_stick(stick, box, name, FakeUsage())
    assert "box name" in report["write_error"]
    assert not (stick / "circlebox").exists() or list((stick / "circlebox").iterdir()) == []
    assert list(outside.iterdir()) == [] and not (stick.parent / "x").exists()


def test_box_id_file_is_validated_and_not_followed(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "box-id").write_text("../../../x\n")
    assert read_box_id(data, "fallback") == "fallback"
    (data / "box-id").unlink()
    secret = tmp_path / "secret"
    secret.write_text("clinic7\n")
    (data / "box-id").symlink_to(secret)
    assert read_box_id(data, "fallback") == "fallback"
    (data / "box-id").unlink()
    (data / "box-id").write_text("clinic-7\n")
    assert read_box_id(data, "fallback") == "clinic-7"


def test_updates_folder_that_is_a_symlink_is_not_looked_into(setup, tmp_path):
    keys, _box, stick, outside = setup
    good_bundle(outside, keys, 1, name="app-1.cbx")
    (stick / "updates").symlink_to(outside)
    assert find_bundles(stick) == []


def test_a_fifo_named_like_a_bundle_does_not_hang_the_updater(setup):
    _keys, box, stick, _outside = setup
    os.mkfifo(stick / "app-1.cbx")
    report = import_from_stick(stick, box, "box7")
    assert report["results"] == [] or report["results"][0]["code"] == M.DAMAGED
