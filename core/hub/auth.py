"""Dashboard users: passwords, login sessions, API tokens, roles, the auth middleware and the account API.

For other hub code:

- ``require(request, role)`` returns the request's ``Identity`` or raises
  401 (nobody logged in) / 403 (role too low): JSON ``{"error": ...}`` under
  ``/api/``, a friendly page elsewhere. ``@requires(role)`` does the same
  for a whole handler. ``actor_of(request)`` is the audit actor.
- Roles: ``viewer`` < ``operator`` < ``admin`` (``ROLE_*``). API token
  scopes ``read`` / ``operate`` / ``admin`` map onto them, capped by the
  user's role at every request.
- Everything except ``PUBLIC_PATHS`` needs a login; ``add_public_path`` adds
  one (the handler then does its own authentication).
- Session requests that change state must carry the session's CSRF token
  (header ``X-CSRF-Token`` or form field ``csrf_token``) and, when the
  browser sends one, a same-origin ``Origin``. Bearer requests are exempt:
  nothing ambient authenticates them.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import voluptuous as vol
from aiohttp import web

from roost.core import jsonparse
from roost.core.const import ENROLL_PATH, WS_PATH
from roost.core.jsonparse import JSONTooDeep
from roost.core.integration import humanize_invalid
from roost.core.store import Store
from roost.core.store.users import (
    ROLE_ADMIN,
    ROLE_OPERATOR,
    ROLE_VIEWER,
    ROLES,
    SCOPE_ADMIN,
    SCOPE_OPERATE,
    SCOPE_READ,
    SCOPES,
    ApiTokenRecord,
    LastAdminError,
    SessionRecord,
    UserExistsError,
    UserRecord,
)

from .state import HUB_KEY
from .security import (
    STATIC_PREFIX,
    RateLimiter,
    is_https,
    peer_of,
    rate_key,
    request_origins,
    retry_after_header,
    wait_words,
    wants_json,
)

_LOGGER = logging.getLogger(__name__)

__all__ = [
    "ROLE_ADMIN",
    "ROLE_OPERATOR",
    "ROLE_VIEWER",
    "AUTH_KEY",
    "IDENTITY_KEY",
    "Auth",
    "AuthError",
    "Identity",
    "actor_of",
    "add_public_path",
    "create_api_token",
    "hash_password",
    "identity_of",
    "new_user",
    "require",
    "requires",
    "verify_password",
]

# -- names and limits -----------------------------------------------------------

SESSION_COOKIE = "roost_session"
LOGIN_CSRF_COOKIE = "roost_login_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
API_TOKEN_PREFIX = "rst"
SESSION_API = "/api/v1/session"
LOGIN_PATH = "/login"
ONBOARDING_PATH = "/onboarding"
EVENTS_PATH = "/api/v1/events"

# Reachable without a login. Agents authenticate on their own endpoints.
PUBLIC_PATHS = frozenset(
    {"/api/v1/health", LOGIN_PATH, ONBOARDING_PATH, "/api/v1/ca.pem", ENROLL_PATH, WS_PATH, "/favicon.ico"}
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# What a viewer may change: only their own session, password and tokens. Any
# other state-changing request from a viewer is refused before its handler
# runs, so a route that forgets its role check still cannot be used by one.
SELF_SERVICE_PATHS = frozenset({SESSION_API, "/api/v1/account/password", "/logout"})
SELF_SERVICE_PREFIXES = ("/api/v1/tokens", "/account/")

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
MAX_NAME_LENGTH = 64
MAX_LOGIN_BODY_BYTES = 8 * 1024
MAX_FORM_BODY_BYTES = 16 * 1024
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
TOKEN_NAME_MAX = 100

SESSION_IDLE_SECONDS = 7 * 86400.0
DEFAULT_SESSION_DAYS = 30.0
# last_seen / last_used are written at most this often per session or token.
TOUCH_EVERY_SECONDS = 60.0
PRUNE_EVERY_SECONDS = 3600.0
# Open event streams are checked against the store this often, so a credential
# ended by another process on the same store (the CLI) or by its expiry ends
# its streams within a second, like a node revoked from the CLI.
STREAM_CHECK_SECONDS = 0.5

# Login attempts per peer: a burst of 10, then one every 2 s; 5 failures in
# 5 minutes ban the peer for 15 minutes.
LOGIN_RATE = 0.5
LOGIN_BURST = 10
LOGIN_MAX_FAILURES = 5
LOGIN_FAILURE_WINDOW = 300.0
LOGIN_BAN_SECONDS = 900.0

# scrypt: memory-hard, 32 MiB per hash at these settings.
SCRYPT_LOG_N = 15
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_KEY_BYTES = 32
SCRYPT_SALT_BYTES = 16
# Hashes run in threads; this many at once keeps a login flood from eating memory.
KDF_CONCURRENCY = 2

ROLE_RANK = {ROLE_VIEWER: 0, ROLE_OPERATOR: 1, ROLE_ADMIN: 2}
SCOPE_ROLE = {SCOPE_READ: ROLE_VIEWER, SCOPE_OPERATE: ROLE_OPERATOR, SCOPE_ADMIN: ROLE_ADMIN}
ROLE_SCOPE = {role: scope for scope, role in SCOPE_ROLE.items()}

VIA_SESSION = "session"
VIA_TOKEN = "token"


class AuthError(Exception):
    """Something a user asked for that cannot be done; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400, *, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class PasswordPolicyError(AuthError):
    """A new password that is too short or too long."""


# -- passwords ----------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _normalize(password: str) -> bytes:
    # The same password typed on another keyboard or OS must match.
    return unicodedata.normalize("NFKC", password).encode("utf-8")


def _scrypt(password: str, salt: bytes, log_n: int, r: int, p: int, size: int) -> bytes:
    n = 1 << log_n
    return hashlib.scrypt(_normalize(password), salt=salt, n=n, r=r, p=p, dklen=size, maxmem=130 * r * n * p + (4 << 20))


def hash_password(password: str) -> str:
    """``scrypt$<log2 n>$<r>$<p>$<salt b64>$<key b64>``; blocking (~0.1 s), run it in a thread on the hub."""
    salt = secrets.token_bytes(SCRYPT_SALT_BYTES)
    key = _scrypt(password, salt, SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P, SCRYPT_KEY_BYTES)
    return f"scrypt${SCRYPT_LOG_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


