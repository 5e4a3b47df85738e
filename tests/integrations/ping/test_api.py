"""The ping URLs and the checks API on a real hub app: what each role may do, what a ping records, what is refused."""

from __future__ import annotations

from roost.core.hub.app import HUB_KEY
from roost.integrations.ping import checks as c

API = "/api/v1/integrations/ping/checks"


def as_role(client, role):
    return {"Authorization": f"Bearer {client.roost_tokens[role]}"}


async def create(client, role="operator", **settings):
    body = {"name": "borg", "node_id": client.roost_node, "period": 3600, "grace": 600, **settings}
    async with client.post(API, json=body, headers=as_role(client, role)) as resp:
        return resp.status, await resp.json()


async def detail(client, check_id, role="operator"):
    async with client.get(f"{API}/{check_id}", headers=as_role(client, role)) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_a_job_pings_its_check_with_healthchecks_urls(ping_hub):
    status, check = await create(ping_hub)
    assert status == 200, check
    path = check["ping_path"]
    assert path.startswith("/ping/") and c.UUID_RE.match(path.removeprefix("/ping/"))
    async with ping_hub.get(path + "/start") as resp:  # no login: the URL is the secret
        assert (resp.status, await resp.text()) == (200, "OK\n")
    assert (await detail(ping_hub, check["id"]))["status"] == "started"
    async with ping_hub.post(path + "/1", data=b"borg: Repository locked\n") as resp:
        assert resp.status == 200
    seen = await detail(ping_hub, check["id"])
    assert seen["status"] == "failed" and seen["problem"] == "failed" and "exit status 1" in seen["summary"]
    assert seen["pings"][0]["kind"] == "fail" and seen["pings"][0]["body"] == "borg: Repository locked\n"
    assert seen["pings"][0]["exit_status"] == 1 and "duration" in seen["pings"][0]
    async with ping_hub.post(path, data=b"all good") as resp:
        assert resp.status == 200
    assert (await detail(ping_hub, check["id"]))["status"] == "up"
    async with ping_hub.get(path + "/log") as resp:
        assert resp.status == 200
    kinds = [p["kind"] for p in (await detail(ping_hub, check["id"]))["pings"]]
    assert kinds == ["log", "success", "fail", "start"]


async def test_checks_and_their_log_outlive_the_hub(make_ping_hub, aiohttp_client):
    client = await make_ping_hub()
    _, check = await create(client)
    async with client.get(check["ping_path"] + "/0") as resp:
        assert resp.status == 200
    app = client.app
    await client.close()
    from roost.core.hub.app import create_app

    again = await aiohttp_client(create_app(app[HUB_KEY].config))
    again.roost_tokens = client.roost_tokens
    seen = await detail(again, check["id"])
    assert seen["status"] == "up" and seen["ping_path"] == check["ping_path"] and seen["pings"][0]["exit_status"] == 0
    async with again.get(check["ping_path"]) as resp:
        assert resp.status == 200


async def test_viewers_see_where_checks_stand_but_not_their_urls_or_job_output(ping_hub):
    _, check = await create(ping_hub)
    async with ping_hub.post(check["ping_path"] + "/fail", data=b"secret path /srv/backup") as resp:
        assert resp.status == 200
    async with ping_hub.get(API, headers=as_role(ping_hub, "viewer")) as resp:
        listed = (await resp.json())["checks"]
    assert listed[0]["status"] == "failed" and "ping_path" not in listed[0] and "key" not in listed[0]
    seen = await detail(ping_hub, check["id"], role="viewer")
    assert "ping_path" not in seen and "body" not in seen["pings"][0] and seen["pings"][0]["body_bytes"] == 23
    status, answer = await create(ping_hub, role="viewer", name="other")
    assert status == 403 and "cannot change anything" in answer["error"]
    for method, url in (("PATCH", f"{API}/{check['id']}"), ("DELETE", f"{API}/{check['id']}"), ("POST", f"{API}/{check['id']}/rotate")):
        async with ping_hub.request(method, url, json={} if method != "DELETE" else None, headers=as_role(ping_hub, "viewer")) as resp:
            assert resp.status == 403, (method, url)
    async with ping_hub.get("/pings", headers={**as_role(ping_hub, "viewer"), "Accept": "text/html"}) as resp:
        page = await resp.text()
    assert resp.status == 200 and "borg" in page and check["ping_path"] not in page and "operators see the URL" in page
    async with ping_hub.get("/pings", headers={**as_role(ping_hub, "operator"), "Accept": "text/html"}) as resp:
        assert check["ping_path"] in await resp.text()


