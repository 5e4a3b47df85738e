"""Dashboard users against the real hub app: each rule is attacked the way someone on the LAN would try to break it."""

from __future__ import annotations

import asyncio
import hmac
import io
import re
import sqlite3
import sys
from typing import Any

import aiohttp
import pytest
from support_auth import TEST_PASSWORD, seed_user
from support_hub import hub_config

from roost.core import cli
from roost.core.hub import auth
from roost.core.hub.app import HUB_KEY
from roost.core.store.users import ROLE_ADMIN

SESSION = auth.SESSION_COOKIE


class Browser:
    """One user agent with its own cookie jar against the test server, like a separate browser."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    def url(self, path: str) -> str:
        return str(self.client.make_url(path))

    async def request(self, method: str, path: str, *, csrf: bool = True, **kwargs: Any) -> aiohttp.ClientResponse:
        headers = dict(kwargs.pop("headers", {}))
        if csrf and self.csrf and method not in ("GET", "HEAD"):
            headers.setdefault("X-CSRF-Token", self.csrf)
        kwargs.setdefault("allow_redirects", False)
        resp = await self.session.request(method, self.url(path), headers=headers, **kwargs)
        await resp.read()
        return resp

    async def login(self, name: str, password: str = TEST_PASSWORD, **kwargs: Any) -> aiohttp.ClientResponse:
        resp = await self.request("POST", "/api/v1/session", json={"username": name, "password": password}, csrf=False, **kwargs)
        if resp.status == 200:
            self.csrf = (await resp.json())["csrf_token"]
        return resp

    def cookie(self, name: str = SESSION) -> str | None:
        for morsel in self.session.cookie_jar:
            if morsel.key == name:
                return morsel.value
        return None

    def set_cookie(self, name: str, value: str) -> None:
        self.session.cookie_jar.update_cookies({name: value}, self.client.make_url("/"))

    async def close(self) -> None:
        await self.session.close()


@pytest.fixture
async def hub(make_hub, tmp_path):
    """A hub with alice (admin), oscar (operator) and vic (viewer); ``hub.browser()`` opens a fresh browser."""
    config = hub_config(tmp_path)
    for name, role in (("alice", "admin"), ("oscar", "operator"), ("vic", "viewer")):
        await seed_user(config, name, role, token=False)
    client = await make_hub(as_role=None)
    browsers: list[Browser] = []

    def browser() -> Browser:
        browsers.append(Browser(client))
        return browsers[-1]

    client.browser = browser
    yield client
    for b in browsers:
        await b.close()


async def user_id(client: Any, name: str) -> str:
    user = await client.app[HUB_KEY].store.get_user_by_name(name)
    return user.user_id


async def token_for(client: Any, name: str, scope: str) -> str:
    store = client.app[HUB_KEY].store
    text, _ = await auth.create_api_token(store, await store.get_user_by_name(name), scope=scope, name="t")
    return text


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ----------------------------------------------------------------- passwords


def test_password_hash_is_scrypt_with_its_parameters_and_verifies_in_constant_time(monkeypatch):
    encoded = auth.hash_password("a long enough passphrase")
    scheme, log_n, r, p, salt, key = encoded.split("$")
    assert (scheme, log_n, r, p) == ("scrypt", "15", "8", "1")
    assert len(auth._unb64(salt)) == 16 and len(auth._unb64(key)) == 32
    assert encoded != auth.hash_password("a long enough passphrase")  # salted
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    assert auth.verify_password("a long enough passphrase", encoded)
    assert not auth.verify_password("a long enough passphrasE", encoded)
    assert len(calls) == 2
    # The same password typed as another Unicode form still matches.
    assert auth.verify_password("ﬁne passphrase!", auth.hash_password("fine passphrase!"))
    for broken in ("", "scrypt$15$8$1$abc", "bcrypt$15$8$1$AAAA$AAAA", "scrypt$40$8$1$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 43):
        assert not auth.verify_password("whatever", broken)


def test_short_passwords_are_refused_with_a_clear_message():
    with pytest.raises(auth.PasswordPolicyError, match="at least 10 characters"):
        auth.check_password_policy("short")
    with pytest.raises(auth.PasswordPolicyError, match="at most 1024"):
        auth.check_password_policy("x" * 1025)
    assert auth.check_password_policy("ten chars!") == "ten chars!"


async def test_unknown_user_costs_a_hash_like_a_wrong_password(hub, monkeypatch):
    hashed: list[str] = []
    real = auth.verify_password
    monkeypatch.setattr(auth, "verify_password", lambda pw, enc: hashed.append(enc) or real(pw, enc))
    b = hub.browser()
    assert (await b.login("nobody-here", "wrong password x")).status == 401
    assert (await b.login("alice", "wrong password x")).status == 401
    assert hashed[0] == auth.DUMMY_HASH and hashed[1].startswith("scrypt$15$8$1$")
    # Same answer either way: nothing tells which names exist.
    r1, r2 = await b.login("nobody-here", "wrong password x"), await b.login("alice", "wrong password x")
    assert (await r1.json()) == (await r2.json()) == {"error": "wrong user name or password"}


# ---------------------------------------------------------------- onboarding


async def test_first_start_sends_every_page_to_onboarding_and_only_health_answers(anon_client):
    resp = await anon_client.get("/", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/onboarding"
    resp = await anon_client.get("/login", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/onboarding"
    resp = await anon_client.get("/api/v1/nodes")
    assert resp.status == 401 and "log in" in (await resp.json())["error"]
    assert (await anon_client.get("/api/v1/health")).status == 200


async def onboarding_form(client: Any) -> str:
    page = await client.get("/onboarding")
    assert page.status == 200
    return re.search(r'name="csrf_token" value="([^"]+)"', await page.text()).group(1)


async def test_onboarding_creates_the_owner_once_and_logs_them_in(anon_client):
    token = await onboarding_form(anon_client)
    form = {"csrf_token": token, "username": "owner", "password": "a strong passphrase", "confirm": "a strong passphrase"}
    resp = await anon_client.post("/onboarding", data=form, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/"
    assert SESSION in resp.cookies
    me = await (await anon_client.get("/api/v1/session")).json()
    assert me["user"]["name"] == "owner" and me["role"] == ROLE_ADMIN
    # A second onboarding, even with a valid form, creates nobody.
    other = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    try:
        page = await other.get(anon_client.make_url("/onboarding"), allow_redirects=False)
        assert page.status == 303 and page.headers["Location"] == "/login"
        again = await other.post(anon_client.make_url("/onboarding"), data={**form, "username": "mallory"}, allow_redirects=False)
        assert again.status in (303, 403)
    finally:
        await other.close()
    users = await anon_client.app[HUB_KEY].store.list_users()
    assert [u.name for u in users] == ["owner"]


async def test_onboarding_is_race_safe(anon_client):
    service = anon_client.app[auth.AUTH_KEY]

    class Req(dict):
        app = anon_client.app
        headers: dict = {}
        transport = None
        remote = "127.0.0.1"
        secure = False

    results = await asyncio.gather(
        *(service.onboard(Req(), f"owner{i}", "a strong passphrase") for i in range(4)), return_exceptions=True
    )
    created = [r for r in results if not isinstance(r, Exception)]
    assert len(created) == 1
    assert all(isinstance(r, auth.AuthError) and r.status == 409 for r in results if isinstance(r, Exception))
    assert await anon_client.app[HUB_KEY].store.count_users() == 1


async def test_onboarding_and_login_forms_need_their_csrf_cookie(anon_client):
    form = {"username": "owner", "password": "a strong passphrase", "confirm": "a strong passphrase"}
    resp = await anon_client.post("/onboarding", data={**form, "csrf_token": "forged.0000"})
    assert resp.status == 403 and "reload the page" in await resp.text()
    token = await onboarding_form(anon_client)
    # Right token, but a cross-site page sent it.
    resp = await anon_client.post("/onboarding", data={**form, "csrf_token": token}, headers={"Origin": "http://evil.example"})
    assert resp.status == 403
    assert await anon_client.app[HUB_KEY].store.count_users() == 0


async def test_short_password_at_onboarding_shows_the_rule(anon_client):
    token = await onboarding_form(anon_client)
    resp = await anon_client.post("/onboarding", data={"csrf_token": token, "username": "owner", "password": "short", "confirm": "short"})
    assert resp.status == 400
    assert "at least 10 characters" in await resp.text()


# ------------------------------------------------------------ login, logout


async def test_form_login_sets_a_strict_httponly_cookie_and_wrong_password_shows_an_error(hub):
    page = await hub.get("/login?next=/integrations")
    assert page.status == 200
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', await page.text()).group(1)
    wrong = await hub.post("/login", data={"csrf_token": csrf, "username": "alice", "password": "not the password", "next": "/integrations"})
    assert wrong.status == 401
    assert "wrong user name or password" in await wrong.text()
    ok = await hub.post("/login", data={"csrf_token": csrf, "username": "ALICE", "password": TEST_PASSWORD, "next": "/integrations"}, allow_redirects=False)
    assert ok.status == 303 and ok.headers["Location"] == "/integrations"
    cookie = [h for h in ok.headers.getall("Set-Cookie") if h.startswith(f"{SESSION}=")][0]
    for flag in ("HttpOnly", "SameSite=Strict", "Path=/"):
        assert flag in cookie, cookie
    assert "Secure" not in cookie  # plain HTTP here; over HTTPS it carries Secure
    assert (await hub.get("/integrations")).status == 200


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example", "/\\evil.example", "javascript:alert(1)", "/login"])
async def test_login_never_redirects_off_the_hub(hub, target):
    page = await hub.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', await page.text()).group(1)
    resp = await hub.post("/login", data={"csrf_token": csrf, "username": "alice", "password": TEST_PASSWORD, "next": target}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/"


async def test_login_rotates_the_session_id_no_fixation(hub):
    b = hub.browser()
    # An attacker plants a cookie value they know...
    b.set_cookie(SESSION, "planted-by-attacker-0000000000000000000000000")
    assert (await b.login("vic")).status == 200
    first = b.cookie()
    assert first and first != "planted-by-attacker-0000000000000000000000000"
    # ...or logs in themselves and hands the victim their cookie: a new login gets a new id and the old one dies.
    attacker = hub.browser()
    attacker.set_cookie(SESSION, first)
    assert (await b.login("alice")).status == 200
    second = b.cookie()
    assert second != first
    assert (await attacker.request("GET", "/api/v1/session")).status == 401
    me = await (await b.request("GET", "/api/v1/session")).json()
    assert me["user"]["name"] == "alice"
    stored = await hub.app[HUB_KEY].store.get_session(auth._sha256(second))
    assert stored is not None and stored[0].session_id != second  # only the hash is stored


async def test_logout_ends_the_session_at_once(hub):
    b = hub.browser()
    await b.login("vic")
    cookie = b.cookie()
    resp = await b.request("DELETE", "/api/v1/session")
    assert resp.status == 200
    replay = hub.browser()
    replay.set_cookie(SESSION, cookie)
    assert (await replay.request("GET", "/api/v1/nodes")).status == 401
    html = await replay.request("GET", "/")
    assert html.status == 303 and html.headers["Location"] == "/login"


async def test_html_logout_form_needs_csrf_and_redirects_to_login(hub):
    b = hub.browser()
    await b.login("vic")
    assert (await b.request("POST", "/logout", csrf=False)).status == 403
    resp = await b.request("POST", "/logout", csrf=False, data={"csrf_token": b.csrf})
    assert resp.status == 303 and resp.headers["Location"] == "/login"
    assert (await b.request("GET", "/api/v1/session")).status == 401


async def test_open_event_stream_is_cut_when_the_session_ends(hub):
    b = hub.browser()
    await b.login("vic")
    stream = await b.session.get(b.url("/api/v1/events"))
    assert stream.status == 200
    assert (await stream.content.readline()).startswith(b"retry:")
    other = hub.browser()
    await other.login("alice")
    await other.request("PATCH", f"/api/v1/users/{await user_id(hub, 'vic')}", json={"role": "operator"})

    async def drain() -> None:
        try:
            while await stream.content.readline():
                pass
        except aiohttp.ClientPayloadError:
            pass  # cut mid-stream: the connection is gone, which is the point

    await asyncio.wait_for(drain(), 5)  # ends instead of waiting for the next event
    stream.close()


# ---------------------------------------------------------------- body abuse


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"{" + b'"username": "alice", "password": "' + b"x" * 9000 + b'"}', {"Content-Type": "application/json"}, 413),
        (b"{not json", {"Content-Type": "application/json"}, 400),
        (b"[1, 2]", {"Content-Type": "application/json"}, 400),
        (b'{"username": 5, "password": "x"}', {"Content-Type": "application/json"}, 400),
        (b'{"username": "alice"}', {"Content-Type": "application/json"}, 400),
        (b'{"username": "alice", "password": "x", "admin": true}', {"Content-Type": "application/json"}, 400),
        (b"\xff\xfe\x00", {"Content-Type": "application/json"}, 400),
        (b"username=alice&password=x", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
        (b"<xml/>", {"Content-Type": "text/xml"}, 415),
    ],
)
async def test_oversized_or_malformed_api_login_bodies_are_refused_cleanly(hub, body, headers, status):
    resp = await hub.post("/api/v1/session", data=body, headers=headers)
    assert resp.status == status, await resp.text()
    assert "error" in await resp.json()
    assert SESSION not in resp.cookies
    # None of these count as a failed login.
    assert hub.app[auth.AUTH_KEY].login_limiter.failures("127.0.0.1") == 0


async def test_oversized_or_malformed_form_login_bodies_are_refused_cleanly(hub):
    page = await hub.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', await page.text()).group(1)
    huge = await hub.post("/login", data={"csrf_token": csrf, "username": "alice", "password": "x" * 20_000})
    assert huge.status == 413
    twice = await hub.post("/login", data=f"csrf_token={csrf}&username=alice&username=vic&password=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert twice.status == 400
    binary = await hub.post("/login", data=b"username=\xff\xfe&password=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert binary.status == 400
    long_name = await hub.post("/login", data={"csrf_token": csrf, "username": "a" * 500, "password": "x"})
    assert long_name.status == 400
    assert hub.app[auth.AUTH_KEY].login_limiter.failures("127.0.0.1") == 0


# --------------------------------------------------------------- rate limits


async def test_brute_force_login_is_banned_after_five_failures(hub):
    b = hub.browser()
    for _ in range(4):
        assert (await b.login("alice", "guess guess guess")).status == 401
    fifth = await b.login("alice", "guess guess guess")
    assert fifth.status == 429
    assert int(fifth.headers["Retry-After"]) > 800
    assert "too many failed logins from 127.0.0.1" in (await fifth.json())["error"]
    # The right password does not get through the ban either, nor does another account.
    assert (await b.login("alice")).status == 429
    assert (await hub.browser().login("vic")).status == 429


async def test_login_ban_is_per_real_peer_behind_a_trusted_proxy(make_hub, tmp_path):
    config = hub_config(tmp_path, trusted_proxies=["127.0.0.1/32"])
    await seed_user(config, "alice", "admin", token=False)
    client = await make_hub(as_role=None, trusted_proxies=["127.0.0.1/32"])
    attacker = {"X-Forwarded-For": "192.168.1.66"}
    for _ in range(5):
        await client.post("/api/v1/session", json={"username": "alice", "password": "guess guess guess"}, headers=attacker)
    assert (await client.post("/api/v1/session", json={"username": "alice", "password": TEST_PASSWORD}, headers=attacker)).status == 429
    # Another LAN host behind the same proxy logs in fine; its success lifts nobody's ban.
    ok = await client.post("/api/v1/session", json={"username": "alice", "password": TEST_PASSWORD}, headers={"X-Forwarded-For": "192.168.1.20"})
    assert ok.status == 200
    assert (await client.post("/api/v1/session", json={"username": "alice", "password": TEST_PASSWORD}, headers=attacker)).status == 429
    # A client cannot pick its own key: entries left of the proxy's are the client's words and are skipped.
    spoof = {"X-Forwarded-For": "10.9.9.9, 192.168.1.66"}
    assert (await client.post("/api/v1/session", json={"username": "alice", "password": TEST_PASSWORD}, headers=spoof)).status == 429


async def test_spoofed_forwarded_for_is_ignored_without_trusted_proxies(hub):
    for i in range(5):
        resp = await hub.post("/api/v1/session", json={"username": "alice", "password": "guess guess guess"}, headers={"X-Forwarded-For": f"192.168.7.{i}"})
    assert resp.status == 429
    resp = await hub.post("/api/v1/session", json={"username": "alice", "password": TEST_PASSWORD}, headers={"X-Forwarded-For": "192.168.7.200"})
    assert resp.status == 429  # still 127.0.0.1, still banned


async def test_wrong_current_password_counts_towards_the_ban(hub):
    b = hub.browser()
    await b.login("vic")
    for _ in range(4):
        resp = await b.request("POST", "/api/v1/account/password", json={"current_password": "guess guess guess", "new_password": "new passphrase!"})
        assert resp.status == 403
    resp = await b.request("POST", "/api/v1/account/password", json={"current_password": "guess guess guess", "new_password": "new passphrase!"})
    assert resp.status == 429


# ---------------------------------------------------------------------- CSRF


def state_changing_routes(app: Any) -> list[tuple[str, str]]:
    service = app[auth.AUTH_KEY]
    routes = []
    for route in app.router.routes():
        if route.method not in ("POST", "PUT", "PATCH", "DELETE"):
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or re.sub(r"\{[^}]+\}", "x", info.get("formatter", ""))
        # Public paths and prefixes (a ping URL, an automation's webhook URL) authenticate on their own, without a session.
        public = path in service.public_paths or any(path.startswith(prefix) for prefix in service.public_prefixes)
        if not path or public or path.startswith("/static/") or (path == auth.SESSION_API and route.method == "POST"):
            continue
        routes.append((route.method, path))
    return sorted(set(routes))


async def test_every_state_changing_route_refuses_a_session_request_without_csrf(hub):
    routes = state_changing_routes(hub.app)
    assert ("POST", "/api/v1/users") in routes and ("DELETE", "/api/v1/session") in routes and ("POST", "/logout") in routes
    b = hub.browser()
    await b.login("alice")
    for method, path in routes:
        no_token = await b.request(method, path, csrf=False, json={})
        assert no_token.status == 403, (method, path, no_token.status)
        wrong = await b.request(method, path, csrf=False, json={}, headers={"X-CSRF-Token": "x" * 43})
        assert wrong.status == 403, (method, path)
        form = await b.request(method, path, csrf=False, data={"csrf_token": "nope"})
        assert form.status == 403, (method, path)
    # Still logged in: nothing above did anything.
    assert (await b.request("GET", "/api/v1/session")).status == 200
    assert len(await hub.app[HUB_KEY].store.list_users()) == 3


async def test_csrf_token_from_another_site_origin_is_refused(hub):
    b = hub.browser()
    await b.login("alice")
    body = {"name": "mallory", "password": "a strong passphrase", "role": "admin"}
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}):
        resp = await b.request("POST", "/api/v1/users", json=body, headers=headers)
        assert resp.status == 403, headers
        assert "cross-site" in (await resp.json())["error"]
    ok = await b.request("POST", "/api/v1/users", json=body, headers={"Origin": b.url("/").rstrip("/"), "Sec-Fetch-Site": "same-origin"})
    assert ok.status == 201, await ok.text()


async def test_csrf_form_field_works_for_plain_html_forms(hub):
    b = hub.browser()
    await b.login("alice")
    resp = await b.request("POST", "/users", csrf=False, data={"csrf_token": b.csrf, "name": "newbie", "password": "a strong passphrase", "role": "viewer"})
    assert resp.status == 303 and resp.headers["Location"] == "/users?done=user-added"


async def test_bearer_requests_need_no_csrf_token(hub):
    token = await token_for(hub, "alice", "admin")
    resp = await hub.post("/api/v1/users", json={"name": "bot-made", "password": "a strong passphrase"}, headers=bearer(token))
    assert resp.status == 201


# ------------------------------------------------------------ roles and IDOR


async def test_nothing_but_public_paths_answers_before_login(hub):
    service = hub.app[auth.AUTH_KEY]
    for route in hub.app.router.routes():
        if route.method not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            continue
        info = route.resource.get_info()
        path = info.get("path") or re.sub(r"\{[^}]+\}", "x", info.get("formatter", ""))
        public = path in service.public_paths or any(path.startswith(p) for p in service.public_prefixes)
        if not path or public or path.startswith("/static") or (path == auth.SESSION_API and route.method == "POST"):
            continue
        resp = await hub.request(route.method, path, allow_redirects=False, json={})
        if path.startswith("/api/"):
            assert resp.status == 401, (route.method, path, resp.status)
            assert "error" in await resp.json()
        else:
            assert resp.status == 303 and resp.headers["Location"].startswith("/login"), (route.method, path, resp.status)


async def test_a_viewer_cannot_act_as_admin(hub):
    b = hub.browser()
    await b.login("vic")
    alice = await user_id(hub, "alice")
    vic = await user_id(hub, "vic")
    assert (await b.request("GET", "/api/v1/nodes")).status == 200  # viewers read everything shown
    attempts = [
        ("GET", "/api/v1/users", None),
        ("POST", "/api/v1/users", {"name": "mallory", "password": "a strong passphrase", "role": "admin"}),
        ("PATCH", f"/api/v1/users/{vic}", {"role": "admin"}),  # promote oneself
        ("PATCH", f"/api/v1/users/{alice}", {"password": "taken over now!"}),
        ("DELETE", f"/api/v1/users/{alice}", None),
        ("POST", "/api/v1/tokens", {"scope": "admin"}),
        ("POST", "/api/v1/tokens", {"scope": "read", "user_id": alice}),  # a token acting as alice
    ]
    for method, path, body in attempts:
        resp = await b.request(method, path, json=body)
        assert resp.status == 403, (method, path, resp.status, await resp.text())
        assert "error" in await resp.json()
    # Someone else's token looks like no token at all.
    alices = await token_for(hub, "alice", "admin")
    token_id = auth.split_api_token(alices)[0]
    assert (await b.request("DELETE", f"/api/v1/tokens/{token_id}")).status == 404
    assert (await hub.get("/api/v1/session", headers=bearer(alices))).status == 200
    listed = await (await b.request("GET", "/api/v1/tokens?all=1")).json()
    assert listed["tokens"] == []
    page = await b.request("GET", "/users")
    assert page.status == 403 and "Not allowed" in await page.text()
    assert (await hub.app[HUB_KEY].store.get_user(vic)).role == "viewer"


async def test_an_operator_cannot_mint_an_admin_token_even_for_an_admin_owner(hub):
    b = hub.browser()
    await b.login("oscar")
    assert (await b.request("POST", "/api/v1/tokens", json={"scope": "admin"})).status == 403
    ok = await b.request("POST", "/api/v1/tokens", json={"scope": "operate", "name": "ci"})
    assert ok.status == 201


async def test_the_last_admin_cannot_be_removed(hub):
    b = hub.browser()
    await b.login("alice")
    alice = await user_id(hub, "alice")
    for method, body in (("PATCH", {"role": "viewer"}), ("PATCH", {"disabled": True}), ("DELETE", None)):
        resp = await b.request(method, f"/api/v1/users/{alice}", json=body)
        assert resp.status == 409, await resp.text()
        assert "no enabled admin" in (await resp.json())["error"]


async def test_changing_a_user_ends_their_sessions_at_once(hub):
    admin, victim = hub.browser(), hub.browser()
    await admin.login("alice")
    vic = await user_id(hub, "vic")
    for change in ({"role": "operator"}, {"password": "a brand new one"}, {"disabled": True}):
        await victim.login("vic", TEST_PASSWORD if "password" not in str(change) else TEST_PASSWORD)
        assert (await victim.request("GET", "/api/v1/session")).status == 200
        assert (await admin.request("PATCH", f"/api/v1/users/{vic}", json=change)).status == 200
        assert (await victim.request("GET", "/api/v1/session")).status == 401, change
        if "password" in change:
            await admin.request("PATCH", f"/api/v1/users/{vic}", json={"password": TEST_PASSWORD})
    # Disabled: the right password no longer logs in.
    resp = await victim.login("vic")
    assert resp.status == 403 and "disabled" in (await resp.json())["error"]


async def test_own_password_change_keeps_this_session_and_ends_the_others(hub):
    here, there = hub.browser(), hub.browser()
    await here.login("vic")
    await there.login("vic")
    old_cookie = here.cookie()
    resp = await here.request("POST", "/api/v1/account/password", json={"current_password": TEST_PASSWORD, "new_password": "a brand new one"})
    assert resp.status == 200
    here.csrf = (await resp.json())["csrf_token"]
    assert here.cookie() != old_cookie
    assert (await here.request("GET", "/api/v1/session")).status == 200
    assert (await there.request("GET", "/api/v1/session")).status == 401
    assert (await hub.browser().login("vic", TEST_PASSWORD)).status == 401
    assert (await hub.browser().login("vic", "a brand new one")).status == 200


# ------------------------------------------------------------------ API tokens


async def test_api_token_shape_storage_and_constant_time_check(hub, monkeypatch):
    b = hub.browser()
    await b.login("alice")
    resp = await b.request("POST", "/api/v1/tokens", json={"name": "backup", "scope": "read", "expires": "30d"})
    assert resp.status == 201
    body = await resp.json()
    token = body["token"]
    assert re.fullmatch(r"rst_[0-9a-f]{12}_[0-9a-f]{64}", token)
    token_id, secret = auth.split_api_token(token)
    assert body["id"] == token_id and body["expires_at"] > body["created_at"] + 29 * 86400
    # Shown once: listing never includes it.
    listed = await (await b.request("GET", "/api/v1/tokens")).json()
    assert token not in str(listed) and secret not in str(listed)
    # Only its hash is at rest.
    raw = sqlite3.connect(hub.app[HUB_KEY].config.store_path).execute("SELECT * FROM api_tokens").fetchall()
    assert secret not in str(raw) and auth._sha256(secret) in str(raw)
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b_: calls.append((a, b_)) or real(a, b_))
    assert (await hub.get("/api/v1/nodes", headers=bearer(token))).status == 200
    assert any(auth._sha256(secret).encode() in pair for pair in calls)
    calls.clear()
    wrong_secret = f"rst_{token_id}_{'0' * 64}"
    assert (await hub.get("/api/v1/nodes", headers=bearer(wrong_secret))).status == 401
    assert calls, "the secret must be compared with hmac.compare_digest"


async def test_revoked_token_is_refused_at_once(hub):
    b = hub.browser()
    await b.login("vic")
    token = (await (await b.request("POST", "/api/v1/tokens", json={"scope": "read"})).json())["token"]
    assert (await hub.get("/api/v1/nodes", headers=bearer(token))).status == 200
    token_id = auth.split_api_token(token)[0]
    assert (await b.request("DELETE", f"/api/v1/tokens/{token_id}")).status == 200
    resp = await hub.get("/api/v1/nodes", headers=bearer(token))
    assert resp.status == 401 and "revoked" in (await resp.json())["error"]


async def test_tokens_never_exceed_their_users_role_and_read_tokens_change_nothing(hub):
    admin_token = await token_for(hub, "alice", "admin")
    alice = await user_id(hub, "alice")
    read_token = await token_for(hub, "alice", "read")
    resp = await hub.post("/api/v1/users", json={"name": "x-user", "password": "a strong passphrase"}, headers=bearer(read_token))
    assert resp.status == 403 and "read scope" in (await resp.json())["error"]
    assert (await hub.get("/api/v1/users", headers=bearer(read_token))).status == 403
    # A viewer's token cannot be made with more scope than the viewer has.
    with pytest.raises(auth.AuthError, match="cannot have more than read scope"):
        await token_for(hub, "vic", "admin")
    # Demote alice (with another admin around): her admin token acts as a viewer from the next request on.
    await hub.app[HUB_KEY].store.update_user(await user_id(hub, "oscar"), role="admin", now=0)
    assert (await hub.patch(f"/api/v1/users/{alice}", json={"role": "viewer"}, headers=bearer(admin_token))).status == 200
    assert (await hub.get("/api/v1/users", headers=bearer(admin_token))).status == 403
    assert (await hub.get("/api/v1/nodes", headers=bearer(admin_token))).status == 200


async def test_tokens_of_disabled_or_deleted_users_and_expired_tokens_are_refused(hub):
    store = hub.app[HUB_KEY].store
    vic_token = await token_for(hub, "vic", "read")
    oscar_token = await token_for(hub, "oscar", "operate")
    vic, oscar = await user_id(hub, "vic"), await user_id(hub, "oscar")
    await store.update_user(vic, disabled=True, now=0)
    assert (await hub.get("/api/v1/nodes", headers=bearer(vic_token))).status == 401
    await store.delete_user(oscar)
    assert (await hub.get("/api/v1/nodes", headers=bearer(oscar_token))).status == 401
    expiring, record = await auth.create_api_token(store, await store.get_user_by_name("alice"), scope="read", ttl=60, now=0)
    assert (await hub.get("/api/v1/nodes", headers=bearer(expiring))).status == 401
    for junk in ("rst_abc", "Bearer", "rst__", "rst_" + "0" * 12 + "_" + "0" * 64, "x" * 5000):
        assert (await hub.get("/api/v1/nodes", headers=bearer(junk))).status == 401
    assert (await hub.get("/api/v1/nodes", headers={"Authorization": "Basic YWxpY2U6eA=="})).status == 401


# ------------------------------------------------------------------- the CLI


def test_cli_adds_users_from_stdin_and_creates_tokens(tmp_path, monkeypatch, capsys):
    data = str(tmp_path / "hub")
    monkeypatch.setattr(sys, "stdin", io.StringIO("a strong passphrase\n"))
    assert cli.main(["users", "add", "owner", "--data-dir", data]) == 0
    assert "added owner (admin)" in capsys.readouterr().out  # the first user is an admin
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert cli.main(["users", "add", "viewer1", "--data-dir", data]) == cli.EXIT_CONFIG
    assert "at least 10 characters" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO("another passphrase\n"))
    assert cli.main(["users", "add", "viewer1", "--role", "viewer", "--data-dir", data]) == 0
    capsys.readouterr()
    assert cli.main(["users", "list", "--data-dir", data]) == 0
    listing = capsys.readouterr().out
    assert "owner\tadmin\tactive" in listing and "viewer1\tviewer\tactive" in listing
    assert cli.main(["api-token", "create", "--user", "viewer1", "--scope", "admin", "--data-dir", data]) == cli.EXIT_CONFIG
    assert "cannot have more than read scope" in capsys.readouterr().err
    assert cli.main(["api-token", "create", "--user", "owner", "--scope", "admin", "--expires", "30d", "--name", "ci", "--data-dir", data]) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert re.fullmatch(r"rst_[0-9a-f]{12}_[0-9a-f]{64}", token) and "shown only now" in out.err
    token_id = auth.split_api_token(token)[0]
    assert cli.main(["api-token", "list", "--data-dir", data]) == 0
    assert f"{token_id}\towner\tadmin\tactive\tci" in capsys.readouterr().out
    assert cli.main(["api-token", "revoke", token_id, "--data-dir", data]) == 0
    assert cli.main(["users", "delete", "owner", "--data-dir", data]) == cli.EXIT_FAILURE  # the last admin
    assert "no enabled admin" in capsys.readouterr().err



async def test_a_viewer_changes_nothing_but_their_own_account_on_any_route(hub):
    """Even a route that forgets its own role check (pairing, grants, join tokens...) refuses a viewer."""
    b = hub.browser()
    await b.login("vic")
    service = hub.app[auth.AUTH_KEY]
    checked = 0
    for method, path in state_changing_routes(hub.app):
        if any(path.startswith(p) for p in service.self_service_prefixes) or path in service.self_service_paths:
            continue
        resp = await b.request(method, path, json={})
        assert resp.status == 403, (method, path, resp.status)
        checked += 1
    assert checked >= 4
    read_token = await token_for(hub, "alice", "read")
    for method, path in state_changing_routes(hub.app):
        resp = await hub.request(method, path, json={}, headers=bearer(read_token))
        assert resp.status == 403, (method, path, resp.status)


@pytest.mark.parametrize("path", ["/static/../api/v1/nodes", "/static/%2e%2e/api/v1/nodes", "/api/v1/health/../nodes", "/login/../api/v1/users", "/api/v1/enroll/../nodes", "/API/v1/nodes"])
async def test_public_prefixes_cannot_be_walked_out_of(anon_client, path):
    from yarl import URL

    resp = await anon_client.get(URL(path, encoded=True), allow_redirects=False)
    assert resp.status in (303, 401, 403, 404), (path, resp.status)  # refused or redirected to the login, never served
