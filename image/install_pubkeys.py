#!/usr/bin/env python3
"""Put the programme's update-signing public keys on an image: `image_build.sh --pubkey FILE`.

Without the key the box refuses every signed update (refusal U04), so the build checks each
file with the updater's own key loader (device/update/keys.py, which also names the directory
the updater reads) and installs it there, mode 0644 (root-owned when the build runs as root).
Run with the build machine's dev environment (it needs `cryptography`). Without --root it only
checks the files, so a full build can refuse a bad key before it downloads anything.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEYGEN = "circlebox bundle keygen --out DIR"


class PubkeyError(ValueError):
    """A --pubkey file that cannot go on the image; the message says why and what to do."""


def _keys_module():  # -> module device.update.keys
    sys.path.insert(0, str(REPO))
    try:
        from device.update import keys
    except ImportError as exc:
        raise PubkeyError(
            f"cannot check --pubkey files: {exc}. Run the build from the dev environment "
            "(`make test` makes .venv, which image_build.sh uses)"
        ) from exc
    return keys


def keys_dir_in(root: Path) -> Path:
    """Where the updater on the image looks for trusted keys, under `root`."""
    return root / _keys_module().DEFAULT_KEYS_DIR.relative_to("/")


def check_pubkey(path: Path) -> tuple[str, bytes]:
    """The key id and the PEM bytes to install, or a PubkeyError in plain words."""
    keys = _keys_module()
    from cryptography.hazmat.primitives import serialization

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PubkeyError(f"--pubkey {path}: cannot read it ({exc.strerror or exc})") from exc
    if b"PRIVATE KEY-----" in data:
        raise PubkeyError(
            f"--pubkey {path} is a PRIVATE key. Give the .pub file; the .key never goes on a box"
        )
    try:
        key = keys.load_public_key(path)
    except keys.KeyFileError as exc:
        raise PubkeyError(
            f"--pubkey {path} is not an Ed25519 public key as `{KEYGEN}` writes it "
            f"(a .pub file that starts with -----BEGIN PUBLIC KEY-----). Detail: {exc}"
        ) from exc
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return keys.key_id(key), pem


def install_name(path: Path) -> str:
    """The file name on the image: the technician's own name, ending in .pub (the updater's glob)."""
    return path.name if path.name.endswith(".pub") else f"{path.name}.pub"


def plan(paths: list[Path]) -> dict[str, tuple[str, bytes]]:
    """install name -> (key id, PEM) for every key, each key once; refuses clashing names."""
    if not paths:
        raise PubkeyError(
            "no --pubkey given: a box without the programme's public key refuses every update "
            f"(U04). Make the key pair once with `{KEYGEN}`, then build with "
            "--pubkey DIR/circlebox-signing.pub (see docs/setup-a-box.md)"
        )
    chosen: dict[str, tuple[str, bytes]] = {}
    seen_ids: set[str] = set()
    for path in paths:
        kid, pem = check_pubkey(path)
        if kid in seen_ids:
            continue  # the same key given twice: once is enough
        name = install_name(path)
        if name in chosen:
            raise PubkeyError(f"two different keys would both be installed as {name}: rename one of the files")
        chosen[name] = (kid, pem)
        seen_ids.add(kid)
    return chosen


def install(root: Path, chosen: dict[str, tuple[str, bytes]]) -> list[str]:
    """Write the keys under root, 0644 in a 0755 directory; root-owned when we are root."""
    target = keys_dir_in(root)
    target.mkdir(mode=0o755, parents=True, exist_ok=True)
    target.chmod(0o755)
    lines = []
    for name, (kid, pem) in chosen.items():
        dest = target / name
        dest.write_bytes(pem)
        dest.chmod(0o644)
        if os.geteuid() == 0:
            os.chown(dest, 0, 0)
            os.chown(target, 0, 0)
        lines.append(f"update key {kid} -> /{dest.relative_to(root)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("keys", nargs="*", type=Path, help="public key files (.pub)")
    parser.add_argument("--root", type=Path, help="image root to install into (default: only check)")
    args = parser.parse_args(argv)
    try:
        chosen = plan(args.keys)
        lines = install(args.root, chosen) if args.root else []  # checking only: quiet when fine
    except PubkeyError as exc:
        print(f"image_build: ERROR: {exc}", file=sys.stderr)
        return 2
    for line in lines:
        print(f"image_build: {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
