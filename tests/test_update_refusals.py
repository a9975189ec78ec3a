"""Every hostile or wrong bundle is refused with its code and a precise detail, and the box's
install (the whole root tree) is byte-for-byte untouched."""

from __future__ import annotations

import os
import tarfile

import pytest
from test_update_helpers import (
    Keys,
    good_bundle,
    header,
    make_box,
    manifest_for,
    member,
    raw_bundle,
    tree_hash,
)

from device.update import messages as M
from device.update.installer import apply_bundle
from device.update.manifest import Limits

FILES = {"app/main.py": b"print('v2')\n", "app/x.bin": b"\x00\x01\x02" * 10}


@pytest.fixture
def box_v1(tmp_path):
    keys = Keys()
    root = tmp_path / "root"
    box = make_box(root, keys)
    assert apply_bundle(good_bundle(tmp_path, keys, 1), box).code == M.UPDATED
    return box, keys, tmp_path


def refused(box, bundle, code, phrase):
    before = tree_hash(box.root)
    result = apply_bundle(bundle, box)
    assert result.code == code, result
    assert phrase in result.detail, result.detail
    assert tree_hash(box.root) == before
    assert box.seams.announcer.codes[-1] == code  # the box says why
    return result


def payload(files=FILES):
    return [member(f"payload/{p}", d) for p, d in files.items()]


def test_unsigned_no_sig_member(box_v1):
    box, _keys, tmp = box_v1
    bundle = raw_bundle(tmp / "b.cbx", header(manifest_for(FILES), None) + payload())
    refused(box, bundle, M.UNSIGNED, "no manifest.sig")


def test_unsigned_empty_sig(box_v1):
    box, _keys, tmp = box_v1
    members = [*header(manifest_for(FILES), None), member("manifest.sig", b""), *payload()]
    refused(box, raw_bundle(tmp / "b.cbx", members), M.UNSIGNED, "empty")


def test_unsigned_payload_only(box_v1):
    box, _keys, tmp = box_v1
    refused(box, raw_bundle(tmp / "b.cbx", payload()), M.UNSIGNED, "no manifest.json")


def test_unknown_key(box_v1):
    box, _keys, tmp = box_v1
    stranger = Keys()
    bundle = raw_bundle(tmp / "b.cbx", header(manifest_for(FILES), stranger) + payload())
    refused(box, bundle, M.UNKNOWN_KEY, "this box trusts")


def test_manifest_changed_after_signing(box_v1):
    box, keys, tmp = box_v1
    (_mf, _), (sig, sig_data) = header(manifest_for(FILES), keys)
    changed = manifest_for(FILES, description="now with extra powers")
    members = [*header(changed, None), (sig, sig_data), *payload()]
    refused(box, raw_bundle(tmp / "b.cbx", members), M.BAD_SIGNATURE, "does not match")


def test_truncated_signature(box_v1):
    box, keys, tmp = box_v1
    (mf, mf_data), (_sig, sig_data) = header(manifest_for(FILES), keys)
    magic, kid, b64 = sig_data.decode().split()
    short = f"{magic} {kid} {b64[:44]}\n".encode()  # 32 of 64 bytes
    members = [(mf, mf_data), member("manifest.sig", short), *payload()]
    refused(box, raw_bundle(tmp / "b.cbx", members), M.BAD_SIGNATURE, "truncated")


def test_garbage_signature(box_v1):
    box, _keys, tmp = box_v1
    members = [
        *header(manifest_for(FILES), None),
        member("manifest.sig", b"\xff\xfe junk"),
        *payload(),
    ]
    refused(box, raw_bundle(tmp / "b.cbx", members), M.BAD_SIGNATURE, "damaged")


def test_payload_byte_flipped_after_signing(box_v1):
    box, keys, tmp = box_v1
    bundle = good_bundle(tmp, keys, 2, files={"app/a.txt": b"A" * 5000})
    data = bytearray(bundle.read_bytes())
    at = data.index(b"A" * 5000) + 1234
    data[at] ^= 0x01
    bundle.write_bytes(bytes(data))
    refused(box, bundle, M.DAMAGED, "does not match its sha256")


