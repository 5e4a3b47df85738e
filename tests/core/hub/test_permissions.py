"""One permission table for pages and API: every route is in it, and each page answers every role the way its API counterparts do."""

from __future__ import annotations

import re
import time

import pytest
from support_auth import seed_user
from support_hub import hub_config

from roost.core.hub.app import HUB_KEY, create_app, create_join_token
from roost.core.hub.auth import AUTH_KEY, ROLE_RANK
from roost.core.hub.permissions import PERMISSIONS, ROUTES
from roost.core.identity import Identity
from roost.core.store.jobs import Job

ROLES = ("viewer", "operator", "admin")


@pytest.fixture
async def hub(aiohttp_client, tmp_path):
    config = hub_config(tmp_path, push=True)
    tokens = {role: await seed_user(config, f"{role}-user", role) for role in ROLES}
    client = await aiohttp_client(create_app(config))
    hub = client.app[HUB_KEY]
    node = await hub.add_node(public_key=Identity.generate().public_key, hostname="nas", name="nas", facts={}, grants=[])
    now = time.time()
    await hub.store.add_job(Job(job_id="jperm0000000001", node_id=node.node_id, action="demo.echo", params={}, state="succeeded", created_by="test", created_at=now, timeout=5, next_attempt_at=now))
    await create_join_token(hub.store, ttl=3600, uses=1, note="secret-note")
    user = await hub.store.get_user_by_name("viewer-user")
    values = {"node_id": node.node_id, "job_id": "jperm0000000001", "container": "web", "vmid": "100", "receiver": "no-such-receiver", "outbox_id": "1", "user_id": user.user_id, "host_id": "h1", "container_id": "web", "rule_id": "default-node-offline", "device": "wwn-0x5000c500a1b2c3d4", "automation_id": "no-such-automation", "run_id": "rnone", "approval_id": "apnone", "check_id": "c000000000000"}
    return client, tokens, values


def _public(app, method: str, path: str) -> bool:
    """Routes that authenticate on their own (login, agents, push): the auth module lists them, not the permission table."""
    auth = app[AUTH_KEY]
    pattern = re.compile(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)))
    return (
        any(pattern.fullmatch(p) for p in auth.public_paths)
        or any((path + "/").startswith(p) for p in auth.public_prefixes)
        or (method, path) == ("POST", "/api/v1/session")
    )


def test_the_table_is_consistent():
    for name, permission in PERMISSIONS.items():
        assert permission.role in ROLE_RANK and permission.what, name
        for route in permission.api:
            method, _, path = route.partition(" ")
            assert method in ("GET", "POST", "PUT", "PATCH", "DELETE") and path.startswith("/"), route


async def test_every_route_of_the_hub_is_in_the_table_and_every_entry_is_a_route(hub):
    client, _, _ = hub
    app = client.app
    registered = set()
    for route in app.router.routes():
        resource = route.resource
        if resource is None or route.method == "HEAD":
            continue
        key = f"{route.method} {resource.canonical}"
        registered.add(key)
        if not _public(app, route.method, resource.canonical):
            assert key in ROUTES, f"{key} is in no permission of roost.core.hub.permissions.PERMISSIONS: add it (with its page or API counterpart)"
    stale = set(ROUTES) - registered
    assert not stale, f"the permission table names routes the hub does not have: {sorted(stale)}"


# Path parts of integration routes that need no object of their own to answer (a 404 is not a 403).
INTEGRATION_VALUES = {"policy_id": "p0000000000", "repository": "home"}


def _fill(path: str, values: dict[str, str]) -> str:
    for key, value in {**INTEGRATION_VALUES, **values}.items():
        path = path.replace("{" + key + "}", value)
    assert "{" not in path, path
    return path


async def _status(client, path: str, token: str) -> int:
    async with client.get(path, headers={"Authorization": f"Bearer {token}", "Accept": "text/html" if not path.startswith("/api/") else "application/json"}) as resp:
        return resp.status


CASES = [
    (name, page, api)
    for name, permission in PERMISSIONS.items()
    for page in permission.pages
    for api in (a.partition(" ")[2] for a in permission.api if a.startswith("GET "))
]


@pytest.mark.parametrize("role", ROLES)
async def test_each_page_answers_each_role_like_its_api(hub, role):
    client, tokens, values = hub
    assert CASES and {page for _, page, _ in CASES} >= {"/pairing", "/join-tokens"}
    checked = {}
    for name, page, api in CASES:
        needed = PERMISSIONS[name].role
        expected_allowed = ROLE_RANK[role] >= ROLE_RANK[needed]
        if page not in checked:
            checked[page] = await _status(client, _fill(page, values), tokens[role])
        page_status = checked[page]
        api_status = await _status(client, _fill(api, values), tokens[role])
        assert (page_status != 403) == (api_status != 403) == expected_allowed, (role, page, page_status, api, api_status, name)
        assert page_status < 500 and api_status < 500, (page, page_status, api, api_status)


async def test_a_viewer_is_told_what_the_page_needs(hub):
    client, tokens, _ = hub
    async with client.get("/join-tokens", headers={"Authorization": f"Bearer {tokens['viewer']}"}) as resp:
        html = await resp.text()
        assert resp.status == 403 and "secret-note" not in html
        assert "seeing join tokens needs the admin role and viewer-user is viewer; ask an admin" in html
    async with client.get("/api/v1/join-tokens", headers={"Authorization": f"Bearer {tokens['operator']}"}) as resp:
        assert resp.status == 403 and "secret-note" not in await resp.text()
