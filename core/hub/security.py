"""Web security the whole hub shares: the real peer address, LAN-only mode, rate limits and security headers.

Reuse from other hub code:

- ``real_peer(request, trusted_proxies)`` — the client's address as a string.
  ``peer_of(request)`` returns the same, computed once per request with the
  hub's configured proxies.
- ``is_private_address(text)`` — the test LAN-only mode applies.
- ``RateLimiter`` — a token bucket per key plus a temporary ban after
  repeated failures, bounded in memory (see its docstring).
- ``rate_key(peer)`` — the key to limit a peer by (IPv6 peers by their /64).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from roost.core import jsonparse

_LOGGER = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# What LAN-only mode lets in. Listed explicitly: ipaddress's is_private also
# counts documentation and benchmarking ranges that are no one's LAN.
PRIVATE_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(net)
    for net in (
        "127.0.0.0/8",  # loopback
        "10.0.0.0/8",  # RFC 1918
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",  # IPv4 link-local
        "100.64.0.0/10",  # carrier-grade NAT (RFC 6598): Tailscale and friends
        "::1/128",  # IPv6 loopback
        "fc00::/7",  # IPv6 unique local addresses
        "fe80::/10",  # IPv6 link-local
    )
)

PEER_KEY = web.RequestKey("roost_peer", str)  # the real peer address, once computed
LAN_ONLY_HINT = "set hub.lan_only = false to serve other addresses, or list your reverse proxy in hub.trusted_proxies"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)
STATIC_PREFIX = "/static/"
# What the Server header says: no Python or aiohttp version for a scanner to match against.
SERVER_HEADER = "Roost"


# ------------------------------------------------------------------ addresses


def parse_address(text: str) -> IPAddress | None:
    """An address from a socket or a header; IPv4-mapped IPv6 becomes IPv4. None if it is not an address."""
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443" in some X-Forwarded-For headers
        text = text[1 : text.index("]")]
    elif text.count(":") == 1 and "." in text:  # "192.0.2.1:5000"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id:
            address = ipaddress.IPv6Address(text.split("%", 1)[0])
    return address


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs (or single addresses) -> networks; raises ValueError naming the bad entry."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or network such as 192.168.1.0/24") from None
    return tuple(networks)


def _in(address: IPAddress | None, networks: Sequence[IPNetwork]) -> bool:
    return address is not None and any(address.version == net.version and address in net for net in networks)


def is_private_address(text: str) -> bool:
    """True for loopback, RFC 1918, link-local, CGNAT, IPv6 ULA and link-local (and IPv4-mapped forms)."""
    return _in(parse_address(text), PRIVATE_NETWORKS)


def direct_peer(request: web.Request) -> str:
    """The address of whoever holds the TCP connection (for a proxied request: the proxy)."""
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(peer, (tuple, list)) and peer:
        return str(peer[0])
    if isinstance(peer, str) and peer == "":
        return "unix"  # a Unix socket: only this host can reach it
    return request.remote or ""


def real_peer(request: web.Request, trusted_proxies: Sequence[IPNetwork]) -> str:
    """The client's address: the TCP peer, or what trusted proxies say in X-Forwarded-For.

    X-Forwarded-For is read only when the TCP peer is one of
    ``trusted_proxies``. Then the header is walked from the right (the entry
    the nearest proxy wrote) to the left, skipping further trusted proxies;
    the first other entry is the client. Entries left of it were written by
    the client itself and mean nothing. An entry that is not an address is
    returned as it is, so it fails LAN-only checks instead of passing them.
    """
    peer = direct_peer(request)
    address = parse_address(peer)
    if not trusted_proxies or not _in(address, trusted_proxies):
        return str(address) if address is not None else peer
    hops = [hop.strip() for value in request.headers.getall("X-Forwarded-For", []) for hop in value.split(",")]
    hops = [hop for hop in hops if hop]
    client = str(address)
    for hop in reversed(hops):
        hop_address = parse_address(hop)
        if hop_address is None:
            return hop[:100]
        client = str(hop_address)
        if not _in(hop_address, trusted_proxies):
            break
    return client


def forwarded_https(request: web.Request, trusted_proxies: Sequence[IPNetwork]) -> bool:
    """True if the client reached us over HTTPS, directly or through a trusted proxy."""
    if request.secure:
        return True
    if trusted_proxies and _in(parse_address(direct_peer(request)), trusted_proxies):
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[-1].strip().lower()
        return proto == "https"
    return False


def rate_key(peer: str) -> str:
    """What to count a peer's attempts under: the address, or the /64 for IPv6 (one host can own a whole /64)."""
    address = parse_address(peer)
    if isinstance(address, ipaddress.IPv6Address) and not address.is_loopback:
        return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
    return str(address) if address is not None else peer


# ---------------------------------------------------------------- rate limits


@dataclass
class _Entry:
    tokens: float
    updated: float
    failures: list[float]


