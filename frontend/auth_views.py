"""The dashboard's account pages: login, first-start onboarding, logout, one's own account, and users for admins.

Plain HTML forms, no script: each form carries the CSRF token as a hidden
field. The rules (passwords, sessions, roles, rate limits) live in
roost.core.hub.auth; these handlers only turn forms into calls and answers
into pages.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .render import _render

ROLE_CHOICES = ("viewer", "operator", "admin")
SCOPE_CHOICES = ("read", "operate", "admin")
EXPIRY_CHOICES = (("30d", "30 days"), ("90d", "90 days"), ("365d", "1 year"), ("never", "never"))
# Shown after a redirect; the query only picks one of these, nothing from it is echoed.
DONE_MESSAGES = {
    "password": "Your password is changed. Every other session has been logged out.",
    "revoked": "The token is revoked; it stopped working at once.",
    "user-added": "User added.",
    "user-changed": "User changed; their sessions have ended.",
    "user-deleted": "User deleted.",
}


def _auth() -> Any:
    from roost.core.hub import auth

    return auth


def setup(app: web.Application) -> None:
    app.router.add_get("/login", login_page, name="login")
    app.router.add_post("/login", login_submit)
    app.router.add_get("/onboarding", onboarding_page, name="onboarding")
    app.router.add_post("/onboarding", onboarding_submit)
    app.router.add_post("/logout", logout_submit, name="logout")
    app.router.add_get("/account", account_page, name="account")
    app.router.add_post("/account/password", account_password)
    app.router.add_post("/account/tokens", account_token_create)
    app.router.add_post("/account/tokens/{token_id}/revoke", account_token_revoke)
    app.router.add_get("/users", users_page, name="users")
    app.router.add_post("/users", users_add)
    app.router.add_post("/users/{user_id}", users_change)
    app[_auth().FORBIDDEN_PAGE_KEY] = forbidden_page


async def forbidden_page(request: web.Request, message: str) -> web.Response:
    if "fragment" in request.query:  # a live refresh of part of a page: the sentence alone
        import html

        return web.Response(text=f'<p class="notice" data-testid="not-allowed">{html.escape(message)}</p>', content_type="text/html", status=403, headers={"Cache-Control": "no-store"})
    return _render(request, "auth/forbidden.html", {"page": "forbidden", "quiet": True, "message": message}, status=403)


def _service(request: web.Request) -> Any:
    auth = _auth()
    return auth, request.app[auth.AUTH_KEY]


def _with_login_csrf(request: web.Request, template: str, context: dict[str, Any], *, status: int = 200, retry_after: float = 0) -> web.Response:
    """Render the login or onboarding form with its pre-session CSRF token (cookie and hidden field)."""
    auth, service = _service(request)
    token, new = service.login_csrf_token(request)
    response = _render(request, template, {"quiet": True, "login_csrf": token, **context}, status=status)
    if new:
        service.set_login_csrf_cookie(request, response, token)
    if retry_after:
        from roost.core.hub.security import retry_after_header

        response.headers["Retry-After"] = retry_after_header(retry_after)
    return response


# -- login, onboarding, logout -------------------------------------------------------


async def login_page(request: web.Request) -> web.StreamResponse:
    auth, service = _service(request)
    next_url = auth.safe_next(request.query.get("next", "/"))
    if request.get(auth.IDENTITY_KEY) is not None:
        raise web.HTTPSeeOther(next_url)
    if not await service.any_users():
        raise web.HTTPSeeOther("/onboarding")
    return _with_login_csrf(request, "auth/login.html", {"page": "login", "next": next_url, "username": ""})


async def login_submit(request: web.Request) -> web.StreamResponse:
    auth, service = _service(request)
    username = ""
    next_url = "/"
    try:
        fields = await auth.read_fields(request, auth.MAX_LOGIN_BODY_BYTES)
        username = auth._text(fields, "username", max_len=auth.MAX_NAME_LENGTH)
        next_url = auth.safe_next(fields.get("next", "/"))
        service.check_login_csrf(request, fields.get(auth.CSRF_FIELD))
        user = await service.login(request, username, auth._text(fields, "password", max_len=auth.MAX_PASSWORD_LENGTH))
    except auth.AuthError as err:
        context = {"page": "login", "next": next_url, "username": username, "error": str(err)}
        return _with_login_csrf(request, "auth/login.html", context, status=err.status, retry_after=err.retry_after)
    response = web.HTTPSeeOther(next_url)
    _session, cookie = await service.start_session(request, user)
    service.set_session_cookie(request, response, cookie)
    raise response


async def onboarding_page(request: web.Request) -> web.StreamResponse:
    auth, service = _service(request)
    if await service.any_users():
        raise web.HTTPSeeOther("/" if request.get(auth.IDENTITY_KEY) is not None else "/login")
    return _with_login_csrf(request, "auth/onboarding.html", {"page": "onboarding", "username": "", "min_length": auth.MIN_PASSWORD_LENGTH})


async def onboarding_submit(request: web.Request) -> web.StreamResponse:
    auth, service = _service(request)
    username = ""
    try:
        fields = await auth.read_fields(request, auth.MAX_LOGIN_BODY_BYTES)
        username = auth._text(fields, "username", max_len=auth.MAX_NAME_LENGTH)
        service.check_login_csrf(request, fields.get(auth.CSRF_FIELD))
        password = auth._text(fields, "password", max_len=auth.MAX_PASSWORD_LENGTH)
        user = await service.onboard(request, username, password, auth._text(fields, "confirm", max_len=auth.MAX_PASSWORD_LENGTH))
    except auth.AuthError as err:
        if err.status == 409:
            raise web.HTTPSeeOther("/login") from None
        context = {"page": "onboarding", "username": username, "error": str(err), "min_length": auth.MIN_PASSWORD_LENGTH}
        return _with_login_csrf(request, "auth/onboarding.html", context, status=err.status, retry_after=err.retry_after)
    response = web.HTTPSeeOther("/")
    _session, cookie = await service.start_session(request, user)
    service.set_session_cookie(request, response, cookie)
    raise response


async def logout_submit(request: web.Request) -> web.StreamResponse:
    auth, service = _service(request)
    auth.require(request)
    response = web.HTTPSeeOther("/login")
    await service.logout(request, response)
    raise response


# -- one's own account ------------------------------------------------------------------


async def _account(request: web.Request, *, status: int = 200, **extra: Any) -> web.Response:
    auth, service = _service(request)
    identity = auth.require(request)
    tokens = await service.store.list_api_tokens(identity.user.user_id)
    done = DONE_MESSAGES.get(request.query.get("done", ""))
    allowed_scopes = [s for s in SCOPE_CHOICES if identity.allows(auth.SCOPE_ROLE[s])]
    context = {
        "page": "account",
        "user": identity.user,
        "tokens": tokens,
        "scopes": allowed_scopes,
        "expiries": EXPIRY_CHOICES,
        "min_length": auth.MIN_PASSWORD_LENGTH,
        "done": done,
        **extra,
    }
    return _render(request, "auth/account.html", context, status=status)


async def account_page(request: web.Request) -> web.Response:
    return await _account(request)


async def account_password(request: web.Request) -> web.StreamResponse:
    auth, service = _service(request)
    identity = auth.require(request, session_only=True)
    try:
        fields = await auth.read_fields(request, auth.MAX_FORM_BODY_BYTES)
        new = auth._text(fields, "new_password", max_len=auth.MAX_PASSWORD_LENGTH)
        if new != fields.get("confirm"):
            raise auth.AuthError("the two new passwords differ")
        user = await service.change_own_password(identity, request, auth._text(fields, "current_password", max_len=auth.MAX_PASSWORD_LENGTH), new)
    except auth.AuthError as err:
        response = await _account(request, status=err.status, password_error=str(err))
        if err.retry_after:
            from roost.core.hub.security import retry_after_header

            response.headers["Retry-After"] = retry_after_header(err.retry_after)
        return response
    response = web.HTTPSeeOther("/account?done=password")
    _session, cookie = await service.start_session(request, user)
    service.set_session_cookie(request, response, cookie)
    raise response


async def account_token_create(request: web.Request) -> web.Response:
    auth, service = _service(request)
    identity = auth.require(request, session_only=True)
    try:
        fields = await auth.read_fields(request, auth.MAX_FORM_BODY_BYTES)
        token, record = await service.create_token(
            identity,
            request,
            identity.user,
            scope=fields.get("scope", "read"),
            name=auth._text(fields, "name", max_len=auth.TOKEN_NAME_MAX),
            expires=fields.get("expires", "30d"),
        )
    except auth.AuthError as err:
        return await _account(request, status=err.status, token_error=str(err))
    # Rendered, not redirected: this answer is the only place the token ever appears.
    return await _account(request, new_token=token, new_token_record=record)


async def account_token_revoke(request: web.Request) -> web.StreamResponse:
    auth, service = _service(request)
    identity = auth.require(request, session_only=True)
    try:
        await service.revoke_token(identity, request, request.match_info["token_id"])
    except auth.AuthError as err:
        return await _account(request, status=err.status, token_error=str(err))
    raise web.HTTPSeeOther("/account?done=revoked")


# -- users (admins) ------------------------------------------------------------------------


async def _users(request: web.Request, *, status: int = 200, **extra: Any) -> web.Response:
    auth, service = _service(request)
    identity = auth.require(request, auth.ROLE_ADMIN)
    users = await service.store.list_users()
    context = {
        "page": "users",
        "users": users,
        "me_id": identity.user.user_id,
        "roles": ROLE_CHOICES,
        "min_length": auth.MIN_PASSWORD_LENGTH,
        "done": DONE_MESSAGES.get(request.query.get("done", "")),
        **extra,
    }
    return _render(request, "auth/users.html", context, status=status)


async def users_page(request: web.Request) -> web.Response:
    return await _users(request)


async def users_add(request: web.Request) -> web.StreamResponse:
    auth, service = _service(request)
    identity = auth.require(request, auth.ROLE_ADMIN)
    try:
        fields = await auth.read_fields(request, auth.MAX_FORM_BODY_BYTES)
        await service.create_user(
            identity,
            request,
            auth._text(fields, "name", max_len=auth.MAX_NAME_LENGTH),
            auth._text(fields, "password", max_len=auth.MAX_PASSWORD_LENGTH),
            fields.get("role", "viewer"),
        )
    except auth.AuthError as err:
        return await _users(request, status=err.status, error=str(err))
    raise web.HTTPSeeOther("/users?done=user-added")


async def users_change(request: web.Request) -> web.StreamResponse:
    """One form per user row; its ``action`` field says what to do."""
    auth, service = _service(request)
    identity = auth.require(request, auth.ROLE_ADMIN)
    user_id = request.match_info["user_id"]
    try:
        fields = await auth.read_fields(request, auth.MAX_FORM_BODY_BYTES)
        action = fields.get("action")
        if action == "role":
            await service.change_user(identity, request, user_id, role=fields.get("role"))
        elif action in ("disable", "enable"):
            await service.change_user(identity, request, user_id, disabled=action == "disable")
        elif action == "password":
            await service.change_user(identity, request, user_id, password=auth._text(fields, "password", max_len=auth.MAX_PASSWORD_LENGTH))
        elif action == "delete":
            await service.delete_user(identity, request, user_id)
        else:
            raise auth.AuthError("unknown action; use role, disable, enable, password or delete")
    except auth.AuthError as err:
        return await _users(request, status=err.status, error=str(err))
    if user_id == identity.user.user_id:
        # Changing oneself ends one's own sessions too.
        raise web.HTTPSeeOther("/login")
    raise web.HTTPSeeOther("/users?done=" + ("user-deleted" if fields.get("action") == "delete" else "user-changed"))
