"""Random bytes and mutated bundles never crash the reader: they verify, or they are refused
with a code. Nothing else may escape (no tarfile, JSON, pydantic or Unicode errors)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from fuzzing import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st
from test_update_helpers import Keys, good_bundle, manifest_for

from device.update.box import Box
from device.update.errors import Refusal
from device.update.installer import verify_bundle
from device.update.manifest import parse_manifest

KEYS = Keys()
_TMP = Path(tempfile.mkdtemp(prefix="cbx-fuzz-"))
GOOD = good_bundle(_TMP, KEYS, 2, files={"a/b.txt": b"hello" * 50, "c.bin": bytes(range(256)) * 4}).read_bytes()
BOX = Box(root=_TMP / "root", trusted_keys=KEYS.trusted)
FUZZ = fuzz_settings(100)


def check(data: bytes) -> None:
    path = _TMP / "fuzz.cbx"
    path.write_bytes(data)
    try:
        verify_bundle(path, BOX)
    except Refusal as exc:
        assert exc.code.startswith("U") and exc.detail


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_are_refused_cleanly(data):
    check(data)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(1, 255)), min_size=1, max_size=4))
def test_flipped_bytes_verify_or_are_refused(flips):
    data = bytearray(GOOD)
    for at, xor in flips:
        data[at] ^= xor
    check(bytes(data))


@FUZZ
@given(st.integers(0, len(GOOD)), st.binary(max_size=600))
def test_truncated_or_spliced_bundles(cut, tail):
    check(GOOD[:cut] + tail)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
MANIFEST_KEYS = [
    "format",
    "compatible",
    "kind",
    "version",
    "min_installed_version",
    "created",
    "description",
    "files",
    "extra_key",
]
FILE_KEYS = ["path", "size", "sha256", "mode", "extra_key"]


@fuzz_settings(80)
@given(st.sampled_from(MANIFEST_KEYS), st.sampled_from(FILE_KEYS), st.booleans(), JSON)
def test_a_valid_manifest_with_any_field_changed_is_parsed_or_refused(key, file_key, in_file, value):
    """One field of a good manifest (or of its first file) set to any JSON value."""
    manifest = manifest_for({"a/b.txt": b"hello"})
    if in_file:
        manifest["files"][0][file_key] = value
    else:
        manifest[key] = value
    try:
        parsed = parse_manifest(json.dumps(manifest).encode())
    except Refusal as exc:
        assert exc.code == "U02" and exc.detail
    else:  # accepted: then it really is a sane manifest
        assert parsed.version > parsed.min_installed_version >= 0
        assert all(".." not in e.path.split("/") and e.mode in (0o644, 0o755) for e in parsed.files)
