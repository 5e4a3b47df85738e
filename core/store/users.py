"""Store interface for dashboard users, their login sessions and their API tokens."""

from __future__ import annotations

import abc
from dataclasses import dataclass

ROLE_VIEWER = "viewer"
ROLE_OPERATOR = "operator"
ROLE_ADMIN = "admin"
ROLES = (ROLE_VIEWER, ROLE_OPERATOR, ROLE_ADMIN)

SCOPE_READ = "read"
SCOPE_OPERATE = "operate"
SCOPE_ADMIN = "admin"
SCOPES = (SCOPE_READ, SCOPE_OPERATE, SCOPE_ADMIN)


class UserExistsError(ValueError):
    """A user with that name (compared without case) exists already."""


class LastAdminError(ValueError):
    """The change would leave the hub without an enabled admin."""


@dataclass(frozen=True)
class UserRecord:
    user_id: str
    name: str
    role: str
    password_hash: str  # scrypt$<log2 n>$<r>$<p>$<salt b64>$<key b64>, see roost.core.hub.auth
    created_at: float
    password_changed_at: float
    disabled: bool = False


@dataclass(frozen=True)
class SessionRecord:
    session_id: str  # SHA-256 hex of the cookie value; the cookie itself is never stored
    user_id: str
    created_at: float
    last_seen: float
    expires_at: float  # absolute end; the idle limit is checked against last_seen
    csrf_token: str
    peer: str = ""
    user_agent: str = ""


@dataclass(frozen=True)
class ApiTokenRecord:
    token_id: str
    user_id: str
    name: str
    scope: str
    secret_hash: str  # SHA-256 hex of the secret part
    created_at: float
    expires_at: float | None = None
    last_used: float | None = None
    revoked: bool = False


class UserStore(abc.ABC):
    """Users, sessions and API tokens. Part of Store; implemented by SQLiteUserStore."""

    # -- users ----------------------------------------------------------------
    @abc.abstractmethod
    async def add_user(self, user: UserRecord, *, only_if_none: bool = False) -> bool:
        """Insert a user. Raise UserExistsError if the name is taken (without case).

        With ``only_if_none`` the insert happens only when there are no users at
        all, checked in the same transaction (first-start onboarding); returns
        False when someone else was first.
        """

    @abc.abstractmethod
    async def count_users(self) -> int: ...

    @abc.abstractmethod
    async def get_user(self, user_id: str) -> UserRecord | None: ...

    @abc.abstractmethod
    async def get_user_by_name(self, name: str) -> UserRecord | None:
        """Look a user up by name, without case."""

    @abc.abstractmethod
    async def list_users(self) -> list[UserRecord]: ...

    @abc.abstractmethod
    async def update_user(
        self,
        user_id: str,
        *,
        role: str | None = None,
        password_hash: str | None = None,
        disabled: bool | None = None,
        now: float,
    ) -> UserRecord | None:
        """Change a user's role, password or disabled flag; None if there is no such user.

        Every session of the user ends in the same transaction. Raise
        LastAdminError if the change would leave no enabled admin.
        """

    @abc.abstractmethod
    async def delete_user(self, user_id: str) -> bool:
        """Delete a user with their sessions and tokens. Raise LastAdminError for the last enabled admin."""

    # -- sessions -------------------------------------------------------------
    @abc.abstractmethod
    async def add_session(self, session: SessionRecord) -> None: ...

    @abc.abstractmethod
    async def get_session(self, session_id: str) -> tuple[SessionRecord, UserRecord] | None: ...

    @abc.abstractmethod
    async def touch_session(self, session_id: str, last_seen: float) -> None: ...

    @abc.abstractmethod
    async def delete_session(self, session_id: str) -> bool: ...

    @abc.abstractmethod
    async def delete_user_sessions(self, user_id: str) -> int:
        """End every session of a user; return how many there were."""

    # -- API tokens -----------------------------------------------------------
    @abc.abstractmethod
    async def add_api_token(self, token: ApiTokenRecord) -> None:
        """Store a token; raise ValueError if its id exists."""

    @abc.abstractmethod
    async def get_api_token(self, token_id: str) -> tuple[ApiTokenRecord, UserRecord] | None: ...

    @abc.abstractmethod
    async def list_api_tokens(self, user_id: str | None = None) -> list[ApiTokenRecord]:
        """Tokens of one user, or of everyone when ``user_id`` is None; newest first."""

    @abc.abstractmethod
    async def revoke_api_token(self, token_id: str, *, user_id: str | None = None) -> bool:
        """Revoke a token (only if it belongs to ``user_id``, when given); False if none matched."""

    @abc.abstractmethod
    async def touch_api_token(self, token_id: str, last_used: float) -> None: ...

    @abc.abstractmethod
    async def prune_auth(self, now: float, *, idle_seconds: float) -> int:
        """Delete sessions past their end or idle longer than ``idle_seconds``,
        and tokens revoked or expired more than 30 days ago; return rows deleted."""
