"""The MCP server for AI assistants, driven by the MCP SDK's own client: in-process against a real hub, and `roost mcp` over stdio."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest
from support_auth import seed_user
from support_hub import FakeAgent

from roost.core.assistant import READ_TOOLS, HubAPI, build_server, token_may_operate
from roost.core.hub.app import HUB_KEY

mcp = pytest.importorskip("mcp")
from mcp import Client, StdioServerParameters  # noqa: E402

DOCKER = {
    "containers": [
        {"id": "a" * 64, "name": "web", "state": "running", "health": "unhealthy", "image": "nginx:1.27", "restart_count": 0},
        {"id": "b" * 64, "name": "db", "state": "restarting", "image": "postgres:16", "restart_count": 7},
    ]
}


async def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        await asyncio.sleep(0.05)
    return value


def content(result) -> object:
    """A tool's answer as the SDK's structured content (lists come wrapped in "result")."""
    assert not result.is_error, result
    structured = result.structured_content
    if structured is None:
        return json.loads(result.content[0].text)
    return structured["result"] if set(structured) == {"result"} else structured


@pytest.fixture
async def homelab(client):
    agent = FakeAgent(client)
    await agent.enroll()
    assert (await agent.connect())["type"] == "welcome"
    await agent.send(
        agent.report(
            data={"linux_host": {"cpu": {"percent": 12.5}}, "docker": DOCKER},
            metrics={"linux_host.cpu_percent": 12.5, "linux_host.disk_used_percent[/srv]": 96.0},
        )
    )
    await wait_until(lambda: agent.hub._metrics.get(agent.node_id), 10, "the report")
    return agent


def api_for(client, token: str) -> HubAPI:
    return HubAPI(str(client.make_url("")).rstrip("/"), token)


async def test_read_only_tools_answer_what_is_wrong(client, homelab):
    viewer = await seed_user(client.app[HUB_KEY].config, "assistant", "viewer")
    api = api_for(client, viewer)
    try:
        assert await token_may_operate(api) is False
        async with Client(build_server(api, read_only=True)) as session:
            tools = (await session.list_tools()).tools
            assert sorted(t.name for t in tools) == sorted(READ_TOOLS)
            assert all(t.annotations.read_only_hint for t in tools)
            nodes = content(await session.call_tool("list_nodes", {}))
            assert nodes[0]["name"] == "box" and nodes[0]["status"] == "online" and nodes[0]["headline"]["cpu_percent"] == 12.5
            health = content(await session.call_tool("node_health", {"node": "box"}))
            assert health["healthy"] is False
            assert "container web is unhealthy" in health["problems"]
            assert "container db is restarting (restarted 7 times)" in health["problems"]
            assert "filesystem /srv is 96% full" in health["problems"]
            containers = content(await session.call_tool("list_containers", {}))
            assert {(c["node"], c["name"], c["state"]) for c in containers} == {("box", "web", "running"), ("box", "db", "restarting")}
            history = content(await session.call_tool("query_metrics", {"node": homelab.node_id, "series": ["linux_host.cpu_percent"], "range": "1h"}))
            assert "linux_host.cpu_percent" in json.dumps(history)
            missing = await session.call_tool("node_health", {"node": "nope"})
            assert missing.is_error and "the nodes are: box" in missing.content[0].text
            # A viewer's token cannot be talked into acting: there is no such tool, and the API would refuse it anyway.
            refused = await session.call_tool("run_action", {"node": "box", "action": "services.restart"})
            assert refused.is_error
    finally:
        await api.close()


async def test_list_firing_alerts_says_what_is_wrong_critical_first(client, homelab):
    hub = client.app[HUB_KEY]
    viewer = await seed_user(hub.config, "assistant", "viewer")
    api = api_for(client, viewer)
    try:
        async with Client(build_server(api, read_only=True)) as session:
            tool = next(t for t in (await session.list_tools()).tools if t.name == "list_firing_alerts")
            assert tool.annotations.read_only_hint
            assert content(await session.call_tool("list_firing_alerts", {})) == []
            await hub.alerts.raise_alert(source="test", node_id=homelab.node_id, name="Warm", summary="CPU at 80 °C", severity="warning")
            await hub.alerts.raise_alert(source="test", node_id=homelab.node_id, name="Disk gone", summary="sdb vanished", severity="critical", labels={"device": "sdb"})
            alerts = content(await session.call_tool("list_firing_alerts", {"node": "box"}))
            assert [(a["alert"], a["severity"], a["node"]) for a in alerts] == [("Disk gone", "critical", "box"), ("Warm", "warning", "box")]
            assert alerts[0]["summary"] == "sdb vanished" and alerts[0]["labels"]["device"] == "sdb" and alerts[0]["since"]
            await hub.alerts.resolve_alert("test", homelab.node_id, "Disk gone", {"device": "sdb"})
            assert [a["alert"] for a in content(await session.call_tool("list_firing_alerts", {}))] == ["Warm"]
    finally:
        await api.close()


async def test_run_action_goes_through_the_job_path_and_never_signs(client, homelab):
    hub = client.app[HUB_KEY]
    nid = homelab.node_id
    hub.jobs.attach(
        nid,
        hub.connections[nid].send_str,
        [
            {"name": "linux_host.ping", "capability": "host.metrics.read", "timeout": 10},
            {"name": "files.wipe", "capability": "host.metrics.read", "timeout": 10, "destructive": True, "target": "path"},
        ],
    )
    assert (await client.put(f"/api/v1/nodes/{nid}/grants", json={"grants": ["host.metrics.read"]})).status == 200
    operator = await seed_user(hub.config, "opbot", "operator")
    api = api_for(client, operator)

    async def agent_answers() -> None:
        while True:
            message = await homelab.ws.receive_json(timeout=30)
            if message["type"] == "job":
                await homelab.send({"v": 1, "type": "job_result", "job_id": message["job_id"], "attempt": message["attempt"], "status": "succeeded", "result": {"pong": True}, "output": "pong\n"})
                return

    try:
        assert await token_may_operate(api) is True
        async with Client(build_server(api, read_only=False)) as session:
            names = {t.name for t in (await session.list_tools()).tools}
            assert "run_action" in names
            answering = asyncio.create_task(agent_answers())
            ran = content(await session.call_tool("run_action", {"node": "box", "action": "linux_host.ping", "params": {}}))
            await answering
            assert ran["state"] == "succeeded" and ran["result"] == {"pong": True} and ran["output"] == "pong\n"
            jobs = (await (await client.get("/api/v1/jobs")).json())["jobs"]
            # Audited as the operator's token, which names its user in the token list.
            assert [(j["action"], j["created_by"]) for j in jobs] == [("linux_host.ping", f"token:{operator.split('_')[1]}")]
            signed = content(await session.call_tool("run_action", {"node": "box", "action": "files.wipe", "params": {"path": "/srv"}}))
            assert signed["executed"] is False and "roost sign" in signed["sign_command"]
            assert len((await (await client.get("/api/v1/jobs")).json())["jobs"]) == 1  # nothing destructive was queued
        async with Client(build_server(api, read_only=True)) as session:
            assert "run_action" not in {t.name for t in (await session.list_tools()).tools}
    finally:
        await api.close()


async def test_roost_mcp_over_stdio(client, homelab, tmp_path):
    token = await seed_user(client.app[HUB_KEY].config, "desktop", "viewer")
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "roost.core.cli", "mcp", "--hub", str(client.make_url("")).rstrip("/"), "--token-file", str(token_file), "--tools", "list_nodes,node_health"],
        env={**os.environ},
    )
    async with Client(params, read_timeout_seconds=60) as session:
        assert sorted(t.name for t in (await session.list_tools()).tools) == ["list_nodes", "node_health"]
        nodes = content(await session.call_tool("list_nodes", {}))
        assert [n["name"] for n in nodes] == ["box"]


async def test_mcp_over_http_on_the_hub_for_the_callers_token(client, homelab):
    from mcp.client.streamable_http import streamable_http_client
    import httpx2 as httpx

    hub = client.app[HUB_KEY]
    viewer = await seed_user(hub.config, "remote-assistant", "viewer")
    url = str(client.make_url("/mcp"))
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {viewer}"}, timeout=30) as http:
        async with Client(streamable_http_client(url, http_client=http)) as session:
            tools = {t.name for t in (await session.list_tools()).tools}
            assert tools == set(READ_TOOLS)  # a read token: no run_action
            nodes = content(await session.call_tool("list_nodes", {}))
            assert [n["name"] for n in nodes] == ["box"]
    # No token, a session cookie's absence, a foreign Host or Origin: refused before anything runs.
    async with httpx.AsyncClient(timeout=10) as http:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        assert (await http.post(url, json=body)).status_code == 401
        headers = {"Authorization": f"Bearer {viewer}"}
        assert (await http.post(url, json=body, headers={**headers, "Host": "evil.example:80"})).status_code == 421
        assert (await http.post(url, json=body, headers={**headers, "Origin": "https://evil.example"})).status_code == 403


def _repo(name: str, **extra) -> dict:
    now = time.time()
    return {
        "name": name, "kind": "restic", "location": "/srv/backup/" + name, "paths": ["/home"], "excludes": [], "snapshot_count": 1,
        "latest_at": now - 3600, "latest_size_bytes": 1024, "busy": False,
        "snapshots": [{"id": "a" * 64, "short_id": "aaaaaaaa", "time": now - 3600, "host": "box", "paths": ["/home"], "tags": [], "size_bytes": 1024, "verification": "ok"}],
        "backup": {"ok": True, "at": now - 3700, "snapshot_id": "a" * 64}, "last_success": {"ok": True, "at": now - 3700},
        "verify": {"ok": True, "at": now - 1800}, "last_verified": {"ok": True, "at": now - 1800},
        "restore_test": {"ok": True, "at": now - 1200, "files_checked": 20, "bytes_checked": 1, "mismatches": []}, "last_restore_test_ok": {"ok": True, "at": now - 1200},
        **extra,
    }


BACKUP_STATE = {
    "repositories": [
        _repo("home"),
        _repo("photos", restore_test={"ok": False, "at": time.time() - 600, "error": "1 of 20 files did not restore intact", "files_checked": 19, "bytes_checked": 1, "mismatches": [{"path": "/x"}]}),
    ],
    "scratch_leftovers": 0,
}


async def test_storage_and_backup_verdicts_come_worst_first(client):
    """What the storage and backup integrations judge, for an assistant: every disk, pool and target with its reasons."""
    from roost.integrations.storage import mdraid

    fixtures = Path(__file__).resolve().parents[2] / "integrations" / "storage" / "fixtures"
    arrays = mdraid.parse_mdstat((fixtures / "mdstat_degraded.txt").read_text())
    agent = FakeAgent(client)
    await agent.enroll()
    assert (await agent.connect())["type"] == "welcome"
    targets = [{"id": "usb-backup", "state": "attached", "status": "missing", "durable_id": "LABEL=b", "type": "usb"}]
    await agent.send(
        agent.report(
            integrations=[{"domain": d, "state": "loaded", "reason": ""} for d in ("linux_host", "storage", "backup")],
            data={"storage": {"smart": {"available": True, "devices": []}, "targets": targets, "mdraid": arrays}, "backup": BACKUP_STATE},
        )
    )
    hub = client.app[HUB_KEY]
    await wait_until(lambda: (hub._nodes.get(agent.node_id) and any(i.get("domain") == "storage" for i in hub._nodes[agent.node_id].integrations)), 10, "the storage report")
    viewer = await seed_user(hub.config, "assistant", "viewer")
    api = api_for(client, viewer)
    try:
        async with Client(build_server(api, read_only=True)) as session:
            rows = content(await session.call_tool("storage_health", {"node": agent.node_id}))
            assert rows, "the storage rows"
            assert {r["name"] for r in rows if r["kind"].startswith("target")} == {"usb-backup"}
            target = next(r for r in rows if r["name"] == "usb-backup")
            assert target["verdict"] != "ok" and target["reasons"], target
            assert rows[0]["verdict"] in ("failing", "critical", "missing"), rows  # worst first
            missing = await session.call_tool("storage_health", {"node": "nope"})
            assert missing.is_error and "no single node" in missing.content[0].text
            backups = content(await session.call_tool("backup_status", {"node": agent.node_id}))
            assert [b["name"] for b in backups] == ["photos", "home"], backups  # the failed restore test first
            assert backups[0]["verdict"] != backups[1]["verdict"] and any("did not restore" in r for r in backups[0]["reasons"]), backups
    finally:
        await api.close()
