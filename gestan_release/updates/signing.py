"""Ed25519 keys and signatures for manifests and check answers.

The private key is a PKCS#8 PEM file, created with mode 0600 when missing. Desktop installs pin
the public key (32 raw bytes, base64), printed by `gestan-release updates keygen`.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gestan_release.updates import UpdatesError


class SigningKeyError(UpdatesError):
    """The signing key file is missing, unreadable or not an Ed25519 key."""


def create_key(path: Path) -> Ed25519PrivateKey:
    """A new key written to `path` (0600, parent 0700); refuses to replace an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SigningKeyError(f"{path} already exists; not replacing a signing key") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())
    return key


def load_key(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(
            f"cannot read the signing key {path}: {exc.strerror}; "
            f"create one with `gestan-release updates keygen`"
        ) from None
    return load_key_pem(data, str(path))


def load_key_pem(data: bytes | str, where: str = "UPDATES_SIGNING_KEY_PEM") -> Ed25519PrivateKey:
    """The key from its PEM text (a file's bytes, or the secret itself on stateless workers);
    errors name `where`, never the key."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise SigningKeyError(f"{where} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{where} is not an Ed25519 key")
    return key


def load_or_create_key(path: Path) -> tuple[Ed25519PrivateKey, bool]:
    """The key at `path`, created first if missing; the flag says whether it was just created."""
    if path.exists():
        return load_key(path), False
    try:
        return create_key(path), True
    except SigningKeyError:  # created meanwhile by a concurrent process
        return load_key(path), False


def public_key_b64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The raw 32-byte public key, base64: what a desktop install pins."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def public_key_pem(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def load_public_key(text: str | bytes) -> Ed25519PublicKey:
    """A public key from its base64 raw form or a PEM block."""
    data = text.encode() if isinstance(text, str) else text
    if b"BEGIN" in data:
        key = serialization.load_pem_public_key(data)
        if not isinstance(key, Ed25519PublicKey):
            raise SigningKeyError("the pinned public key is not an Ed25519 key")
        return key
    try:
        raw = base64.b64decode(data.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise SigningKeyError("the pinned public key is not a base64 Ed25519 key") from None


class Signer:
    """Signs byte strings with one private key; signatures are base64 text."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key = key.public_key()

    @classmethod
    def from_file(cls, path: Path, *, create: bool = True) -> Signer:
        return cls(load_or_create_key(path)[0] if create else load_key(path))

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self._key.sign(data)).decode("ascii")

    def public_b64(self) -> str:
        return public_key_b64(self.public_key)

    def __repr__(self) -> str:  # never show key material
        return f"Signer(public={self.public_b64()})"


def verify(public_key: Ed25519PublicKey, data: bytes, signature: str | bytes) -> bool:
    """Whether `signature` (base64) is `public_key`'s signature of exactly `data`."""
    try:
        raw = base64.b64decode(signature, validate=True)
        public_key.verify(raw, data)
    except (binascii.Error, ValueError, InvalidSignature):
        return False
    return True