def test_missing_member(box_v1):
    box, keys, tmp = box_v1
    members = header(manifest_for(FILES), keys) + payload()[:1]
    refused(box, raw_bundle(tmp / "b.cbx", members), M.DAMAGED, "missing from the bundle")


def test_extra_member(box_v1):
    box, keys, tmp = box_v1
    members = header(manifest_for(FILES), keys) + payload() + [member("payload/app/evil.py", b"x")]
    refused(box, raw_bundle(tmp / "b.cbx", members), M.DAMAGED, "not listed in the manifest")


def test_member_outside_payload(box_v1):
    box, keys, tmp = box_v1
    members = [*header(manifest_for(FILES), keys), member("etc/cron.d/x", b"x"), *payload()]
    refused(box, raw_bundle(tmp / "b.cbx", members), M.DAMAGED, "outside payload/")


def test_duplicate_member(box_v1):
    box, keys, tmp = box_v1
    members = header(manifest_for(FILES), keys) + payload() + payload()[:1]
    refused(box, raw_bundle(tmp / "b.cbx", members), M.DAMAGED, "appears twice")


def test_duplicate_path_in_manifest(box_v1):
    box, keys, tmp = box_v1
    mf = manifest_for(FILES)
    mf["files"].append(mf["files"][0])
    refused(box, raw_bundle(tmp / "b.cbx", header(mf, keys) + payload()), M.DAMAGED, "listed twice")


def test_wrong_size(box_v1):
    box, keys, tmp = box_v1
    mf = manifest_for(FILES)
    members = [*header(mf, keys), member("payload/app/main.py", b"print('v2')\n!"), payload()[1]]
    refused(box, raw_bundle(tmp / "b.cbx", members), M.DAMAGED, "the manifest says")


@pytest.mark.parametrize(
    "name, phrase",
    [
        ("payload/../../etc/passwd", "'..'"),
        ("payload/app/../../x", "'..'"),
        ("/etc/passwd", "absolute"),
        ("payload//app/main.py", "empty"),
    ],
)
def test_unsafe_member_paths(box_v1, name, phrase):
    box, keys, tmp = box_v1
    members = [*header(manifest_for(FILES), keys), member(name, b"x"), *payload()]
    refused(box, raw_bundle(tmp / "b.cbx", members), M.DAMAGED, phrase)


@pytest.mark.parametrize("path", ["../evil", "/abs/evil", "app/./x", ".circlebox/manifest.json", "a\\b"])
def test_unsafe_paths_in_signed_manifest(box_v1, path):
    box, keys, tmp = box_v1
    refused(
        box,
        raw_bundle(tmp / "b.cbx", header(manifest_for({path: b"x"}), keys) + payload()),
        M.DAMAGED,
        "manifest is not valid",
    )


@pytest.mark.parametrize(
    "type_, phrase",
    [
        (tarfile.SYMTYPE, "symbolic link"),
        (tarfile.LNKTYPE, "hard link"),
        (tarfile.CHRTYPE, "character device"),
        (tarfile.BLKTYPE, "block device"),
        (tarfile.FIFOTYPE, "FIFO"),
        (tarfile.DIRTYPE, "directory"),
    ],
)
def test_special_members(box_v1, type_, phrase):
    box, keys, tmp = box_v1
    files = {"app/main.py": b""}  # listed with the special member's name and size 0
    special = member("payload/app/main.py", type_=type_, linkname="/etc/shadow")
    members = [*header(manifest_for(files), keys), special]
    refused(box, raw_bundle(tmp / "b.cbx", members), M.DAMAGED, phrase)


def test_oversize_manifest(box_v1):
    box, keys, tmp = box_v1
    box.limits = Limits(max_manifest=300, reserve=0)
    mf = manifest_for(FILES, description="x" * 150)
    refused(box, raw_bundle(tmp / "b.cbx", header(mf, keys) + payload()), M.DAMAGED, "the limit is 300")


def test_oversize_signature_member(box_v1):
    box, _keys, tmp = box_v1
    members = [*header(manifest_for(FILES), None), member("manifest.sig", b"A" * 4096), *payload()]
    refused(box, raw_bundle(tmp / "b.cbx", members), M.DAMAGED, "the limit is 512")