# Verified against when the user does not exist, so a wrong name costs the same time as a wrong password.
DUMMY_HASH = f"scrypt${SCRYPT_LOG_N}${SCRYPT_R}${SCRYPT_P}${_b64(bytes(SCRYPT_SALT_BYTES))}${_b64(bytes(SCRYPT_KEY_BYTES))}"


def verify_password(password: str, encoded: str) -> bool:
    """Check a password against a stored hash in constant time; False for a malformed hash."""
    try:
        scheme, log_n, r, p, salt, key = encoded.split("$")
        log_n_i, r_i, p_i = int(log_n), int(r), int(p)
        salt_b, key_b = _unb64(salt), _unb64(key)
    except ValueError:
        return False
    if scheme != "scrypt" or not (10 <= log_n_i <= 20 and 1 <= r_i <= 32 and 1 <= p_i <= 16 and 16 <= len(key_b) <= 64):
        return False
    candidate = _scrypt(password, salt_b, log_n_i, r_i, p_i, len(key_b))
    return hmac.compare_digest(candidate, key_b)


def check_password_policy(password: Any) -> str:
    if not isinstance(password, str):
        raise PasswordPolicyError("the password must be text")
    length = len(unicodedata.normalize("NFKC", password))
    if length < MIN_PASSWORD_LENGTH:
        raise PasswordPolicyError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters long (a few words make a good one)")
    if length > MAX_PASSWORD_LENGTH:
        raise PasswordPolicyError(f"the password must be at most {MAX_PASSWORD_LENGTH} characters long")
    return password


def check_username(name: Any) -> str:
    if not isinstance(name, str) or not USERNAME_RE.match(name):
        raise AuthError(
            "a user name is 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
        )
    return name


def check_role(role: Any) -> str:
    if role not in ROLES:
        raise AuthError(f"role must be one of {', '.join(ROLES)}")
    return role


def role_at_least(role: str, needed: str) -> bool:
    return ROLE_RANK.get(role, -1) >= ROLE_RANK[needed]


def lower_role(a: str, b: str) -> str:
    return a if ROLE_RANK.get(a, -1) <= ROLE_RANK.get(b, -1) else b


def new_user(name: str, password_hash: str, role: str, *, now: float | None = None) -> UserRecord:
    now = time.time() if now is None else now
    return UserRecord(
        user_id="u" + secrets.token_hex(6),
        name=name,
        role=role,
        password_hash=password_hash,
        created_at=now,
        password_changed_at=now,
    )


# -- API tokens ---------------------------------------------------------------------


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def split_api_token(token: str) -> tuple[str, str] | None:
    """``rst_<12 hex>_<64 hex>`` -> (id, secret); None for anything else."""
    parts = token.split("_")
    if len(parts) != 3 or parts[0] != API_TOKEN_PREFIX:
        return None
    token_id, secret = parts[1], parts[2]
    if not re.fullmatch(r"[0-9a-f]{12}", token_id) or not re.fullmatch(r"[0-9a-f]{64}", secret):
        return None
    return token_id, secret


async def create_api_token(
    store: Store, user: UserRecord, *, scope: str, name: str = "", ttl: float | None = None, now: float | None = None
) -> tuple[str, ApiTokenRecord]:
    """Make an API token for ``user``; only the secret's hash is stored, so the returned string is shown once.

    Raises AuthError if ``scope`` is unknown or above the user's role.
    """
    if scope not in SCOPES:
        raise AuthError(f"scope must be one of {', '.join(SCOPES)}")
    if not role_at_least(user.role, SCOPE_ROLE[scope]):
        raise AuthError(f"{user.name} is {user.role}; a token cannot have more than {ROLE_SCOPE[user.role]} scope", 403)
    now = time.time() if now is None else now
    token_id = secrets.token_hex(6)
    secret = secrets.token_hex(32)
    record = ApiTokenRecord(
        token_id=token_id,
        user_id=user.user_id,
        name=name[:TOKEN_NAME_MAX],
        scope=scope,
        secret_hash=_sha256(secret),
        created_at=now,
        expires_at=now + ttl if ttl else None,
    )
    await store.add_api_token(record)
    return f"{API_TOKEN_PREFIX}_{token_id}_{secret}", record


# -- identity -----------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """Who sent a request: a user, through a session cookie or an API token, with the role in effect."""

    user: UserRecord
    role: str  # the user's role, capped by the token's scope
    via: str  # VIA_SESSION or VIA_TOKEN
    session: SessionRecord | None = None
    token: ApiTokenRecord | None = None

    @property
    def name(self) -> str:
        return self.user.name

    @property
    def actor(self) -> str:
        """The audit log's actor: ``user:<name>`` for a session, ``token:<id>`` for an API token."""
        return f"token:{self.token.token_id}" if self.token is not None else f"user:{self.user.name}"

    @property
    def csrf_token(self) -> str:
        return self.session.csrf_token if self.session is not None else ""

    def allows(self, role: str) -> bool:
        return role_at_least(self.role, role)


IDENTITY_KEY = web.RequestKey("roost_identity", Identity)


def identity_of(request: web.Request) -> Identity | None:
    return request.get(IDENTITY_KEY)


def actor_of(request: web.Request) -> str:
    identity = request.get(IDENTITY_KEY)
    return identity.actor if identity is not None else "anonymous"


class AccessDenied(web.HTTPForbidden):
    """A role check failed: JSON for the API, a page for the dashboard (the middleware renders it)."""

    def __init__(self, request: web.Request, message: str) -> None:
        self.message = message
        if wants_json(request):
            super().__init__(text=json.dumps({"error": message}), content_type="application/json")
        else:
            super().__init__(text=message)


def _unauthorized(request: web.Request, message: str = "") -> web.HTTPException:
    message = message or "log in first: POST /api/v1/session, or send an API token as 'Authorization: Bearer rst_...'"
    if wants_json(request):
        return web.HTTPUnauthorized(
            text=json.dumps({"error": message}), content_type="application/json", headers={"WWW-Authenticate": 'Bearer realm="roost"'}
        )
    return web.HTTPSeeOther(LOGIN_PATH)


