"""Hostile tar headers are refused by our own 512-byte header check, before anything parses
them, at a cost of one block of memory (security review: a pax header of digits took 16.6 s in
CPython's tarfile, CVE-2024-6232; a GNU long-name header claiming 300 MB cost 661 MB)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from test_update_helpers import Keys, good_bundle, header, make_box, manifest_for, member, raw_bundle, tree_hash

from device.update import messages as M
from device.update.installer import apply_bundle

REPO = Path(__file__).resolve().parents[1]
FILES = {"app/main.py": b"print('v2')\n"}


def raw_header(name: bytes, typeflag: bytes, size: int) -> bytes:
    """One ustar header block, checksummed, as a hostile builder would write it."""
    block = bytearray(512)
    block[0 : len(name)] = name
    block[100:108] = b"0000644\x00"
    block[108:116] = block[116:124] = b"0000000\x00"
    block[124:136] = b"%011o\x00" % size
    block[136:148] = b"00000000000\x00"
    block[156:157] = typeflag
    block[257:265] = b"ustar\x0000"
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block)


@pytest.fixture
def box_v1(tmp_path):
    keys = Keys()
    box = make_box(tmp_path / "root", keys)
    assert apply_bundle(good_bundle(tmp_path, keys, 1), box).code == M.UPDATED
    return box, keys, tmp_path


@pytest.fixture
def no_tarfile(monkeypatch):
    """Fail loudly if anything hands bundle bytes to tarfile while the box reads a bundle."""

    def refuse(*args, **kwargs):
        raise AssertionError("tarfile parsed a bundle header")

    monkeypatch.setattr(tarfile.TarInfo, "frombuf", classmethod(refuse))
    monkeypatch.setattr(tarfile.TarInfo, "fromtarfile", classmethod(refuse))


def refused(box, bundle: Path, phrase: str) -> None:
    before = tree_hash(box.root)
    result = apply_bundle(bundle, box)
    assert result.code == M.DAMAGED, result
    assert phrase in result.detail, result.detail
    assert tree_hash(box.root) == before


def test_pax_header_of_digits_before_the_manifest_is_refused_unparsed(box_v1, no_tarfile):
    box, _keys, tmp = box_v1
    digits = b"1" * (128 * 1024)  # the review's CVE-2024-6232 input
    bundle = tmp / "pax.cbx"
    bundle.write_bytes(raw_header(b"././@PaxHeader", b"x", len(digits)) + digits + bytes(-len(digits) % 512)
                       + bytes(1024))
    refused(box, bundle, "pax extended header")


def test_pax_header_after_a_good_signature_is_refused_too(box_v1, no_tarfile):
    box, keys, tmp = box_v1
    members = [*header(manifest_for(FILES), keys)]
    body = raw_bundle(tmp / "head.cbx", members).read_bytes().rstrip(b"\x00")
    body += bytes(-len(body) % 512)
    digits = b"9" * 4096
    bundle = tmp / "pax2.cbx"
    bundle.write_bytes(body + raw_header(b"././@PaxHeader", b"x", len(digits)) + digits + bytes(1024))
    refused(box, bundle, "pax extended header")


@pytest.mark.parametrize(
    ("typeflag", "phrase"),
    [(b"L", "GNU long-name"), (b"K", "GNU long-link"), (b"g", "pax global"), (b"S", "sparse")],
)
def test_extension_headers_are_refused_by_name(box_v1, no_tarfile, typeflag, phrase):
    box, _keys, tmp = box_v1
    bundle = tmp / "ext.cbx"
    bundle.write_bytes(raw_header(b"././@LongLink", typeflag, 100) + b"m" * 100 + bytes(412 + 1024))
    refused(box, bundle, phrase)


def test_a_good_bundle_installs_without_tarfile(box_v1, no_tarfile):
    box, keys, tmp = box_v1
    assert apply_bundle(good_bundle(tmp, keys, 2), box).code == M.UPDATED


def test_gnu_format_and_base256_sizes_are_not_plain_ustar(box_v1, no_tarfile):
    box, keys, tmp = box_v1
    gnu = raw_bundle(tmp / "gnu.cbx", [*header(manifest_for(FILES), keys)], fmt=tarfile.GNU_FORMAT)
    refused(box, gnu, "not a POSIX ustar archive")
    block = bytearray(raw_header(b"manifest.json", b"0", 10))
    block[124] = 0x80  # base-256 size
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    (tmp / "b256.cbx").write_bytes(bytes(block) + bytes(2048))
    refused(box, tmp / "b256.cbx", "base-256")


def test_data_after_the_end_of_archive_is_refused(box_v1):
    box, keys, tmp = box_v1
    bundle = good_bundle(tmp, keys, 2)
    with open(bundle, "ab") as handle:
        handle.write(b"smuggled")
    refused(box, bundle, "after the end of the archive")


def test_a_path_that_needs_an_extension_header_cannot_be_signed():
    from device.update.manifest import check_path

    check_path("a/" * 70 + "b")  # 141 characters, splits into ustar prefix and name
    with pytest.raises(ValueError, match="too long for a plain tar header"):
        check_path("p" * 60 + "/" + "q" * 99 + "/" + "r" * 90)


MEMORY_PROBE = """
import json, resource, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_update_helpers import Keys, make_box
from device.update.installer import apply_bundle
box = make_box(Path({root!r}), Keys())
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = apply_bundle(Path({bundle!r}), box)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"code": result.code, "detail": result.detail, "grew_kib": after - before}}))
"""


def test_a_huge_gnu_long_name_header_costs_no_memory(tmp_path):
    """The review's 300 MB long name, scaled to 64 MB (a sparse file: no disk for the stick
    side). The updater in a child process: its peak RSS may not grow by the header's size."""
    size = 64 * 1024 * 1024
    bundle = tmp_path / "longname.cbx"
    with open(bundle, "wb") as handle:
        handle.write(raw_header(b"././@LongLink", b"L", size))
        handle.truncate(512 + size + 1024)
    probe = MEMORY_PROBE.format(tests=str(REPO / "tests"), root=str(tmp_path / "root"), bundle=str(bundle))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["code"] == M.DAMAGED and "GNU long-name" in report["detail"], report
    assert report["grew_kib"] * 1024 < size // 8, report


def test_member_count_and_sizes_are_bounded_by_the_signed_manifest(box_v1, no_tarfile):
    box, keys, tmp = box_v1
    members = [*header(manifest_for(FILES), keys), member("payload/app/main.py", b"print('v2')\n"),
               member("payload/app/extra.py", b"x")]
    refused(box, raw_bundle(tmp / "extra.cbx", members), "not listed in the manifest")