async def test_a_check_accepts_only_what_it_allows(ping_hub):
    _, check = await create(ping_hub, allow_start=False, methods=["POST"], max_body=16)
    path = check["ping_path"]
    async with ping_hub.post(path + "/start") as resp:
        assert resp.status == 400 and "does not accept /start" in await resp.text()
    async with ping_hub.get(path) as resp:
        assert resp.status == 405 and "only POST" in await resp.text()
    async with ping_hub.post(path, data=b"x" * 17) as resp:
        assert resp.status == 413 and "at most 16 bytes" in await resp.text()
    async with ping_hub.post(path, data=b"x" * 200_001) as resp:  # past what any check takes: refused before it is read
        assert resp.status == 413
    async with ping_hub.post(path + "/999") as resp:
        assert resp.status == 404 and "exit status 0-255" in await resp.text()
    assert (await detail(ping_hub, check["id"]))["pings"] == []  # nothing refused is recorded


async def test_guessing_ping_urls_gets_an_address_banned(ping_hub):
    _, check = await create(ping_hub)
    for i in range(10):
        async with ping_hub.get(f"/ping/00000000-0000-4000-8000-{i:012d}") as resp:
            assert resp.status == 404 and "no check has this ping URL" in await resp.text()
    async with ping_hub.get(check["ping_path"]) as resp:  # banned now, even for a good URL
        assert resp.status == 429 and int(resp.headers["Retry-After"]) > 60
    async with ping_hub.get("/ping/not-a-uuid") as resp:
        assert resp.status == 429


async def test_one_check_pinged_in_a_loop_is_slowed_down(ping_hub):
    _, check = await create(ping_hub)
    statuses = []
    for _ in range(40):
        async with ping_hub.get(check["ping_path"]) as resp:
            statuses.append(resp.status)
    assert statuses[:30] == [200] * 30 and 429 in statuses[30:]
    assert len((await detail(ping_hub, check["id"]))["pings"]) <= c.LOG_ENTRIES


async def test_a_rotated_url_stops_working_and_changes_are_audited(ping_hub):
    _, check = await create(ping_hub)
    async with ping_hub.post(f"{API}/{check['id']}/rotate", json={}, headers=as_role(ping_hub, "operator")) as resp:
        rotated = await resp.json()
    assert resp.status == 200 and rotated["ping_path"] != check["ping_path"]
    async with ping_hub.get(check["ping_path"]) as resp:
        assert resp.status == 404
    async with ping_hub.get(rotated["ping_path"]) as resp:
        assert resp.status == 200
    async with ping_hub.patch(f"{API}/{check['id']}", json={"kind": "cron", "schedule": "30 2 * * *"}, headers=as_role(ping_hub, "operator")) as resp:
        changed = await resp.json()
    assert resp.status == 200 and changed["kind"] == "cron" and changed["schedule"] == "30 2 * * *"
    async with ping_hub.patch(f"{API}/{check['id']}", json={"kind": "cron", "schedule": "every night"}, headers=as_role(ping_hub, "operator")) as resp:
        assert resp.status == 400 and "schedule" in (await resp.json())["error"]
    async with ping_hub.delete(f"{API}/{check['id']}", headers=as_role(ping_hub, "operator")) as resp:
        assert resp.status == 200
    async with ping_hub.get(rotated["ping_path"]) as resp:
        assert resp.status == 404
    async with ping_hub.get("/api/v1/audit?limit=50", headers=as_role(ping_hub, "admin")) as resp:
        actions = [e["action"] for e in (await resp.json())["entries"]]
    for action in ("ping.check.created", "ping.check.key_rotated", "ping.check.changed", "ping.check.deleted"):
        assert action in actions, action


async def test_bad_checks_are_refused_with_the_reason(ping_hub):
    status, answer = await create(ping_hub, node_id="nosuchnode")
    assert status == 400 and "no node with id" in answer["error"]
    status, answer = await create(ping_hub, kind="cron")
    assert status == 400 and "schedule" in answer["error"]
    assert (await create(ping_hub))[0] == 200
    status, answer = await create(ping_hub)
    assert status == 409 and "already exists" in answer["error"]
    status, answer = await create(ping_hub, name="x", grace=1)
    assert status == 400 and "grace" in answer["error"]
