"""Helpers for tests that need dashboard users: seed a user (and an API token) into a hub's store before it starts."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from roost.core.hub.auth import ROLE_SCOPE, create_api_token, hash_password, new_user
from roost.core.store.sqlite import SQLiteStore

TEST_PASSWORD = "correct horse battery staple"


@lru_cache(maxsize=None)
def password_hash(password: str = TEST_PASSWORD) -> str:
    """scrypt is slow on purpose; hash each test password once per run."""
    return hash_password(password)


async def seed_user(config: Any, name: str = "admin", role: str = "admin", *, password: str = TEST_PASSWORD, token: bool = True) -> str:
    """Add a user to the hub's store (reusing one of that name) and return a fresh API token with the user's full scope ('' if token=False)."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    store = SQLiteStore(config.store_path)
    await store.open()
    try:
        user = await store.get_user_by_name(name)
        if user is None:
            user = new_user(name, password_hash(password), role)
            await store.add_user(user)
        if not token:
            return ""
        text, _record = await create_api_token(store, user, scope=ROLE_SCOPE[user.role], name="tests")
        return text
    finally:
        await store.close()