def require(request: web.Request, role: str = ROLE_VIEWER, *, session_only: bool = False) -> Identity:
    """The request's identity if it has at least ``role``; else raise 401 or 403.

    ``session_only`` refuses API tokens (below admin scope) for things a token
    must not do on its own, such as minting more tokens.
    """
    identity = request.get(IDENTITY_KEY)
    if identity is None:
        raise _unauthorized(request)
    if not identity.allows(role):
        if identity.token is not None:
            raise AccessDenied(request, f"this needs the {role} role; this API token acts as {identity.role}")
        raise AccessDenied(request, f"this needs the {role} role and {identity.name} is {identity.role}; ask an admin")
    if session_only and identity.via == VIA_TOKEN and identity.token is not None and identity.token.scope != SCOPE_ADMIN:
        raise AccessDenied(request, "API tokens below admin scope cannot do this; use the dashboard")
    return identity


def requires(role: str = ROLE_VIEWER, *, session_only: bool = False) -> Callable:
    """Decorator form of ``require`` for a handler taking the request."""

    def decorate(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Callable:
        @functools.wraps(handler)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            require(request, role, session_only=session_only)
            return await handler(request)

        return wrapper

    return decorate


# -- request bodies -----------------------------------------------------------------


async def read_fields(request: web.Request, limit: int, *, json_only: bool = False) -> dict[str, Any]:
    """A small form or JSON body as a dict; 413 past ``limit`` bytes, 415/400 for anything else."""
    if request.content_length is not None and request.content_length > limit:
        raise AuthError(f"request body is larger than {limit // 1024} KiB", 413)
    ctype = request.content_type
    if json_only and ctype != "application/json":
        raise AuthError("send the body as JSON (Content-Type: application/json)", 415)
    if ctype not in ("application/json", "application/x-www-form-urlencoded"):
        raise AuthError("send the body as JSON or as an HTML form", 415)
    body = await request.read()  # cached if the CSRF check read the form already; aiohttp caps it at client_max_size
    if len(body) > limit:
        raise AuthError(f"request body is larger than {limit // 1024} KiB", 413)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise AuthError("request body is not UTF-8") from None
    if ctype == "application/json":
        try:
            data = jsonparse.loads(text) if text else {}
        except JSONTooDeep as err:
            raise AuthError(f"request body refused: {err}") from None
        except ValueError:
            raise AuthError("request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise AuthError("request body must be a JSON object")
        return data
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=50)
    except ValueError:
        raise AuthError("request body has too many fields") from None
    fields: dict[str, Any] = {}
    for key, value in pairs:
        if key in fields:
            raise AuthError(f"field {key!r} is given twice")
        fields[key] = value
    return fields


def _text(fields: dict[str, Any], key: str, *, max_len: int = 1024) -> str:
    value = fields.get(key, "")
    if not isinstance(value, str):
        raise AuthError(f"{key} must be text")
    if len(value) > max_len:
        raise AuthError(f"{key} is too long (at most {max_len} characters)")
    return value


def safe_next(value: Any) -> str:
    """Where to go after login: a path on this hub only (never //host or /\\host)."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith(("//", "/\\")) or len(value) > 2000:
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or any(ch in value for ch in "\r\n\t\\"):
        return "/"
    if parts.path in (LOGIN_PATH, ONBOARDING_PATH, "/logout"):
        return "/"
    return value


# -- the service ----------------------------------------------------------------------


class Auth:
    """Users, sessions and tokens for one hub; lives on the app under AUTH_KEY."""

    def __init__(self, hub: Any, *, session_days: float = DEFAULT_SESSION_DAYS) -> None:
        self.hub = hub
        self.session_seconds = session_days * 86400.0
        self.idle_seconds = min(SESSION_IDLE_SECONDS, self.session_seconds)
        self.login_limiter = RateLimiter(
            rate=LOGIN_RATE,
            burst=LOGIN_BURST,
            max_failures=LOGIN_MAX_FAILURES,
            failure_window=LOGIN_FAILURE_WINDOW,
            ban_seconds=LOGIN_BAN_SECONDS,
        )
        if getattr(hub, "limits", None) is not None:  # failures and bans are kept in the store across restarts
            hub.limits.add("login", self.login_limiter)
        self.public_paths: set[str] = set(PUBLIC_PATHS)
        self.public_prefixes: list[str] = [STATIC_PREFIX]
        self.stream_paths: set[str] = {EVENTS_PATH}
        self.self_service_paths: set[str] = set(SELF_SERVICE_PATHS)
        self.self_service_prefixes: list[str] = list(SELF_SERVICE_PREFIXES)
        self._secret = b""
        self._kdf_slots: asyncio.Semaphore | None = None
        self._has_users = False
        # Open event streams by "user:<id>", "session:<id>" and "token:<id>"; requests are not hashable.
        self._streams: dict[str, dict[int, web.Request]] = {}

    @property
    def store(self) -> Store:
        return self.hub.store

    async def start(self) -> None:
        secret = await self.store.get_meta("auth_secret")
        if not secret:
            secret = secrets.token_hex(32)
            await self.store.set_meta("auth_secret", secret)
        self._secret = bytes.fromhex(secret)
        self._has_users = await self.store.count_users() > 0

    async def any_users(self) -> bool:
        if not self._has_users:
            self._has_users = await self.store.count_users() > 0
        return self._has_users

    async def _kdf(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._kdf_slots is None:
            self._kdf_slots = asyncio.Semaphore(KDF_CONCURRENCY)
        async with self._kdf_slots:
            return await asyncio.to_thread(fn, *args)

    async def hash_password(self, password: str) -> str:
        check_password_policy(password)
        return await self._kdf(hash_password, password)

    async def _save_limits(self) -> None:
        """A new ban is written to the store at once, so a crash right after it forgives nothing."""
        if getattr(self.hub, "limits", None) is not None:
            await self.hub.limits.save()

    async def _audit(self, action: str, *, actor: str, target: str = "", outcome: str = "ok", peer: str = "", details: dict[str, Any] | None = None) -> None:
        await self.hub.audit(action, actor=actor, target=target, outcome=outcome, peer=peer, details=details)

    # -- who is asking ----------------------------------------------------------

    def is_self_service(self, request: web.Request) -> bool:
        path = request.path
        return path in self.self_service_paths or any(path.startswith(prefix) for prefix in self.self_service_prefixes)

    def is_public(self, request: web.Request) -> bool:
        path = request.path
        if path in self.public_paths or any(path.startswith(prefix) for prefix in self.public_prefixes):
            return True
        # Logging in through the API is the one unauthenticated use of /api/v1/session.
        return path == SESSION_API and request.method == "POST"

    async def identify(self, request: web.Request) -> tuple[Identity | None, str]:
        """(identity, why not): the bearer token if there is an Authorization header, else the session cookie."""
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, value = header.strip().partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                return None, "the Authorization header must be 'Bearer rst_...'"
            identity = await self._token_identity(value.strip())
            return (identity, "") if identity else (None, "this API token is unknown, expired or revoked, or its user is disabled")
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            identity = await self._session_identity(cookie)
            return (identity, "") if identity else (None, "your session has ended; log in again")
        return None, ""

    async def _token_identity(self, text: str) -> Identity | None:
        parsed = split_api_token(text)
        if parsed is None:
            return None
        token_id, secret = parsed
        found = await self.store.get_api_token(token_id)
        if found is None:
            return None
        token, user = found
        # The id is public; the secret is compared in constant time.
        if not hmac.compare_digest(token.secret_hash.encode(), _sha256(secret).encode()):
            return None
        now = time.time()
        if token.revoked or user.disabled or (token.expires_at is not None and token.expires_at <= now):
            return None
        if token.last_used is None or now - token.last_used >= TOUCH_EVERY_SECONDS:
            await self.store.touch_api_token(token_id, now)
        return Identity(user=user, role=lower_role(user.role, SCOPE_ROLE.get(token.scope, ROLE_VIEWER)), via=VIA_TOKEN, token=token)

    async def _session_identity(self, cookie: str) -> Identity | None:
        if len(cookie) > 128:
            return None
        found = await self.store.get_session(_sha256(cookie))
        if found is None:
            return None
        session, user = found
        now = time.time()
        if user.disabled or now >= session.expires_at or now - session.last_seen >= self.idle_seconds:
            await self.store.delete_session(session.session_id)
            return None
        if now - session.last_seen >= TOUCH_EVERY_SECONDS:
            await self.store.touch_session(session.session_id, now)
        return Identity(user=user, role=user.role, via=VIA_SESSION, session=session)

    # -- CSRF -------------------------------------------------------------------

    def same_origin(self, request: web.Request) -> bool:
        """False when the browser says the request comes from another site."""
        site = request.headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            return False
        origin = request.headers.get("Origin")
        if origin is None:
            return True
        return origin.strip().lower() in request_origins(request, getattr(self.hub.config, "public_url", ""))

    async def csrf_error(self, request: web.Request, identity: Identity) -> str:
        """Why a state-changing session request is refused, or '' if it carries the session's CSRF token."""
        if not self.same_origin(request):
            return "cross-site request refused: it does not come from this hub's own pages"
        sent = request.headers.get(CSRF_HEADER)
        if sent is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            field = form.get(CSRF_FIELD)
            sent = field if isinstance(field, str) else None
        expected = identity.csrf_token
        if not sent or not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
            return f"missing or wrong CSRF token: send the {CSRF_HEADER} header (the page's csrf-token meta tag) or reload the page"
        return ""

    def login_csrf_token(self, request: web.Request) -> tuple[str, bool]:
        """(token, is new) for the login and onboarding forms: a signed double-submit value."""
        current = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if self._login_token_valid(current):
            return current, False
        nonce = secrets.token_urlsafe(18)
        return f"{nonce}.{self._sign(nonce)}", True

    def set_login_csrf_cookie(self, request: web.Request, response: web.StreamResponse, token: str) -> None:
        response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="Strict", secure=is_https(request), path="/")

    def _sign(self, nonce: str) -> str:
        return hmac.new(self._secret, b"login-csrf|" + nonce.encode(), hashlib.sha256).hexdigest()[:32]

    def _login_token_valid(self, token: str) -> bool:
        nonce, _, signature = token.partition(".")
        if not nonce or not signature or len(token) > 100:
            return False
        return hmac.compare_digest(signature.encode(), self._sign(nonce).encode())

    def check_login_csrf(self, request: web.Request, sent: Any) -> None:
        """The login/onboarding form's token must match its cookie, carry our signature, and come from our origin."""
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if (
            not self.same_origin(request)
            or not isinstance(sent, str)
            or not self._login_token_valid(cookie)
            or not hmac.compare_digest(sent.encode(), cookie.encode())
        ):
            raise AuthError("the form has expired or did not come from this hub; reload the page and try again", 403)

    # -- logging in and out -------------------------------------------------------

    def check_not_banned(self, request: web.Request) -> str:
        peer = peer_of(request)
        wait = self.login_limiter.allow(rate_key(peer))
        if wait:
            raise AuthError(f"too many login attempts from {peer}; try again in {wait_words(wait)}", 429, retry_after=wait)
        return peer

    async def login(self, request: web.Request, name: Any, password: Any) -> UserRecord:
        """Check a user name and password, with rate limits and bans per peer; raise AuthError when refused."""
        peer = self.check_not_banned(request)
        name = name if isinstance(name, str) else ""
        password = password if isinstance(password, str) else ""
        user = None
        if USERNAME_RE.match(name) and 0 < len(password) <= MAX_PASSWORD_LENGTH:
            user = await self.store.get_user_by_name(name)
        # Unknown users cost one hash too, so timing does not tell which names exist.
        ok = await self._kdf(verify_password, password[:MAX_PASSWORD_LENGTH], user.password_hash if user else DUMMY_HASH)
        if not ok or user is None:
            banned = self.login_limiter.failure(rate_key(peer))
            await self._audit("login.failed", actor=f"user:{name[:MAX_NAME_LENGTH]}", outcome="refused", peer=peer)
            if banned:
                _LOGGER.warning("login: %s banned for %s after %d failed logins", peer, wait_words(banned), LOGIN_MAX_FAILURES)
                await self._audit("login.banned", actor="system", target=f"peer:{peer}", outcome="refused", peer=peer, details={"seconds": int(banned)})
                await self._save_limits()
                raise AuthError(f"too many failed logins from {peer}; try again in {wait_words(banned)}", 429, retry_after=banned)
            raise AuthError("wrong user name or password", 401)
        if user.disabled:
            await self._audit("login.failed", actor=f"user:{user.name}", outcome="refused", peer=peer, details={"reason": "disabled"})
            raise AuthError("this account is disabled; ask an admin to enable it", 403)
        await self._audit("login.ok", actor=f"user:{user.name}", peer=peer)
        return user

    async def start_session(self, request: web.Request, user: UserRecord) -> tuple[SessionRecord, str]:
        """A brand-new session for ``user`` and its cookie value; any session the request's cookie named ends first (no fixation).

        Put the cookie on the response with ``set_session_cookie``.
        """
        previous = request.cookies.get(SESSION_COOKIE)
        if previous and len(previous) <= 128:
            old_id = _sha256(previous)
            await self.store.delete_session(old_id)
            self.close_streams(f"session:{old_id}")
        cookie = secrets.token_urlsafe(32)
        now = time.time()
        session = SessionRecord(
            session_id=_sha256(cookie),
            user_id=user.user_id,
            created_at=now,
            last_seen=now,
            expires_at=now + self.session_seconds,
            csrf_token=secrets.token_urlsafe(32),
            peer=peer_of(request),
            user_agent=request.headers.get("User-Agent", "")[:200],
        )
        await self.store.add_session(session)
        request[IDENTITY_KEY] = Identity(user=user, role=user.role, via=VIA_SESSION, session=session)
        return session, cookie

    def set_session_cookie(self, request: web.Request, response: web.StreamResponse, cookie: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            httponly=True,
            samesite="Strict",
            secure=is_https(request),
            path="/",
            max_age=int(self.session_seconds),
        )
        if LOGIN_CSRF_COOKIE in request.cookies:
            response.del_cookie(LOGIN_CSRF_COOKIE, path="/")

    async def logout(self, request: web.Request, response: web.StreamResponse) -> None:
        identity = request.get(IDENTITY_KEY)
        if identity is not None and identity.session is not None:
            await self.store.delete_session(identity.session.session_id)
            self.close_streams(f"session:{identity.session.session_id}")
            await self._audit("session.logout", actor=identity.actor, peer=peer_of(request))
        response.del_cookie(SESSION_COOKIE, path="/")

    async def onboard(self, request: web.Request, name: Any, password: Any, confirm: Any | None = None) -> UserRecord:
        """Create the owner (an admin) on first start; refused once any user exists, even in a race."""
        peer = self.check_not_banned(request)
        if await self.any_users():
            raise AuthError("this hub already has its owner account; log in instead", 409)
        check_username(name)
        if confirm is not None and confirm != password:
            raise AuthError("the two passwords differ")
        password_hash = await self.hash_password(password)
        user = new_user(name, password_hash, ROLE_ADMIN)
        if not await self.store.add_user(user, only_if_none=True):
            raise AuthError("this hub already has its owner account; log in instead", 409)
        self._has_users = True
        _LOGGER.info("onboarding: created the owner account %r from %s", name, peer)
        await self._audit("user.created", actor="system", target=f"user:{name}", peer=peer, details={"role": ROLE_ADMIN, "via": "onboarding"})
        return user

    # -- users --------------------------------------------------------------------

    async def create_user(self, actor: Identity, request: web.Request, name: Any, password: Any, role: Any) -> UserRecord:
        check_username(name)
        check_role(role)
        password_hash = await self.hash_password(password)
        user = new_user(name, password_hash, role)
        try:
            await self.store.add_user(user)
        except UserExistsError as err:
            raise AuthError(str(err), 409) from None
        self._has_users = True
        await self._audit("user.created", actor=actor.actor, target=f"user:{name}", peer=peer_of(request), details={"role": role})
        return user

    async def change_user(
        self,
        actor: Identity,
        request: web.Request,
        user_id: str,
        *,
        role: str | None = None,
        disabled: bool | None = None,
        password: str | None = None,
    ) -> UserRecord:
        """Change another user's role, disabled flag or password (admins); their sessions end at once."""
        if role is not None:
            check_role(role)
        password_hash = await self.hash_password(password) if password is not None else None
        before = await self.store.get_user(user_id)
        if before is None:
            raise AuthError(f"no user with id {user_id!r}", 404)
        try:
            user = await self.store.update_user(user_id, role=role, disabled=disabled, password_hash=password_hash, now=time.time())
        except LastAdminError as err:
            raise AuthError(str(err), 409) from None
        if user is None:
            raise AuthError(f"no user with id {user_id!r}", 404)
        self.close_streams(f"user:{user_id}")
        changes: dict[str, Any] = {}
        if role is not None and role != before.role:
            changes["role"] = [before.role, role]
        if disabled is not None and disabled != before.disabled:
            changes["disabled"] = disabled
        if password is not None:
            changes["password"] = "changed"
        await self._audit("user.changed", actor=actor.actor, target=f"user:{user.name}", peer=peer_of(request), details=changes)
        return user

    async def change_own_password(self, identity: Identity, request: web.Request, current: Any, new: Any) -> UserRecord:
        """Check the current password (failures count towards the peer's login ban), then set the new one."""
        peer = self.check_not_banned(request)
        check_password_policy(new)
        if not isinstance(current, str) or not await self._kdf(verify_password, current[:MAX_PASSWORD_LENGTH], identity.user.password_hash):
            banned = self.login_limiter.failure(rate_key(peer))
            await self._audit("user.password_failed", actor=identity.actor, target=f"user:{identity.name}", outcome="refused", peer=peer)
            if banned:
                await self._save_limits()
                raise AuthError(f"too many wrong passwords from {peer}; try again in {wait_words(banned)}", 429, retry_after=banned)
            raise AuthError("the current password is wrong", 403)
        return await self.change_user(identity, request, identity.user.user_id, password=new)

    async def delete_user(self, actor: Identity, request: web.Request, user_id: str) -> UserRecord:
        user = await self.store.get_user(user_id)
        if user is None:
            raise AuthError(f"no user with id {user_id!r}", 404)
        try:
            deleted = await self.store.delete_user(user_id)
        except LastAdminError as err:
            raise AuthError(str(err), 409) from None
        if not deleted:
            raise AuthError(f"no user with id {user_id!r}", 404)
        self.close_streams(f"user:{user_id}")
        await self._audit("user.deleted", actor=actor.actor, target=f"user:{user.name}", peer=peer_of(request))
        return user

    # -- tokens -------------------------------------------------------------------

    async def create_token(
        self, actor: Identity, request: web.Request, owner: UserRecord, *, scope: Any, name: Any = "", expires: Any = None
    ) -> tuple[str, ApiTokenRecord]:
        from roost.core.config import parse_duration

        if not isinstance(name, str) or len(name) > TOKEN_NAME_MAX:
            raise AuthError(f"a token name is text of at most {TOKEN_NAME_MAX} characters")
        ttl = None
        if expires not in (None, "", "never"):
            try:
                ttl = parse_duration(expires)
            except vol.Invalid:
                raise AuthError("expires must be a duration such as 30d, 12h or never") from None
            if not 60 <= ttl <= 5 * 365 * 86400:
                raise AuthError("expires must be between 1m and 5 years, or never")
        if not isinstance(scope, str):
            raise AuthError(f"scope must be one of {', '.join(SCOPES)}")
        # A token never exceeds its creator's own power either (an operator token cannot mint an admin token).
        if scope in SCOPE_ROLE and not actor.allows(SCOPE_ROLE[scope]):
            raise AuthError(f"you are acting as {actor.role} and cannot create a token with {scope} scope", 403)
        token, record = await create_api_token(self.store, owner, scope=scope, name=name, ttl=ttl)
        await self._audit(
            "api_token.created",
            actor=actor.actor,
            target=f"token:{record.token_id}",
            peer=peer_of(request),
            details={"user": owner.name, "scope": scope, "expires_at": record.expires_at},
        )
        return token, record

    async def revoke_token(self, actor: Identity, request: web.Request, token_id: str) -> None:
        """Revoke a token: one's own, or anyone's for an admin. Someone else's looks like a missing one."""
        owner = None if actor.allows(ROLE_ADMIN) else actor.user.user_id
        if not await self.store.revoke_api_token(token_id, user_id=owner):
            raise AuthError(f"no API token with id {token_id!r}", 404)
        self.close_streams(f"token:{token_id}")
        await self._audit("api_token.revoked", actor=actor.actor, target=f"token:{token_id}", peer=peer_of(request))

    # -- long-lived responses -----------------------------------------------------

    def _stream_keys(self, identity: Identity) -> list[str]:
        keys = [f"user:{identity.user.user_id}"]
        if identity.session is not None:
            keys.append(f"session:{identity.session.session_id}")
        if identity.token is not None:
            keys.append(f"token:{identity.token.token_id}")
        return keys

    def track(self, request: web.Request, identity: Identity) -> list[str]:
        keys = self._stream_keys(identity)
        for key in keys:
            self._streams.setdefault(key, {})[id(request)] = request
        return keys

    def untrack(self, request: web.Request, keys: list[str]) -> None:
        for key in keys:
            requests = self._streams.get(key)
            if requests is not None:
                requests.pop(id(request), None)
                if not requests:
                    del self._streams[key]

    def close_streams(self, key: str) -> int:
        """End open event streams of a session, token or user whose access just ended."""
        closed = 0
        for request in list(self._streams.pop(key, {}).values()):
            transport = request.transport
            if transport is not None and not transport.is_closing():
                transport.close()
                closed += 1
        return closed

    async def recheck_streams(self) -> int:
        """End every open stream whose credential no longer holds; the number closed.

        Changes made through this hub's API close streams at once
        (``close_streams``); this catches the rest: a token revoked, a user
        deleted, disabled, demoted or given a new password by the CLI, and
        tokens and sessions that expired while their stream was open.
        """
        open_requests = {id(r): r for group in self._streams.values() for r in group.values()}
        closed = 0
        for request in open_requests.values():
            transport = request.transport
            identity = request.get(IDENTITY_KEY)
            if identity is None or transport is None or transport.is_closing():
                continue
            why = await self._ended(identity)
            if why:
                transport.close()
                closed += 1
                _LOGGER.info("closed an event stream of %s: %s", identity.actor, why)
        return closed

    async def _ended(self, identity: Identity) -> str:
        """Why this identity's access has ended since it was checked, or ''."""
        now = time.time()
        if identity.token is not None:
            if identity.token.expires_at is not None and identity.token.expires_at <= now:
                return "its API token expired"
            found_token = await self.store.get_api_token(identity.token.token_id)
            if found_token is None:
                return "its API token or its user was deleted"
            token, user = found_token
            if token.revoked:
                return "its API token was revoked"
        elif identity.session is not None:
            if now >= identity.session.expires_at:
                return "its session expired"
            found_session = await self.store.get_session(identity.session.session_id)
            if found_session is None:
                return "its session ended"
            session, user = found_session
            if now - session.last_seen >= self.idle_seconds:
                return "its session expired (idle)"
        else:
            return ""
        if user.disabled:
            return f"user {user.name} was disabled"
        if user.password_changed_at != identity.user.password_changed_at:
            return f"user {user.name}'s password was changed"
        if user.role != identity.user.role:
            return f"user {user.name}'s role was changed"
        return ""

    async def prune(self) -> None:
        deleted = await self.store.prune_auth(time.time(), idle_seconds=self.idle_seconds)
        if deleted:
            _LOGGER.debug("pruned %d ended sessions and old API tokens", deleted)


