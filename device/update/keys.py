"""Ed25519 keys and the signature file.

`manifest.sig` is one ASCII line: `circlebox-ed25519-v1 <key id> <base64 signature>`. Naming the
key lets the box say "unknown key" apart from "bad signature"; the key id is the first 16 hex
digits of sha256 of the raw public key. The signature covers the exact manifest bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from device.update import messages as M
from device.update.errors import Refusal

SIG_MAGIC = "circlebox-ed25519-v1"
DEFAULT_KEYS_DIR = Path("/etc/circlebox/keys")


class KeyFileError(ValueError):
    """A key file that cannot be used; the message names the file."""


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_keypair(out_dir: Path, name: str = "circlebox-signing") -> tuple[Path, Path]:
    """Write <name>.key (private, 0600, never on a box) and <name>.pub; refuses to overwrite."""
    out_dir.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    priv_path, pub_path = out_dir / f"{name}.key", out_dir / f"{name}.pub"
    for path in (priv_path, pub_path):
        if path.exists():
            raise KeyFileError(f"{path} already exists; not overwriting a key")
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    pub_path.write_bytes(
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return priv_path, pub_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not a readable private key ({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not a readable public key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path}: not an Ed25519 public key")
    return key


def load_trusted_keys(keys_dir: Path | None = None, pubkey: Path | None = None) -> dict[str, Ed25519PublicKey]:
    """The keys a box trusts: one file, or every *.pub in a directory, by key id."""
    paths = [Path(pubkey)] if pubkey else sorted(Path(keys_dir or DEFAULT_KEYS_DIR).glob("*.pub"))
    keys = {}
    for path in paths:
        key = load_public_key(path)
        keys[key_id(key)] = key
    return keys


def sign_manifest(manifest_bytes: bytes, private: Ed25519PrivateKey) -> bytes:
    signature = base64.b64encode(private.sign(manifest_bytes)).decode("ascii")
    return f"{SIG_MAGIC} {key_id(private.public_key())} {signature}\n".encode("ascii")


def verify_signature(manifest_bytes: bytes, sig: bytes, trusted: dict[str, Ed25519PublicKey]) -> str:
    """The id of the trusted key that signed these exact bytes, or a Refusal saying why not."""
    if not sig.strip():
        raise Refusal(M.UNSIGNED, "manifest.sig is empty")
    try:
        magic, kid, b64 = sig.decode("ascii").split()
    except (UnicodeDecodeError, ValueError):
        raise Refusal(M.BAD_SIGNATURE, "manifest.sig is damaged (not 'format key-id signature')") from None
    if magic != SIG_MAGIC:
        raise Refusal(M.BAD_SIGNATURE, f"manifest.sig has unknown format {magic[:40]!r}")
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise Refusal(M.BAD_SIGNATURE, "manifest.sig signature is not valid base64") from None
    if len(raw) != 64:
        raise Refusal(
            M.BAD_SIGNATURE,
            f"signature is {len(raw)} bytes, an Ed25519 signature is 64 (truncated?)",
        )
    key = trusted.get(kid)
    if key is None:
        known = ", ".join(sorted(trusted)) or "none"
        raise Refusal(M.UNKNOWN_KEY, f"signed with key {kid[:16]!r}; this box trusts: {known}")
    try:
        key.verify(raw, manifest_bytes)
    except InvalidSignature:
        raise Refusal(M.BAD_SIGNATURE, f"signature does not match the manifest (key {kid})") from None
    return kid