class RateLimiter:
    """A token bucket per key, and a temporary ban after repeated failures.

    ``RateLimiter(rate=0.5, burst=10, max_failures=5, failure_window=300, ban_seconds=900)``

    - ``allow(key) -> float``: take one token; 0.0 if the call may go ahead,
      else the seconds to wait (the remaining ban, or until a token refills).
      With ``rate=0`` there is no bucket and only bans apply.
    - ``failure(key) -> float``: record a failure (a wrong password, a bad
      signature); when it is the ``max_failures``-th within
      ``failure_window`` seconds the key is banned for ``ban_seconds`` and
      the ban's length is returned, else 0.0.
    - ``banned(key) -> float``: seconds left of a ban, 0.0 if none. Takes no token.
    - ``success(key)``: forget the key's failures. Logins do not call it, so
      a user with one valid account cannot interleave successes to keep
      guessing another account's password.
    - ``unban(key)``: lift a ban (an admin's decision).
    - ``take_changes(now=...)`` / ``restore(rows, now=...)``: the bans and
      failures changed since the last call, as ``(key, failure times, ban
      end)`` in wall-clock seconds, and the way back; PersistentLimits
      (roost.core.hub.security_events) keeps them in the store. Buckets are
      not kept: they refill within seconds anyway.

    Keys are strings: use ``rate_key(peer)`` for client addresses. Memory is
    bounded: at most ``max_keys`` buckets and ``max_keys`` bans are kept; the
    least recently used are dropped first. Bans live apart from buckets, so
    flooding new keys cannot push an active ban out before ``max_keys``
    other keys have earned one. Not thread-safe; use it from the event loop.
    """

    def __init__(
        self,
        *,
        rate: float = 0.0,
        burst: int = 1,
        max_failures: int = 5,
        failure_window: float = 300.0,
        ban_seconds: float = 900.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate < 0 or burst < 1 or max_failures < 1 or max_keys < 1:
            raise ValueError("rate must be >= 0, burst, max_failures and max_keys >= 1")
        self.rate = rate
        self.burst = burst
        self.max_failures = max_failures
        self.failure_window = failure_window
        self.ban_seconds = ban_seconds
        self.max_keys = max_keys
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bans: OrderedDict[str, float] = OrderedDict()  # key -> ban end (clock time)
        self._changed: set[str] = set()  # keys whose failures or ban changed since take_changes()

    def __len__(self) -> int:
        return len(self._entries) + len(self._bans)

    def _entry(self, key: str, now: float) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(tokens=float(self.burst), updated=now, failures=[])
            while len(self._entries) > self.max_keys:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        return entry

    def banned(self, key: str) -> float:
        until = self._bans.get(key)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._bans[key]
            return 0.0
        return left

    def allow(self, key: str) -> float:
        left = self.banned(key)
        if left:
            return left
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        entry = self._entry(key, now)
        entry.tokens = min(float(self.burst), entry.tokens + (now - entry.updated) * self.rate)
        entry.updated = now
        if entry.tokens >= 1.0:
            entry.tokens -= 1.0
            return 0.0
        return (1.0 - entry.tokens) / self.rate

    def failure(self, key: str) -> float:
        now = self._clock()
        entry = self._entry(key, now)
        cutoff = now - self.failure_window
        entry.failures = [t for t in entry.failures if t > cutoff]
        entry.failures.append(now)
        self._changed.add(key)
        if len(entry.failures) < self.max_failures:
            return 0.0
        entry.failures.clear()
        self._bans[key] = now + self.ban_seconds
        self._bans.move_to_end(key)
        while len(self._bans) > self.max_keys:
            self._bans.popitem(last=False)
        return self.ban_seconds

    def failures(self, key: str) -> int:
        """Failures of ``key`` within the window (for tests and status pages)."""
        entry = self._entries.get(key)
        if entry is None:
            return 0
        cutoff = self._clock() - self.failure_window
        return sum(1 for t in entry.failures if t > cutoff)

    def success(self, key: str) -> None:
        entry = self._entries.get(key)
        if entry is not None and entry.failures:
            entry.failures.clear()
            self._changed.add(key)

    def unban(self, key: str) -> None:
        if self._bans.pop(key, None) is not None:
            self._changed.add(key)

    def take_changes(self, *, now: float | None = None) -> list[tuple[str, list[float], float | None]]:
        """What changed since the last call: ``(key, failure times, ban end or None)`` in wall-clock seconds."""
        wall = time.time() if now is None else now
        offset = wall - self._clock()
        cutoff = self._clock() - self.failure_window
        out = []
        for key in self._changed:
            entry = self._entries.get(key)
            failures = [t + offset for t in entry.failures if t > cutoff] if entry is not None else []
            until = self._bans.get(key)
            out.append((key, failures, until + offset if until is not None and until > self._clock() else None))
        self._changed.clear()
        return out

    def restore(self, rows: Iterable[tuple[str, list[float], float | None]], *, now: float | None = None) -> None:
        """Take back what ``take_changes`` gave (after a restart); what has run out since is dropped."""
        wall = time.time() if now is None else now
        clock = self._clock()
        offset = clock - wall
        for key, failures, until in rows:
            recent = [t + offset for t in failures if t + offset > clock - self.failure_window]
            if recent:
                self._entry(key, clock).failures = recent[-self.max_failures :]
            if until is not None and until > wall:
                self._bans[key] = until + offset
                while len(self._bans) > self.max_keys:
                    self._bans.popitem(last=False)


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def wait_words(seconds: float) -> str:
    seconds = max(1, math.ceil(seconds))
    if seconds < 90:
        return f"{seconds} s"
    return f"{math.ceil(seconds / 60)} min"


# ------------------------------------------------------------- the middleware


@dataclass(frozen=True)
class WebSecurity:
    """The settings the middlewares run with; lives on the app under SECURITY_KEY."""

    lan_only: bool = True
    trusted_proxies: tuple[IPNetwork, ...] = ()
    # roost.core.hub.security_events.SecurityEvents: counts repeated refusals instead of logging each.
    events: Any = None


SECURITY_KEY = web.AppKey("roost_web_security", WebSecurity)


def peer_of(request: web.Request) -> str:
    """The real peer of a request to the hub app, computed once per request."""
    peer = request.get(PEER_KEY)
    if peer is None:
        settings = request.app.get(SECURITY_KEY) or WebSecurity()
        peer = request[PEER_KEY] = real_peer(request, settings.trusted_proxies)
    return peer


def is_https(request: web.Request) -> bool:
    settings = request.app.get(SECURITY_KEY) or WebSecurity()
    return forwarded_https(request, settings.trusted_proxies)


def request_origins(request: web.Request, public_url: str = "") -> set[str]:
    """The origins this request's own pages have: how the client addressed us, and the configured public URL."""
    settings = request.app.get(SECURITY_KEY) or WebSecurity()
    scheme = "https" if forwarded_https(request, settings.trusted_proxies) else "http"
    hosts = {request.host}
    if settings.trusted_proxies and _in(parse_address(direct_peer(request)), settings.trusted_proxies):
        forwarded = request.headers.get("X-Forwarded-Host", "").split(",")[-1].strip()
        if forwarded:
            hosts.add(forwarded)
    origins = {f"{scheme}://{host}".lower() for host in hosts if host}
    if public_url:
        parts = urlsplit(public_url)
        origins.add(f"{parts.scheme}://{parts.netloc}".lower())
    return origins


def wants_json(request: web.Request) -> bool:
    return request.path.startswith("/api/")


@web.middleware
async def lan_only_middleware(request: web.Request, handler):
    settings = request.app[SECURITY_KEY]
    peer = peer_of(request)
    if settings.lan_only and peer != "unix" and not is_private_address(peer):
        args = (request.method, request.path, peer)
        message = "refused %s %s from %s: not a private address (LAN-only mode)"
        if settings.events is not None:
            settings.events.note("http.lan_only_refused", key=rate_key(peer), message=message, args=args, phrase="requests refused by LAN-only mode")
        else:
            _LOGGER.warning(message, *args)
        message = f"this Roost hub only serves private (LAN) addresses and {peer} is not one — {LAN_ONLY_HINT}"
        if wants_json(request):
            return web.json_response({"error": message}, status=403)
        return web.Response(text=message, status=403)
    return await handler(request)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers["Server"] = SERVER_HEADER
    headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "same-origin"
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if is_https(request):
        headers["Strict-Transport-Security"] = "max-age=31536000"
    if not request.path.startswith(STATIC_PREFIX):
        # Pages and API answers carry live data and, once logged in, private data.
        headers["Cache-Control"] = "no-store"


def setup(app: web.Application, *, lan_only: bool = True, trusted_proxies: Sequence[str] = (), events: Any = None) -> None:
    """Install the LAN-only middleware (first, so nothing else runs for a refused peer) and the security headers."""
    app[SECURITY_KEY] = WebSecurity(lan_only=lan_only, trusted_proxies=parse_networks(trusted_proxies), events=events)
    app.middlewares.append(lan_only_middleware)
    app.on_response_prepare.append(_security_headers)
    _hide_server_software()


def _hide_server_software() -> None:
    """Answers aiohttp makes before any app code runs (a malformed request's 400) get no version either.

    aiohttp fills in ``Server: Python/3.x aiohttp/3.x`` from a module constant
    when a response has no Server header; the response hook above sets one on
    everything the app answers, and this covers the rest of the process.
    """
    from aiohttp import web_response

    if getattr(web_response, "SERVER_SOFTWARE", SERVER_HEADER) != SERVER_HEADER:
        web_response.SERVER_SOFTWARE = SERVER_HEADER


# ------------------------------------------------------------ request bodies


async def read_json(request: web.Request, *, empty: Any = None) -> Any:
    """The request's JSON body, parsed through roost.core.jsonparse (its nesting limit); ``empty`` without a body.

    A body that is not JSON, or nests too deeply, is a 400 whose JSON
    ``error`` says what was wrong. The size limit is the app's
    ``client_max_size`` (413) unless the handler checks a smaller one first.
    """
    if not request.can_read_body:
        return empty
    try:
        return jsonparse.loads(await request.read())
    except jsonparse.JSONTooDeep as err:
        message = f"request body refused: {err}"
    except (ValueError, UnicodeDecodeError) as err:
        message = f"request body is not valid JSON: {err}"
    raise web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")
