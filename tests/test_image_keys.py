"""`image_build.sh --pubkey`: a key that is not the programme's public key is refused at once,
in plain words, before anything is built (a box without a key refuses every update, U04)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from device.update.keys import generate_keypair

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "image_build.sh"


def build(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), "--tree-only", str(out), *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "CIRCLEBOX_IMAGE_NO_RENDER": "1"}, cwd=REPO)


@pytest.fixture
def keypair(tmp_path) -> tuple[Path, Path]:
    return generate_keypair(tmp_path / "keys")


def test_build_without_a_key_is_refused_and_says_how_to_make_one(tmp_path):
    proc = build(tmp_path / "out")
    assert proc.returncode != 0
    assert "no --pubkey given" in proc.stderr and "refuses every update (U04)" in proc.stderr
    assert "circlebox bundle keygen --out DIR" in proc.stderr
    assert not (tmp_path / "out").exists()  # refused before building anything


def test_the_private_key_is_refused(tmp_path, keypair):
    private, _ = keypair
    proc = build(tmp_path / "out", "--pubkey", str(private))
    assert proc.returncode != 0
    assert f"--pubkey {private} is a PRIVATE key" in proc.stderr
    assert "the .key never goes on a box" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", [b"", b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI not ours\n",
                                     b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n"])
def test_a_file_that_is_not_an_ed25519_public_key_is_refused(tmp_path, keypair, content):
    _, good = keypair
    bad = tmp_path / "programme.pub"
    bad.write_bytes(content)
    proc = build(tmp_path / "out", "--pubkey", str(good), "--pubkey", str(bad))
    assert proc.returncode != 0
    assert f"--pubkey {bad} is not an Ed25519 public key as `circlebox bundle keygen --out DIR` writes it" \
        in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_missing_key_file_is_named(tmp_path):
    missing = tmp_path / "nowhere.pub"
    proc = build(tmp_path / "out", "--pubkey", str(missing))
    assert proc.returncode != 0 and f"--pubkey {missing}: cannot read it" in proc.stderr


def test_two_different_keys_with_one_file_name_are_refused(tmp_path):
    _, first = generate_keypair(tmp_path / "a")
    _, second = generate_keypair(tmp_path / "b")
    proc = build(tmp_path / "out", "--pubkey", str(first), "--pubkey", str(second))
    assert proc.returncode != 0
    assert "two different keys would both be installed as circlebox-signing.pub" in proc.stderr
