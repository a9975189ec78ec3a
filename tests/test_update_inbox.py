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
    (root / "releases").mkdir()
    before = tree_hash(root / "releases")
    [result] = process_inbox(root, box)
    assert not result.ok and result.code in (M.DAMAGED, M.BAD_SIGNATURE)
    assert tree_hash(root / "releases") == before


class CountingStream:
    """A request body that records how it is read (the admin page hands over request.stream)."""

    def __init__(self, data: bytes):
        self.data, self.pos, self.reads = data, 0, []

    def read(self, n: int = -1) -> bytes:
        self.reads.append(n)
        n = len(self.data) - self.pos if n < 0 else n
        chunk = self.data[self.pos : self.pos + n]
        self.pos += len(chunk)
        return chunk


def test_a_large_upload_streams_to_the_inbox_in_bounded_chunks(tmp_path):
    from device.update.inbox import CHUNK
    from device.update.upload import receive_upload

    keys = Keys()
    bundle = good_bundle(tmp_path, keys, 4, files={"voice/model.onnx": bytes(5 * CHUNK + 123)}, kind="voice")
    body = CountingStream(bundle.read_bytes())
    landed = receive_upload(body, len(body.data), tmp_path / "box")
    assert landed.read_bytes() == body.data
    assert body.reads and all(0 < n <= CHUNK for n in body.reads)  # never "read it all"


def test_an_upload_over_the_limit_is_refused_before_it_is_read(tmp_path):
    from device.update.upload import receive_upload

    body = CountingStream(b"x" * 100)
    with pytest.raises(UploadRefused, match="larger than"):
        receive_upload(body, 3 * 1024 * 1024, tmp_path, max_bytes=2 * 1024 * 1024)
    with pytest.raises(UploadRefused, match="room for"):
        receive_upload(body, 10**15, tmp_path, max_bytes=10**16)
    with pytest.raises(UploadRefused, match="did not say its size"):
        receive_upload(body, None, tmp_path)
    assert body.reads == []


def test_a_cut_off_upload_leaves_nothing(tmp_path):
    from device.update.upload import receive_upload

    keys = Keys()
    data = good_bundle(tmp_path, keys, 4).read_bytes()
    with pytest.raises(UploadRefused, match="stopped before"):
        receive_upload(CountingStream(data[:1000]), len(data), tmp_path / "box")
    assert list(inbox_dir(tmp_path / "box").iterdir()) == []
