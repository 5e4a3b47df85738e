"""Less fingerprinting before login: no Python or aiohttp version in any header, no exact version for anonymous clients."""

from __future__ import annotations

import asyncio

import pytest

from roost.core.const import WS_PATH, __version__


def _no_versions(headers) -> None:
    server = headers.get("Server", "")
    assert "Python" not in server and "aiohttp" not in server and __version__ not in server, server


@pytest.mark.parametrize(
    "method,path",
    [("GET", "/api/v1/health"), ("GET", "/login"), ("GET", "/"), ("GET", "/api/v1/nodes"), ("GET", "/nowhere"), ("DELETE", "/api/v1/health"), ("GET", "/static/css/roost.css")],
)
async def test_no_response_names_python_or_aiohttp(anon_client, method, path) -> None:
    resp = await anon_client.request(method, path, allow_redirects=False)
    _no_versions(resp.headers)


async def test_websocket_upgrades_and_malformed_requests_name_no_versions(anon_client) -> None:
    ws = await anon_client.ws_connect(WS_PATH)
    _no_versions(ws._response.headers)
    await ws.close()
    reader, writer = await asyncio.open_connection(anon_client.server.host, anon_client.server.port)
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.read(4096), 5)
    writer.close()
    assert b" 400 " in head.split(b"\r\n", 1)[0] and b"Python/" not in head and b"aiohttp/" not in head, head[:300]


async def test_health_and_the_login_page_state_the_version_only_after_login(anon_client, client) -> None:
    anonymous = await (await anon_client.get("/api/v1/health")).json()
    assert anonymous == {"status": "ok"}
    page = await (await anon_client.get("/login")).text()
    assert __version__ not in page and "Roost" in page
    logged_in = await (await client.get("/api/v1/health")).json()
    assert logged_in == {"status": "ok", "version": __version__}
