"""Secrets the hub must be able to read back (an SMTP password, a webhook's HMAC key), encrypted at rest with a key in its data dir."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

SECRET_KEY_FILE = "secrets.key"
# What an encrypted value starts with in a stored JSON document, so plain text is never taken for one.
PREFIX = "fernet:"


class SecretError(ValueError):
    """A stored secret that cannot be decrypted with this hub's key (the key file was replaced or lost)."""


class SecretBox:
    """Fernet (AES-128-CBC with HMAC-SHA256) with one key per hub, made on first use, 0600 in the data dir."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def load_or_create(cls, data_dir: Path) -> SecretBox:
        path = Path(data_dir) / SECRET_KEY_FILE
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # O_EXCL: two processes starting on a new data dir agree on the first key written.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(Fernet.generate_key())
        return cls(path.read_bytes().strip())

    def seal(self, plain: str) -> str:
        return PREFIX + self._fernet.encrypt(plain.encode()).decode()

    def open(self, sealed: str) -> str:
        if not isinstance(sealed, str) or not sealed.startswith(PREFIX):
            raise SecretError("not an encrypted value")
        try:
            return self._fernet.decrypt(sealed[len(PREFIX):].encode()).decode()
        except InvalidToken as err:
            raise SecretError(
                f"a stored secret cannot be decrypted with {SECRET_KEY_FILE} in the hub's data dir (was it replaced?); set the secret again"
            ) from err


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)