AUTH_KEY = web.AppKey("roost_auth", Auth)
# Set by the dashboard: renders the "not allowed" page for a refused HTML request.
FORBIDDEN_PAGE_KEY = web.AppKey("roost_forbidden_page", Callable)


def add_public_path(app: web.Application, path: str, *, prefix: bool = False) -> None:
    """Serve ``path`` (or everything under it) without a login; its handler must authenticate on its own."""
    auth = app[AUTH_KEY]
    if prefix:
        auth.public_prefixes.append(path)
    else:
        auth.public_paths.add(path)


# -- the middleware -----------------------------------------------------------------


@web.middleware
async def auth_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    auth = request.app[AUTH_KEY]
    if request.path.startswith(STATIC_PREFIX):
        return await handler(request)  # public, and no store lookup for every stylesheet
    identity, problem = await auth.identify(request)
    stale_cookie = bool(problem) and "Authorization" not in request.headers
    if identity is not None:
        request[IDENTITY_KEY] = identity
    if not auth.is_public(request):
        if identity is None:
            if problem and "Authorization" in request.headers:
                await _audit_bearer_refused(auth, request, problem)
            raise await _refuse_anonymous(auth, request, problem, stale_cookie)
        if request.method not in SAFE_METHODS:
            if identity.via == VIA_SESSION:
                error = await auth.csrf_error(request, identity)
                if error:
                    await auth._audit("csrf.refused", actor=identity.actor, target=f"{request.method} {request.path}", outcome="refused", peer=peer_of(request))
                    return await _denied(request, error, audited=True)
            elif identity.token is not None and identity.token.scope == SCOPE_READ:
                return await _denied(request, "this API token has read scope; it cannot change anything")
            if not identity.allows(ROLE_OPERATOR) and not auth.is_self_service(request):
                return await _denied(request, f"{identity.name} is a viewer: viewers change nothing but their own account")
    keys = auth.track(request, identity) if identity is not None and request.path in auth.stream_paths else None
    try:
        response = await handler(request)
    except AccessDenied as err:
        return await _denied(request, err.message)
    except web.HTTPForbidden as err:
        await _audit_denied(request, _error_text(err))
        raise
    finally:
        if keys is not None:
            auth.untrack(request, keys)
    if response.status == 403:  # a handler's own refusal (AuthError 403, a JSON 403)
        await _audit_denied(request, _error_text(response))
    if stale_cookie and SESSION_COOKIE in request.cookies and SESSION_COOKIE not in response.cookies and not response.prepared:
        # The browser holds a cookie for a session that ended; drop it (unless this response starts a new one).
        response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def _refuse_anonymous(auth: Auth, request: web.Request, problem: str, stale_cookie: bool) -> web.HTTPException:
    if wants_json(request):
        exc = _unauthorized(request, problem)
    elif not await auth.any_users():
        exc = web.HTTPSeeOther(ONBOARDING_PATH)
    else:
        target = request.path_qs
        query = f"?next={quote(target, safe='/')}" if request.method == "GET" and target != "/" else ""
        exc = web.HTTPSeeOther(LOGIN_PATH + query)
    if stale_cookie and SESSION_COOKIE in request.cookies:
        exc.del_cookie(SESSION_COOKIE, path="/")
    return exc


