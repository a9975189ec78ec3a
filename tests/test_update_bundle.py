"""The technician's tools: keygen, build (directory or rendered script), verify, apply."""

from __future__ import annotations

import hashlib
import json
import stat
import tarfile

import pytest
from test_update_helpers import Keys, good_bundle

from device.cli import main
from device.script import load_script, packaged_scripts_dir
from device.update.manifest import parse_manifest


@pytest.fixture
def keypair(tmp_path):
    assert main(["bundle", "keygen", "--out", str(tmp_path / "keys")]) == 0
    return tmp_path / "keys" / "circlebox-signing.key", tmp_path / "keys" / "circlebox-signing.pub"


def test_keygen_private_key_is_owner_only_and_never_overwritten(tmp_path, keypair, capsys):
    priv, pub = keypair
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert b"PUBLIC KEY" in pub.read_bytes() and b"PRIVATE KEY" in priv.read_bytes()
    before = priv.read_bytes()
    assert main(["bundle", "keygen", "--out", str(tmp_path / "keys")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert priv.read_bytes() == before


def test_build_verify_apply_from_a_directory(tmp_path, keypair, capsys):
    priv, pub = keypair
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "tool").write_text("#!/bin/sh\n")
    (src / "bin" / "tool").chmod(0o755)
    (src / "readme.txt").write_text("hello")
    out = tmp_path / "app-3.cbx"
    assert (
        main(
            [
                "bundle",
                "build",
                "--key",
                str(priv),
                "--kind",
                "app",
                "--version",
                "3",
                "--min-installed",
                "1",
                "--out",
                str(out),
                str(src),
            ]
        )
        == 0
    )
    with tarfile.open(out) as tar:
        names = tar.getnames()
        manifest = parse_manifest(tar.extractfile("manifest.json").read())
    assert names == ["manifest.json", "manifest.sig", "payload/bin/tool", "payload/readme.txt"]
    assert (manifest.kind, manifest.version, manifest.min_installed_version) == ("app", 3, 1)
    assert {e.path: e.mode for e in manifest.files} == {"bin/tool": 0o755, "readme.txt": 0o644}
    assert main(["bundle", "verify", str(out), "--pubkey", str(pub)]) == 0
    assert "OK: app version 3" in capsys.readouterr().out
    root = tmp_path / "root"
    assert (
        main(
            [
                "bundle",
                "apply",
                str(out),
                "--root",
                str(root),
                "--pubkey",
                str(pub),
                "--stay-up",
                "0",
            ]
        )
        == 1
    )  # needs version 1 installed first
    assert '"code": "U09"' in capsys.readouterr().out


def test_verify_says_exactly_what_is_wrong(tmp_path, keypair, capsys):
    _priv, pub = keypair
    keys = Keys()
    bundle = good_bundle(tmp_path, keys, 2, files={"a.txt": b"A" * 600})
    assert main(["bundle", "verify", str(bundle), "--pubkey", str(pub)]) == 1
    assert "REFUSED U04" in capsys.readouterr().err  # signed by another key
    data = bytearray(bundle.read_bytes())
    data[data.index(b"A" * 600) + 7] ^= 0xFF
    bundle.write_bytes(bytes(data))
    keys_dir = tmp_path / "trusted"
    keys_dir.mkdir()
    from cryptography.hazmat.primitives import serialization

    (keys_dir / "k.pub").write_bytes(
        keys.public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert main(["bundle", "verify", str(bundle), "--keys-dir", str(keys_dir)]) == 1
    assert "REFUSED U02: a.txt does not match its sha256" in capsys.readouterr().err
    assert main(["bundle", "verify", str(bundle), "--keys-dir", str(keys_dir), "--compatible", "other"]) == 1


def test_build_refuses_symlinks_in_the_source(tmp_path, keypair, capsys):
    priv, _ = keypair
    src = tmp_path / "src"
    src.mkdir()
    (src / "link").symlink_to("/etc/passwd")
    assert (
        main(
            [
                "bundle",
                "build",
                "--key",
                str(priv),
                "--kind",
                "config",
                "--version",
                "1",
                "--out",
                str(tmp_path / "x.cbx"),
                str(src),
            ]
        )
        == 2
    )
    assert "only regular files" in capsys.readouterr().err
    assert not (tmp_path / "x.cbx").exists()


def load_script_text(text):
    from device.script import parse_script

    return parse_script(text, "older")


def fake_render(script_path, cache, text_override=None):
    """A prompt set as audio/render.py writes it (sets/<id>.json + prompts/<key>.wav)."""
    loaded = load_script(script_path)
    entries = {}
    for pid in loaded.script.prompts():
        key = hashlib.sha256(pid.encode()).hexdigest()[:24]
        wav = cache / "prompts" / f"{key}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        wav.write_bytes(b"RIFF" + key.encode())
        entries[pid] = {"key": key, "file": f"prompts/{key}.wav", "duration_s": 1.0}
    text = text_override if text_override is not None else loaded.text
    other = None if text_override is None else load_script_text(text_override)
    meta = {
        "script": loaded.script.script,
        "script_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "prompts_sha256": (other or loaded).script.fingerprint(),
    }
    (cache / "sets").mkdir(parents=True, exist_ok=True)
    (cache / "sets" / f"{loaded.script.script}.json").write_text(json.dumps({"meta": meta, "prompts": entries}))
    (cache / "prompts" / "unrelated.wav").write_bytes(b"not this script's")
    return loaded, entries


def test_build_from_script_and_its_rendered_prompts(tmp_path, keypair):
    priv, pub = keypair
    script = packaged_scripts_dir() / "three-step-circle.yaml"
    cache = tmp_path / "cache"
    loaded, entries = fake_render(script, cache)
    out = tmp_path / "content-5.cbx"
    assert (
        main(
            [
                "bundle",
                "build",
                "--key",
                str(priv),
                "--kind",
                "content",
                "--version",
                "5",
                "--script",
                str(script),
                "--cache",
                str(cache),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    with tarfile.open(out) as tar:
        manifest = parse_manifest(tar.extractfile("manifest.json").read())
    paths = {e.path for e in manifest.files}
    name = loaded.script.script
    assert paths == {
        f"scripts/{script.name}",
        f"cache/sets/{name}.json",
        *(f"cache/{e['file']}" for e in entries.values()),
    }
    assert "cache/prompts/unrelated.wav" not in paths
    root = tmp_path / "root"
    assert (
        main(
            [
                "bundle",
                "apply",
                str(out),
                "--root",
                str(root),
                "--pubkey",
                str(pub),
                "--stay-up",
                "0",
            ]
        )
        == 0
    )
    assert (root / "current" / "content" / "scripts" / script.name).read_bytes() == script.read_bytes()


def test_build_refuses_a_stale_render(tmp_path, keypair, capsys):
    priv, _ = keypair
    script = packaged_scripts_dir() / "three-step-circle.yaml"
    older = script.read_text().replace("Welcome", "Hello", 1)
    assert older != script.read_text()
    fake_render(script, tmp_path / "cache", text_override=older)
    assert (
        main(
            [
                "bundle",
                "build",
                "--key",
                str(priv),
                "--kind",
                "content",
                "--version",
                "5",
                "--script",
                str(script),
                "--cache",
                str(tmp_path / "cache"),
                "--out",
                str(tmp_path / "c.cbx"),
            ]
        )
        == 2
    )
    assert "render again" in capsys.readouterr().err


def test_build_finds_a_circle_by_id_where_render_puts_it_and_says_where_it_looked(tmp_path, keypair, capsys):
    """`bundle build --script ID` looks where `circlebox render ID` writes (the data folder's
    cache), with no --cache; when nothing was rendered the error names that place and the fix."""
    from device.datafolder import DataFolder

    priv, _ = keypair
    data = DataFolder(tmp_path / "laptop")
    data.scripts.mkdir(parents=True)
    text = (packaged_scripts_dir() / "three-step-circle.yaml").read_text()
    script = data.script("friday-circle")
    script.write_text(text.replace("script: three-step-circle", "script: friday-circle", 1))
    argv = ["--data", str(data.root), "bundle", "build", "--key", str(priv), "--kind", "content", "--version", "2",
            "--script", "friday-circle", "--out", str(tmp_path / "c.cbx")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"no rendered prompt set for 'friday-circle' in {data.cache}" in err
    assert "circlebox render friday-circle" in err
    _loaded, entries = fake_render(script, data.cache)
    assert main(argv) == 0, capsys.readouterr().err
    with tarfile.open(tmp_path / "c.cbx") as tar:
        paths = {e.path for e in parse_manifest(tar.extractfile("manifest.json").read()).files}
    assert paths == {"scripts/friday-circle.yaml", "cache/sets/friday-circle.json",
                     *(f"cache/{e['file']}" for e in entries.values())}
