"""Ed25519 identity keys: created once per node, kept in a 0600 file, used to prove who is connecting."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_FILE_MODE = 0o600


class KeyFileError(Exception):
    """An identity key file that cannot be used."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ValueError("not valid base64") from None


def load_public_key(text: str) -> Ed25519PublicKey:
    """A base64 raw Ed25519 public key; ValueError if it is not one."""
    raw = unb64(text)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def verify(public_key: str, signature: str, payload: bytes) -> bool:
    try:
        load_public_key(public_key).verify(unb64(signature), payload)
    except (ValueError, InvalidSignature):
        return False
    return True


def fingerprint(public_key: str) -> str:
    """A short, stable label for a public key (SHA-256, first 16 hex digits)."""
    return hashlib.sha256(unb64(public_key)).hexdigest()[:16]


@dataclass(frozen=True)
class Identity:
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> str:
        raw = self.private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return b64(raw)

    def sign(self, payload: bytes) -> str:
        return b64(self.private_key.sign(payload))

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, path: Path) -> Identity:
        """Load the key at path, creating it (mode 0600, parents 0700) on first start."""
        path = Path(path)
        if path.exists():
            return cls.load(path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
        except FileExistsError:  # another process won the race; use its key
            return cls.load(path)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        return cls(key)

    @classmethod
    def load(cls, path: Path) -> Identity:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise KeyFileError(
                f"identity key {path} is readable by others (mode {mode:o}); run: chmod 600 {path}"
            )
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as err:
            raise KeyFileError(f"identity key {path} is not a usable PEM private key: {err}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"identity key {path} is not an Ed25519 key")
        return cls(key)


def key_digest(public_key: str) -> str:
    """The full SHA-256 (hex) of a raw public key: what a join token pins, in compact form."""
    return hashlib.sha256(unb64(public_key)).hexdigest()
