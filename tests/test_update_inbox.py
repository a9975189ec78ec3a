"""Admin-page uploads: streamed into the inbox, installed by the root updater's same path."""

from __future__ import annotations

import tarfile

import pytest
from test_update_helpers import Keys, good_bundle, make_box, tree_hash

from device.update import messages as M
from device.update.inbox import UploadRefused, accept_upload, inbox_dir, process_inbox
from device.update.state import load_last_result


def chunks(data: bytes, size: int = 4096):
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_a_real_bundle_is_accepted_then_installed_and_removed(tmp_path):
    keys = Keys()
    root = tmp_path / "box"
    root.mkdir()
    bundle = good_bundle(tmp_path, keys, 4, name="content-4.cbx")
    landed = accept_upload(chunks(bundle.read_bytes()), root)
    assert landed.parent == inbox_dir(root) and landed.suffix == ".cbx"
    assert landed.read_bytes() == bundle.read_bytes()
    [result] = process_inbox(root, make_box(root, keys))
    assert result.code == M.UPDATED
    assert list(inbox_dir(root).iterdir()) == []
    assert load_last_result(root)["code"] == M.UPDATED


def test_junk_and_oversize_never_reach_the_inbox(tmp_path):
    with pytest.raises(UploadRefused, match="not a Circlebox update file"):
        accept_upload(chunks(b"MZ" + bytes(5000)), tmp_path)
    with pytest.raises(UploadRefused, match="larger than"):
        accept_upload(chunks(bytes(3 * 1024 * 1024)), tmp_path, max_bytes=2 * 1024 * 1024)
    assert list(inbox_dir(tmp_path).iterdir()) == []  # no .part left behind either


def test_a_tampered_upload_is_refused_by_the_updater_and_nothing_changes(tmp_path):
    keys = Keys()
    root = tmp_path / "box"
    root.mkdir()
    box = make_box(root, keys)
    path = good_bundle(tmp_path, keys, 5, name="c.cbx")
    with tarfile.open(path) as tar:
        payload = next(m for m in tar.getmembers() if m.name.startswith("payload/") and m.isfile() and m.size)
    data = bytearray(path.read_bytes())
    data[payload.offset_data] ^= 0xFF  # a payload byte flipped after signing
    accept_upload(chunks(bytes(data)), root)
    before = tree_hash(root / "releases") if (root / "releases").exists() else None
    [result] = process_inbox(root, box)
    assert not result.ok and result.code in (M.DAMAGED, M.BAD_SIGNATURE)
    assert (tree_hash(root / "releases") if (root / "releases").exists() else None) == before
