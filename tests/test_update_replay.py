"""Replay after the journal is lost: the review deleted update/state.json (reachable then through
the admin service) and an old signed bundle installed again. The highest installed version is
also kept apart from the journal, so losing the journal never reopens the door."""

from __future__ import annotations

import pytest
from test_update_helpers import Keys, good_bundle, make_box

from device.update import messages as M
from device.update.installer import apply_bundle
from device.update.release import current_release
from device.update.state import floor_path, state_path


@pytest.fixture
def box_v3(tmp_path):
    keys = Keys()
    box = make_box(tmp_path / "root", keys)
    old = good_bundle(tmp_path, keys, 2, name="app-2.cbx")
    assert apply_bundle(old, box).code == M.UPDATED
    assert apply_bundle(good_bundle(tmp_path, keys, 3), box).code == M.UPDATED
    return box, keys, old


def test_old_signed_bundle_is_refused_after_the_journal_is_deleted(box_v3):
    box, _keys, old = box_v3
    state_path(box.root).unlink()
    result = apply_bundle(old, box)
    assert result.code == M.OLDER, result
    assert current_release(box.root, "app") == "app-3"


def test_same_version_is_refused_after_the_journal_is_deleted(box_v3, tmp_path):
    box, keys, _old = box_v3
    state_path(box.root).unlink()
    again = good_bundle(tmp_path, keys, 3, name="app-3-rebuilt.cbx")
    assert apply_bundle(again, box).code == M.ALREADY_INSTALLED
    assert current_release(box.root, "app") == "app-3"


def test_journal_and_link_both_gone_the_floor_file_still_refuses(box_v3):
    box, _keys, old = box_v3
    state_path(box.root).unlink()
    (box.root / "current" / "app").unlink()
    assert apply_bundle(old, box).code == M.OLDER


def test_floor_file_gone_the_running_release_still_refuses(box_v3):
    box, _keys, old = box_v3
    state_path(box.root).unlink()
    floor_path(box.root).unlink()
    assert apply_bundle(old, box).code == M.OLDER


def test_a_newer_bundle_still_installs_after_the_journal_is_lost(box_v3, tmp_path):
    box, keys, _old = box_v3
    state_path(box.root).unlink()
    assert apply_bundle(good_bundle(tmp_path, keys, 4), box).code == M.UPDATED