async def _audit_denied(request: web.Request, why: str) -> None:
    """Every 403 the hub answers is a refused privileged attempt: audited; repeats of one route by one actor from one address counted."""
    identity = request.get(IDENTITY_KEY)
    actor = identity.actor if identity is not None else "anonymous"
    peer = peer_of(request)
    route = request.match_info.route.resource
    await request.app[HUB_KEY].security_events.record(
        "access.denied",
        key=f"{actor} {rate_key(peer)} {request.method} {route.canonical if route is not None else request.path}",
        actor=actor,
        target=f"{request.method} {request.path}",
        peer=peer,
        details={"status": 403, "why": why, "role": identity.role if identity is not None else None},
        phrase="refused requests",
    )


async def _audit_bearer_refused(auth: Auth, request: web.Request, why: str) -> None:
    """An Authorization header that names no valid token: audited, repeats from one address counted."""
    parsed = split_api_token(request.headers.get("Authorization", "").strip().partition(" ")[2].strip())
    peer = peer_of(request)
    await auth.hub.security_events.record(
        "api_token.refused",
        key=rate_key(peer),
        actor=f"token:{parsed[0]}" if parsed else "anonymous",
        target=f"{request.method} {request.path}",
        peer=peer,
        details={"status": 401, "why": why},
        phrase="requests with an unknown, expired or revoked API token",
    )


