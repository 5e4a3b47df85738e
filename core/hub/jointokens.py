"""Join tokens over the API: create (shown once, with the one-line agent command), list, revoke."""

from __future__ import annotations

import time
from typing import Any

import voluptuous as vol
from aiohttp import web

from roost.core.capabilities import is_capability
from roost.core.config import duration
from roost.core.integration import humanize_invalid

from .state import HUB_KEY, create_join_token
from .auth import ROLE_ADMIN, actor_of, requires
from .security import read_json


def _grants(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > 200 or not all(is_capability(c) for c in value):
        raise vol.Invalid("must be a list of capability names such as host.metrics.read, or null for the read-only default")
    return sorted(set(value))


CREATE_SCHEMA = vol.Schema(
    {
        vol.Optional("expires", default="1h"): duration(60, 365 * 86400),
        vol.Optional("uses", default=1): vol.All(int, vol.Range(min=1, max=1000)),
        vol.Optional("note", default=""): vol.All(str, vol.Length(max=200)),
        vol.Optional("grants", default=None): _grants,
    }
)


def token_view(token: Any, now: float) -> dict[str, Any]:
    state = "revoked" if token.revoked else "expired" if token.expires_at <= now else "used up" if token.uses_left <= 0 else "active"
    return {
        "id": token.token_id,
        "created_at": token.created_at,
        "expires_at": token.expires_at,
        "uses_left": token.uses_left,
        "note": token.note,
        "state": state,
    }


def agent_command(hub_url: str, token: str) -> str:
    return f"roost agent --hub {hub_url} --join {token}"


@requires(ROLE_ADMIN)
async def list_tokens(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    now = time.time()
    tokens = [token_view(t, now) for t in await hub.store.list_join_tokens()]
    return web.json_response({"tokens": tokens})


@requires(ROLE_ADMIN)
async def create_token(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    try:
        body = CREATE_SCHEMA(await read_json(request, empty={}))
    except ValueError:
        return web.json_response({"error": "body must be JSON"}, status=400)
    except vol.Invalid as err:
        return web.json_response({"error": f"invalid request: {humanize_invalid(err)}"}, status=400)
    token, record = await create_join_token(
        hub.store,
        ttl=body["expires"],
        uses=body["uses"],
        note=body["note"],
        ca_fingerprint=hub.ca_fingerprint,
        hub_key=hub.identity.public_key,
        grants=body["grants"],
        actor=actor_of(request),
    )
    from .downloads import install_info

    hub_url = hub.config.url()
    answer = {"token": token, "command": agent_command(hub_url, token), **install_info(hub.config, hub.tls, token)}
    return web.json_response({**answer, **token_view(record, time.time())}, status=201)


@requires(ROLE_ADMIN)
async def revoke_token(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    token_id = request.match_info["token_id"]
    if not await hub.store.revoke_join_token(token_id):
        return web.json_response({"error": f"no join token with id {token_id!r}"}, status=404)
    await hub.audit("join_token.revoked", actor=actor_of(request), target=f"token:{token_id}")
    return web.json_response({"revoked": True})


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/join-tokens", list_tokens)
    app.router.add_post("/api/v1/join-tokens", create_token)
    app.router.add_delete("/api/v1/join-tokens/{token_id}", revoke_token)
