"""Web security shared by the hub: real peer addresses, LAN-only mode, the rate limiter and the security headers."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from roost.core.hub import security
from roost.core.hub.security import RateLimiter, is_private_address, parse_networks, rate_key, real_peer

PROXIES = parse_networks(["10.0.0.0/24", "127.0.0.1"])


def request_from(peer: str, headers: dict[str, str] | None = None, *, app: web.Application | None = None, path: str = "/") -> web.Request:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (peer, 40000) if name == "peername" else default
    transport.is_closing.return_value = False
    return make_mocked_request("GET", path, headers=headers or {}, transport=transport, app=app)


# ------------------------------------------------------------------ addresses


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "172.31.255.254", "192.168.1.50", "169.254.10.1",
     "100.64.0.1", "100.127.255.254", "::1", "fd12:3456::1", "fc00::5", "fe80::1", "fe80::1%eth0",
     "::ffff:192.168.1.9", "::ffff:127.0.0.1"],
)
def test_private_addresses_are_lan(address):
    assert is_private_address(address)


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "192.0.2.1", "198.18.0.1", "203.0.113.9", "2001:db8::1",
     "2606:4700::1111", "::ffff:8.8.8.8", "0.0.0.0", "::", "", "unknown", "192.168.1.1.evil", "10.0.0.1/8"],
)
def test_public_reserved_and_garbage_addresses_are_not_lan(address):
    assert not is_private_address(address)


def test_real_peer_ignores_forwarded_for_from_an_untrusted_peer():
    req = request_from("203.0.113.7", {"X-Forwarded-For": "192.168.1.5"})
    assert real_peer(req, PROXIES) == "203.0.113.7"
    assert real_peer(req, ()) == "203.0.113.7"
    local = request_from("127.0.0.1", {"X-Forwarded-For": "203.0.113.7"})
    assert real_peer(local, ()) == "127.0.0.1"  # no trusted proxies configured: the header means nothing


def test_real_peer_takes_the_rightmost_untrusted_hop_behind_trusted_proxies():
    # The client wrote "192.168.1.5" itself; the first proxy saw 203.0.113.7; a second trusted proxy relayed.
    req = request_from("10.0.0.2", {"X-Forwarded-For": "192.168.1.5, 203.0.113.7, 10.0.0.9"})
    assert real_peer(req, PROXIES) == "203.0.113.7"
    assert real_peer(request_from("10.0.0.2", {"X-Forwarded-For": "192.168.1.44"}), PROXIES) == "192.168.1.44"
    # Only trusted proxies in the chain: the leftmost one is the client.
    assert real_peer(request_from("10.0.0.2", {"X-Forwarded-For": "10.0.0.7, 10.0.0.9"}), PROXIES) == "10.0.0.7"
    # No header at all: the proxy itself.
    assert real_peer(request_from("10.0.0.2"), PROXIES) == "10.0.0.2"
    # Forms some proxies write.
    assert real_peer(request_from("10.0.0.2", {"X-Forwarded-For": "[2001:db8::5]:4711"}), PROXIES) == "2001:db8::5"
    assert real_peer(request_from("10.0.0.2", {"X-Forwarded-For": "198.51.100.4:5000"}), PROXIES) == "198.51.100.4"
    assert real_peer(request_from("::ffff:10.0.0.2", {"X-Forwarded-For": "::ffff:192.168.3.3"}), PROXIES) == "192.168.3.3"


def test_a_garbage_hop_fails_closed():
    req = request_from("10.0.0.2", {"X-Forwarded-For": "192.168.1.5, not-an-ip"})
    peer = real_peer(req, PROXIES)
    assert peer == "not-an-ip" and not is_private_address(peer)


def test_rate_key_groups_an_ipv6_host_by_its_64():
    assert rate_key("2001:db8:1:2:aaaa::1") == rate_key("2001:db8:1:2:bbbb::99") == "2001:db8:1:2::/64"
    assert rate_key("2001:db8:1:3::1") != rate_key("2001:db8:1:2::1")
    assert rate_key("192.168.1.5") == "192.168.1.5"
    assert rate_key("::ffff:192.168.1.5") == "192.168.1.5"
    assert rate_key("::1") == "::1"


def test_trusted_proxies_config_is_validated():
    from roost.core.config import ConfigError, load_hub_config

    with pytest.raises(ConfigError, match="hub.trusted_proxies.0: must be an IP address or network"):
        load_hub_config(None, overrides={"hub": {"trusted_proxies": ["proxy.lan"]}})
    config = load_hub_config(None, overrides={"hub": {"trusted_proxies": ["10.0.0.0/24", "192.168.1.2"]}})
    assert config.lan_only is True and config.trusted_proxies == ["10.0.0.0/24", "192.168.1.2"]


# ------------------------------------------------------------------ LAN-only


def lan_app(**settings: Any) -> web.Application:
    app = web.Application()
    security.setup(app, **settings)
    return app


async def run_lan_only(app: web.Application, request: web.Request) -> web.StreamResponse:
    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="served")

    return await security.lan_only_middleware(request, ok)


@pytest.mark.parametrize("path", ["/", "/api/v1/nodes", "/api/v1/agent/ws", "/api/v1/enroll", "/api/v1/health", "/login"])
async def test_lan_only_refuses_a_public_peer_everywhere_and_names_the_setting(path):
    app = lan_app()
    resp = await run_lan_only(app, request_from("203.0.113.7", app=app, path=path))
    assert resp.status == 403
    text = resp.text
    assert "203.0.113.7" in text and "hub.lan_only = false" in text and "hub.trusted_proxies" in text
    if path.startswith("/api/"):
        assert resp.content_type == "application/json"


async def test_lan_only_lets_lan_peers_in_and_can_be_turned_off():
    app = lan_app()
    for peer in ("192.168.1.5", "::1", "fe80::1", "100.100.1.1", "::ffff:10.1.1.1"):
        assert (await run_lan_only(app, request_from(peer, app=app))).status == 200, peer
    open_app = lan_app(lan_only=False)
    assert (await run_lan_only(open_app, request_from("203.0.113.7", app=open_app))).status == 200


async def test_lan_only_cannot_be_fooled_by_forwarded_for():
    app = lan_app(trusted_proxies=["10.0.0.2"])
    # A public client claiming a LAN address, sent straight to the hub.
    direct = request_from("203.0.113.7", {"X-Forwarded-For": "192.168.1.5"}, app=app)
    assert (await run_lan_only(app, direct)).status == 403
    # Through the trusted proxy, the public client is still the public client.
    proxied = request_from("10.0.0.2", {"X-Forwarded-For": "192.168.1.5, 203.0.113.7"}, app=app)
    assert (await run_lan_only(app, proxied)).status == 403
    lan = request_from("10.0.0.2", {"X-Forwarded-For": "192.168.1.5"}, app=app)
    assert (await run_lan_only(app, lan)).status == 200


async def test_the_hub_refuses_a_public_client_through_its_proxy(make_hub):
    client = await make_hub(trusted_proxies=["127.0.0.1"])
    resp = await client.get("/api/v1/health", headers={"X-Forwarded-For": "8.8.8.8"})
    assert resp.status == 403 and "hub.lan_only = false" in (await resp.json())["error"]
    assert resp.headers["X-Frame-Options"] == "DENY"
    resp = await client.get("/api/v1/agent/ws", headers={"X-Forwarded-For": "8.8.8.8"})
    assert resp.status == 403
    assert (await client.get("/api/v1/health", headers={"X-Forwarded-For": "192.168.1.7"})).status == 200
    assert (await client.get("/api/v1/health")).status == 200


# -------------------------------------------------------------- rate limiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_then_the_rate():
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.allow("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.allow("a")
    assert 0.49 < wait <= 0.5
    assert limiter.allow("b") == 0.0  # keys are independent
    clock.now += 0.5
    assert limiter.allow("a") == 0.0
    assert limiter.allow("a") > 0


def test_failures_within_the_window_ban_then_the_ban_ends():
    clock = Clock()
    limiter = RateLimiter(max_failures=3, failure_window=60, ban_seconds=300, clock=clock)
    assert limiter.failure("p") == 0.0
    clock.now += 61  # the first failure ages out of the window
    assert limiter.failure("p") == 0.0 and limiter.failure("p") == 0.0
    assert limiter.banned("p") == 0.0
    assert limiter.failure("p") == 300.0
    assert limiter.banned("p") == 300.0 and limiter.allow("p") == 300.0
    assert limiter.allow("q") == 0.0
    clock.now += 299
    assert 0 < limiter.banned("p") <= 1
    clock.now += 1.5
    assert limiter.banned("p") == 0.0 and limiter.allow("p") == 0.0
    assert limiter.failures("p") == 0  # a ban starts the count afresh
    limiter.failure("p")
    limiter.success("p")
    assert limiter.failures("p") == 0
    for _ in range(3):
        limiter.failure("p")
    limiter.unban("p")
    assert limiter.banned("p") == 0.0


def test_limiter_memory_is_bounded_and_a_key_flood_does_not_lift_bans():
    clock = Clock()
    limiter = RateLimiter(rate=1, burst=1, max_failures=1, ban_seconds=900, max_keys=100, clock=clock)
    limiter.failure("attacker")
    for i in range(10_000):
        limiter.allow(f"spoofed-{i}")
        clock.now += 0.001
    assert len(limiter._entries) <= 100
    assert limiter.banned("attacker") > 0
    for i in range(150):
        limiter.failure(f"banned-{i}")
    assert len(limiter._bans) <= 100 and len(limiter) <= 200
    # The oldest go first.
    assert limiter.banned("banned-149") > 0 and limiter.banned("banned-0") == 0


def test_limiter_rejects_nonsense_settings():
    with pytest.raises(ValueError):
        RateLimiter(rate=-1)
    with pytest.raises(ValueError):
        RateLimiter(max_keys=0)


# ------------------------------------------------------------------ headers

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def check_headers(resp: Any, *, cached: bool = False) -> None:
    assert resp.headers["Content-Security-Policy"].startswith(CSP), resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "same-origin"
    if not cached:
        assert resp.headers["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" not in resp.headers  # plain HTTP


async def test_every_kind_of_response_carries_the_security_headers(client, anon_client):
    check_headers(await client.get("/"))
    check_headers(await client.get("/api/v1/nodes"))
    check_headers(await client.get("/api/v1/nodes/nope"))  # 404 JSON
    check_headers(await client.get("/no/such/page"))  # aiohttp's own 404
    check_headers(await anon_client.get("/api/v1/nodes"))  # 401
    check_headers(await anon_client.get("/", allow_redirects=False))  # 303
    check_headers(await anon_client.get("/api/v1/health"))
    static = await anon_client.get("/static/roost.css")
    assert static.status == 200
    check_headers(static, cached=True)
    assert static.headers.get("Cache-Control") != "no-store"


async def test_hsts_only_when_the_client_uses_https(make_hub):
    client = await make_hub(trusted_proxies=["127.0.0.1"])
    resp = await client.get("/api/v1/health", headers={"X-Forwarded-Proto": "https"})
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
    assert "Strict-Transport-Security" not in (await client.get("/api/v1/health")).headers
    plain = await make_hub()
    assert "Strict-Transport-Security" not in (await plain.get("/api/v1/health", headers={"X-Forwarded-Proto": "https"})).headers
