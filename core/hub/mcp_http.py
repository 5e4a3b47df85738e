"""MCP over streamable HTTP at ``/mcp`` on the hub: the same tools as ``roost mcp``, for the caller's API token.

An assistant that can reach the hub sends ``Authorization: Bearer rst_...``
with every request; the tools then call the hub's own REST API with that
token, so they can do exactly what the token may and nothing more (read-only
tools for a read token; ``run_action`` for an operator's operate-scoped
token; destructive actions only as an envelope to sign). Requests whose Host
is not one of the hub's own names, or whose Origin is another site's, get
421 / 403 before anything runs (DNS rebinding). Needs the ``mcp`` extra;
without it ``/mcp`` answers 503 saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from .state import HUB_KEY
from .auth import IDENTITY_KEY, VIA_TOKEN, add_public_path

_LOGGER = logging.getLogger(__name__)

MCP_PATH = "/mcp"
MAX_BODY = 1024 * 1024
# One MCP server per API token in use, the least recently used dropped past this many.
MAX_SERVERS = 64


def _hub_names(app: web.Application) -> set[str]:
    config = app[HUB_KEY].config
    names = {"localhost", "127.0.0.1", "::1", socket.gethostname().lower(), socket.getfqdn().lower()}
    if config.bind not in ("0.0.0.0", "::", ""):
        names.add(config.bind.lower())
    if config.public_url:
        host = urlsplit(config.public_url).hostname
        if host:
            names.add(host.lower())
    return names


def _host_of(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class McpEndpoint:
    """Keeps an MCP server (and its session manager) per token; lives on the app under MCP_HTTP_KEY."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.names = _hub_names(app)
        self._servers: OrderedDict[str, tuple[Any, Any, contextlib.AsyncExitStack]] = OrderedDict()
        self._lock = asyncio.Lock()

    async def _server_for(self, token: str, base_url: str) -> Any:
        from roost.core.assistant import HubAPI, build_server, token_may_operate

        key = hashlib.sha256(f"{token}|{base_url}".encode()).hexdigest()
        async with self._lock:
            if key in self._servers:
                self._servers.move_to_end(key)
                return self._servers[key][1]
            api = HubAPI(base_url, token)
            api.ssl = False  # the hub's own socket, just accepted: there is nobody in between to check for
            server = build_server(api, read_only=not await token_may_operate(api))
            asgi = server.streamable_http_app(streamable_http_path=MCP_PATH, stateless_http=True, json_response=True)
            stack = contextlib.AsyncExitStack()
            await stack.enter_async_context(server.session_manager.run())
            stack.push_async_callback(api.close)
            self._servers[key] = (server, asgi, stack)
            while len(self._servers) > MAX_SERVERS:
                _, (_, _, old) = self._servers.popitem(last=False)
                await old.aclose()
            return asgi

    async def close(self) -> None:
        while self._servers:
            _, (_, _, stack) = self._servers.popitem()
            with contextlib.suppress(Exception):
                await stack.aclose()


MCP_HTTP_KEY = web.AppKey("roost_mcp_http", McpEndpoint)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": message}}, status=status)


async def mcp(request: web.Request) -> web.StreamResponse:
    endpoint = request.app.get(MCP_HTTP_KEY)
    if endpoint is None:
        return _error(503, "the MCP SDK is not installed on this hub; pip install 'roost[mcp]'")
    host = _host_of(request.headers.get("Host", ""))
    if host not in endpoint.names:
        return _error(421, f"this hub does not answer MCP for the host {host!r}; use one of its own names")
    origin = request.headers.get("Origin")
    if origin and (urlsplit(origin).hostname or "").lower() not in endpoint.names:
        return _error(403, "requests from other web sites are refused (Origin)")
    identity = request.get(IDENTITY_KEY)
    if identity is None or identity.via != VIA_TOKEN:
        response = _error(401, "send an API token as 'Authorization: Bearer rst_...' (roost api-token create --scope read)")
        response.headers["WWW-Authenticate"] = 'Bearer realm="roost-mcp"'
        return response
    body = await request.content.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        return _error(413, f"an MCP request is at most {MAX_BODY} bytes")
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not sockname:
        return _error(503, "the connection went away")
    local = f"[{sockname[0]}]" if ":" in sockname[0] else sockname[0]
    base_url = f"{request.scheme}://{local}:{sockname[1]}"
    token = request.headers["Authorization"].split(" ", 1)[1].strip()
    asgi = await endpoint._server_for(token, base_url)
    return await _call_asgi(asgi, request, body)


async def _call_asgi(asgi: Any, request: web.Request, body: bytes) -> web.StreamResponse:
    """Run one request through the SDK's ASGI app and relay its answer (json_response mode: one body, no stream)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": request.scheme,
        "path": MCP_PATH,
        "raw_path": MCP_PATH.encode(),
        "root_path": "",
        "query_string": request.query_string.encode(),
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in request.headers.items()],
        "server": ("127.0.0.1", 0),
        "client": (request.remote or "", 0),
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # no more body: wait to be cancelled, as a disconnect would
        return {"type": "http.disconnect"}

    status = 500
    headers: list[tuple[str, str]] = []
    chunks: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", ())]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await asgi(scope, receive, send)
    response = web.Response(status=status, body=b"".join(chunks))
    for name, value in headers:
        if name.lower() not in ("content-length", "transfer-encoding", "connection"):
            response.headers[name] = value
    return response


async def _mcp_ctx(app: web.Application) -> AsyncIterator[None]:
    try:
        import mcp  # noqa: F401
    except ImportError:
        yield
        return
    endpoint = McpEndpoint(app)
    app[MCP_HTTP_KEY] = endpoint
    try:
        yield
    finally:
        await endpoint.close()


def setup(app: web.Application) -> None:
    """Serve MCP at /mcp (the handler checks the bearer token, Host and Origin itself)."""
    app.cleanup_ctx.append(_mcp_ctx)
    add_public_path(app, MCP_PATH)
    app.router.add_route("*", MCP_PATH, mcp)