def _error_text(response: web.StreamResponse) -> str:
    """The ``error`` of a small JSON answer (or its text), for the audit entry; '' when there is none."""
    body = getattr(response, "text", None) if isinstance(response, (web.Response, web.HTTPException)) else None
    if not isinstance(body, str) or len(body) > 4096:
        return ""
    try:
        data = json.loads(body)
    except ValueError:
        return body[:500]
    return str(data.get("error", ""))[:500] if isinstance(data, dict) else ""


async def _denied(request: web.Request, message: str, *, audited: bool = False) -> web.StreamResponse:
    if not audited:
        await _audit_denied(request, message)
    if wants_json(request):
        return web.json_response({"error": message}, status=403)
    render = request.app.get(FORBIDDEN_PAGE_KEY)
    if render is not None:
        return await render(request, message)
    return web.Response(text=message, status=403)


def error_response(request: web.Request, err: AuthError) -> web.Response:
    response = web.json_response({"error": str(err)}, status=err.status)
    if err.retry_after:
        response.headers["Retry-After"] = retry_after_header(err.retry_after)
    return response


# -- the JSON API ---------------------------------------------------------------------


def user_json(user: UserRecord) -> dict[str, Any]:
    return {
        "id": user.user_id,
        "name": user.name,
        "role": user.role,
        "disabled": user.disabled,
        "created_at": user.created_at,
        "password_changed_at": user.password_changed_at,
    }