def test_oversize_member(box_v1):
    box, keys, tmp = box_v1
    box.limits = Limits(max_member=1000, reserve=0)
    bundle = good_bundle(tmp, keys, 2, files={"big.bin": b"b" * 1001})
    refused(box, bundle, M.DAMAGED, "the limit is 1000")


def test_oversize_total(box_v1):
    box, keys, tmp = box_v1
    box.limits = Limits(max_total=1500, reserve=0)
    bundle = good_bundle(tmp, keys, 2, files={"a.bin": b"a" * 1000, "b.bin": b"b" * 1000})
    refused(box, bundle, M.DAMAGED, "the limit is 1500")


def test_too_little_space_to_copy(box_v1):
    box, keys, tmp = box_v1
    box.seams.free_bytes = lambda path: 1000
    refused(box, good_bundle(tmp, keys, 2), M.NO_SPACE, "bytes free")


def test_too_little_space_to_extract(box_v1):
    box, keys, tmp = box_v1
    answers = iter([10**9, 100])  # enough for the copy, then the disk filled up
    box.seams.free_bytes = lambda path: next(answers)
    refused(box, good_bundle(tmp, keys, 2), M.NO_SPACE, "bytes free")


def test_wrong_device(box_v1):
    box, keys, tmp = box_v1
    refused(
        box,
        good_bundle(tmp, keys, 2, compatible="circlebox-pi-v9"),
        M.WRONG_DEVICE,
        "circlebox-pi-v9",
    )


def test_downgrade(box_v1):
    box, keys, tmp = box_v1
    assert apply_bundle(good_bundle(tmp, keys, 3), box).code == M.UPDATED
    refused(box, good_bundle(tmp, keys, 2), M.OLDER, "older than installed version 3")


def test_replay_of_installed_version(box_v1):
    box, keys, tmp = box_v1
    refused(box, good_bundle(tmp, keys, 1, name="other-1.cbx"), M.ALREADY_INSTALLED, "replay")


def test_needs_earlier_version(box_v1):
    box, keys, tmp = box_v1
    refused(box, good_bundle(tmp, keys, 5, min_installed=3), M.NEEDS_EARLIER, "needs app version 3")


@pytest.mark.parametrize(
    "content, phrase",
    [
        (b"", "empty"),
        (b"this is a shopping list, not an update\n" * 20, "not a tar archive"),
        (os.urandom(10_000), "not a"),
        (b"\x00" * 10_240, "empty archive"),
    ],
)
def test_junk_files(box_v1, content, phrase):
    box, _keys, tmp = box_v1
    junk = tmp / "junk.cbx"
    junk.write_bytes(content)
    refused(box, junk, M.DAMAGED, phrase)


def test_truncated_bundle(box_v1):
    box, keys, tmp = box_v1
    bundle = good_bundle(tmp, keys, 2)
    bundle.write_bytes(bundle.read_bytes()[:2500])
    refused(box, bundle, M.DAMAGED, "")


def test_symlink_on_the_stick_is_not_followed(box_v1):
    box, keys, tmp = box_v1
    link = tmp / "link.cbx"
    link.symlink_to(good_bundle(tmp, keys, 2))
    refused(box, link, M.DAMAGED, "cannot open")


def test_manifest_not_first(box_v1):
    box, keys, tmp = box_v1
    members = payload()[:1] + header(manifest_for(FILES), keys) + payload()[1:]
    refused(box, raw_bundle(tmp / "b.cbx", members), M.UNSIGNED, "no manifest.json")


def test_manifest_types_are_strict(box_v1):
    box, keys, tmp = box_v1
    mf = manifest_for(FILES)
    mf["version"] = "2"
    refused(box, raw_bundle(tmp / "b.cbx", header(mf, keys) + payload()), M.DAMAGED, "version")


def test_manifest_setuid_mode_refused(box_v1):
    box, keys, tmp = box_v1
    mf = manifest_for(FILES)
    mf["files"][0]["mode"] = 0o4755
    refused(box, raw_bundle(tmp / "b.cbx", header(mf, keys) + payload()), M.DAMAGED, "mode")


def test_manifest_duplicate_json_keys(box_v1):
    box, keys, tmp = box_v1
    raw = b'{"version": 2, "version": 3}'
    refused(box, raw_bundle(tmp / "b.cbx", header(raw, keys) + payload()), M.DAMAGED, "duplicate key")