def token_json(token: ApiTokenRecord, user: UserRecord | None = None) -> dict[str, Any]:
    data = {
        "id": token.token_id,
        "name": token.name,
        "scope": token.scope,
        "user_id": token.user_id,
        "created_at": token.created_at,
        "expires_at": token.expires_at,
        "last_used": token.last_used,
        "revoked": token.revoked,
    }
    if user is not None:
        data["user"] = user.name
    return data


def _api(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Callable:
    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except AuthError as err:
            return error_response(request, err)

    return wrapper


LOGIN_SCHEMA = vol.Schema({vol.Required("username"): str, vol.Required("password"): str}, extra=vol.PREVENT_EXTRA)
NEW_USER_SCHEMA = vol.Schema(
    {vol.Required("name"): str, vol.Required("password"): str, vol.Optional("role", default=ROLE_VIEWER): vol.In(ROLES)}
)
CHANGE_USER_SCHEMA = vol.Schema({vol.Optional("role"): vol.In(ROLES), vol.Optional("disabled"): bool, vol.Optional("password"): str})
PASSWORD_SCHEMA = vol.Schema({vol.Required("current_password"): str, vol.Required("new_password"): str})
NEW_TOKEN_SCHEMA = vol.Schema(
    {
        vol.Optional("name", default=""): str,
        vol.Optional("scope", default=SCOPE_READ): vol.In(SCOPES),
        vol.Optional("expires"): vol.Any(None, str, int, float),
        vol.Optional("user_id"): str,
    }
)


def _validate(schema: vol.Schema, data: dict[str, Any]) -> dict[str, Any]:
    try:
        return schema(data)
    except vol.Invalid as err:
        raise AuthError(f"invalid request: {humanize_invalid(err)}") from None


@_api
async def api_login(request: web.Request) -> web.StreamResponse:
    """POST /api/v1/session {"username", "password"}: a session cookie and its CSRF token.

    JSON only: a cross-site page cannot send JSON without a CORS preflight
    this hub never answers, and the Origin check catches the rest.
    """
    auth = request.app[AUTH_KEY]
    fields = _validate(LOGIN_SCHEMA, await read_fields(request, MAX_LOGIN_BODY_BYTES, json_only=True))
    if not auth.same_origin(request):
        raise AuthError("cross-site login refused", 403)
    user = await auth.login(request, fields["username"], fields["password"])
    session, cookie = await auth.start_session(request, user)
    response = web.json_response({"user": user_json(user), "role": user.role, "via": VIA_SESSION, "csrf_token": session.csrf_token})
    auth.set_session_cookie(request, response, cookie)
    return response


@_api
async def api_session(request: web.Request) -> web.Response:
    identity = require(request)
    body: dict[str, Any] = {"user": user_json(identity.user), "role": identity.role, "via": identity.via}
    if identity.session is not None:
        body["csrf_token"] = identity.session.csrf_token
        body["expires_at"] = identity.session.expires_at
    if identity.token is not None:
        body["token"] = token_json(identity.token)
    return web.json_response(body)


@_api
async def api_logout(request: web.Request) -> web.Response:
    require(request)
    response = web.json_response({"logged_out": True})
    await request.app[AUTH_KEY].logout(request, response)
    return response


@_api
async def api_change_password(request: web.Request) -> web.Response:
    identity = require(request, session_only=True)
    if identity.via != VIA_SESSION:
        raise AuthError("change your password in the dashboard (or with a session), not with an API token", 403)
    auth = request.app[AUTH_KEY]
    fields = _validate(PASSWORD_SCHEMA, await read_fields(request, MAX_FORM_BODY_BYTES))
    user = await auth.change_own_password(identity, request, fields["current_password"], fields["new_password"])
    # Every session ended with the change; this one goes on under a new id.
    session, cookie = await auth.start_session(request, user)
    response = web.json_response({"user": user_json(user), "csrf_token": session.csrf_token})
    auth.set_session_cookie(request, response, cookie)
    return response


@_api
async def api_list_users(request: web.Request) -> web.Response:
    require(request, ROLE_ADMIN)
    users = await request.app[AUTH_KEY].store.list_users()
    return web.json_response({"users": [user_json(u) for u in users]})


@_api
async def api_create_user(request: web.Request) -> web.Response:
    identity = require(request, ROLE_ADMIN)
    fields = _validate(NEW_USER_SCHEMA, await read_fields(request, MAX_FORM_BODY_BYTES))
    user = await request.app[AUTH_KEY].create_user(identity, request, fields["name"], fields["password"], fields["role"])
    return web.json_response(user_json(user), status=201)


@_api
async def api_change_user(request: web.Request) -> web.Response:
    identity = require(request, ROLE_ADMIN)
    fields = _validate(CHANGE_USER_SCHEMA, await read_fields(request, MAX_FORM_BODY_BYTES))
    user = await request.app[AUTH_KEY].change_user(
        identity, request, request.match_info["user_id"], role=fields.get("role"), disabled=fields.get("disabled"), password=fields.get("password")
    )
    return web.json_response(user_json(user))


@_api
async def api_delete_user(request: web.Request) -> web.Response:
    identity = require(request, ROLE_ADMIN)
    await request.app[AUTH_KEY].delete_user(identity, request, request.match_info["user_id"])
    return web.json_response({"deleted": True})


@_api
async def api_list_tokens(request: web.Request) -> web.Response:
    identity = require(request)
    store = request.app[AUTH_KEY].store
    everyone = request.query.get("all") in ("1", "true") and identity.allows(ROLE_ADMIN)
    tokens = await store.list_api_tokens(None if everyone else identity.user.user_id)
    users = {u.user_id: u for u in await store.list_users()} if everyone else {identity.user.user_id: identity.user}
    return web.json_response({"tokens": [token_json(t, users.get(t.user_id)) for t in tokens]})


@_api
async def api_create_token(request: web.Request) -> web.Response:
    identity = require(request, session_only=True)
    auth = request.app[AUTH_KEY]
    fields = _validate(NEW_TOKEN_SCHEMA, await read_fields(request, MAX_FORM_BODY_BYTES))
    owner = identity.user
    if fields.get("user_id") and fields["user_id"] != owner.user_id:
        require(request, ROLE_ADMIN)
        other = await auth.store.get_user(fields["user_id"])
        if other is None:
            raise AuthError(f"no user with id {fields['user_id']!r}", 404)
        owner = other
    token, record = await auth.create_token(identity, request, owner, scope=fields["scope"], name=fields["name"], expires=fields.get("expires"))
    return web.json_response({"token": token, **token_json(record, owner)}, status=201)


@_api
async def api_revoke_token(request: web.Request) -> web.Response:
    identity = require(request, session_only=True)
    await request.app[AUTH_KEY].revoke_token(identity, request, request.match_info["token_id"])
    return web.json_response({"revoked": True})


async def _auth_ctx(app: web.Application) -> AsyncIterator[None]:
    auth = app[AUTH_KEY]
    await auth.start()

    async def prune_forever() -> None:
        while True:
            try:
                await auth.prune()
            except Exception:
                _LOGGER.exception("cannot prune ended sessions")
            await asyncio.sleep(PRUNE_EVERY_SECONDS)

    async def check_streams_forever() -> None:
        while True:
            await asyncio.sleep(STREAM_CHECK_SECONDS)
            try:
                await auth.recheck_streams()
            except Exception:
                _LOGGER.exception("cannot check open event streams against the store")

    tasks = [
        asyncio.create_task(prune_forever(), name="roost-auth-prune"),
        asyncio.create_task(check_streams_forever(), name="roost-auth-streams"),
    ]
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def setup(app: web.Application, *, session_days: float = DEFAULT_SESSION_DAYS) -> Auth:
    """Put Auth on the app, its middleware after LAN-only, and the session, user and token API routes.

    Call after the store's cleanup context is registered (Auth reads its secret from the store).
    """
    auth = app[AUTH_KEY] = Auth(app[HUB_KEY], session_days=session_days)
    app.cleanup_ctx.append(_auth_ctx)
    app.middlewares.append(auth_middleware)
    r = app.router
    r.add_post(SESSION_API, api_login)
    r.add_get(SESSION_API, api_session)
    r.add_delete(SESSION_API, api_logout)
    r.add_post("/api/v1/account/password", api_change_password)
    r.add_get("/api/v1/users", api_list_users)
    r.add_post("/api/v1/users", api_create_user)
    r.add_patch("/api/v1/users/{user_id}", api_change_user)
    r.add_delete("/api/v1/users/{user_id}", api_delete_user)
    r.add_get("/api/v1/tokens", api_list_tokens)
    r.add_post("/api/v1/tokens", api_create_token)
    r.add_delete("/api/v1/tokens/{token_id}", api_revoke_token)
    return auth
