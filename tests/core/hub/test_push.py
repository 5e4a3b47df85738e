"""The script-only push endpoint: tokens, good, bad and malformed pushes, the size limit, and the real push script against a real dockerd."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from docker_engine import docker_containers, docker_engine  # noqa: F401 - fixtures
from support_auth import seed_user

from roost.core.hub.app import HUB_KEY
from roost.core.hub.push import MAX_PUSH_BYTES, PUSH_EPOCH
from roost.integrations.docker.const import MASK

PUSH = "/api/v1/push/docker"
TOKENS = "/api/v1/push-tokens"
SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "roost-docker-push.sh"
SECRET = "p4ssw0rd-from-a-script"


def report(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "collected_at": time.time(),
        "interval": 60,
        "data": {
            "docker": {
                "engine": {"kind": "docker", "version": "24.0.7"},
                "containers": [
                    {
                        "id": "a" * 64,
                        "name": "web",
                        "image": "nginx:1.25",
                        "state": "running",
                        "status": "Up 3 hours (healthy)",
                        "health": "healthy",
                        "restart_count": 0,
                        "ports": [{"host_ip": "0.0.0.0", "host_port": 8080, "container_port": 80, "protocol": "tcp"}],
                        "env": ["DB_PASSWORD=" + SECRET, {"key": "API_TOKEN", "value": SECRET}, "MODE=prod"],
                        "labels": {"com.docker.compose.project": "site", "secret.key": SECRET},
                        "command": ["nginx", "--password", SECRET],
                        "compose_project": "site",
                        "stats": {"cpu_percent": 12.5, "mem_used_bytes": 52428800},
                    },
                    {"name": "db", "state": "exited", "exit_code": 1},
                ],
            }
        },
    }
    body.update(over)
    return body


async def new_token(client, name: str = "nas") -> dict[str, Any]:
    resp = await client.post(TOKENS, json={"name": name, "note": "the NAS in the cupboard"})
    assert resp.status == 201, await resp.text()
    return await resp.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def push_hub(make_hub):
    return await make_hub(push=True)


# ------------------------------------------------------------------- tokens


async def test_admins_create_list_and_revoke_push_tokens(push_hub, make_hub):
    created = await new_token(push_hub)
    assert created["token"].startswith(f"rpt_{created['id']}_") and created["state"] == "active"
    assert created["push_url"].endswith(PUSH) and created["push_enabled"] is True
    hub = push_hub.app[HUB_KEY]
    node = hub.node(created["node_id"])
    assert node.name == "nas" and node.facts["source"] == "push"
    listed = (await (await push_hub.get(TOKENS)).json())["tokens"]
    assert [t["id"] for t in listed] == [created["id"]]
    assert created["token"].split("_")[2] not in json.dumps(listed)  # the secret is shown once, then never again
    stored = await hub.store.get_push_token(created["id"])
    assert created["token"].split("_")[2] not in json.dumps([stored[0].__dict__, stored[1]])  # only its hash is kept
    # A second token for the same push node (rotation); none for a node that runs an agent.
    again = await push_hub.post(TOKENS, json={"node_id": created["node_id"]})
    assert again.status == 201 and (await again.json())["node_id"] == created["node_id"]
    agent_node = await hub.add_node(public_key="A" * 43 + "=", hostname="box", name="box", facts={})
    refused = await push_hub.post(TOKENS, json={"node_id": agent_node.node_id})
    assert refused.status == 400 and "runs an agent" in (await refused.json())["error"]
    assert (await push_hub.post(TOKENS, json={})).status == 400
    revoked = await push_hub.delete(f"{TOKENS}/{created['id']}")
    assert revoked.status == 200 and (await hub.store.get_push_token(created["id"]))[0].revoked
    assert (await push_hub.delete(f"{TOKENS}/ffffffff")).status == 404
    actions = [e.action for e in await hub.store.list_audit()] if hasattr(hub.store, "list_audit") else None
    if actions is not None:
        assert "push_token.created" in actions and "push_token.revoked" in actions


async def test_only_admins_manage_push_tokens(push_hub):
    config = push_hub.app[HUB_KEY].config
    for role in ("viewer", "operator"):
        token = await seed_user(config, f"{role}1", role)
        resp = await push_hub.post(TOKENS, json={"name": "x"}, headers=bearer(token))
        assert resp.status == 403
        assert (await push_hub.get(TOKENS, headers=bearer(token))).status == 403


# ------------------------------------------------------------------- pushes


async def test_a_good_push_lands_like_an_agent_report_with_secrets_masked(push_hub):
    created = await new_token(push_hub)
    hub = push_hub.app[HUB_KEY]
    resp = await push_hub.post(PUSH, json=report(), headers=bearer(created["token"]))
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert answer == {"accepted": True, "node_id": created["node_id"], "seq": 1, "containers": 2}
    second = await push_hub.post(PUSH, json=report(), headers=bearer(created["token"]))
    assert (await second.json())["seq"] == 2

    detail = await hub.node_detail(created["node_id"])
    assert detail["node"]["status"] == "online"
    assert [i["domain"] for i in detail["node"]["integrations"]] == ["docker"]
    docker = detail["state"]["docker"]
    web = next(c for c in docker["containers"] if c["name"] == "web")
    assert {e["key"]: e["value"] for e in web["env"]} == {"DB_PASSWORD": MASK, "API_TOKEN": MASK, "MODE": "prod"}
    assert web["labels"]["secret.key"] == MASK and web["command"] == ["nginx", "--password", MASK]
    assert SECRET not in json.dumps(detail)
    assert detail["metrics"]["docker.cpu_percent[web]"] == 12.5
    assert detail["metrics"]["docker.containers_running"] == 1.0
    series = await hub.store.metric_series(created["node_id"])
    assert "docker.mem_used_bytes[web]" in series
    node = hub.node(created["node_id"])
    assert node.epoch == PUSH_EPOCH and node.last_seq == 2


async def test_metrics_sent_by_the_script_are_kept_with_the_domain_prefix(push_hub):
    created = await new_token(push_hub)
    resp = await push_hub.post(
        PUSH, json=report(metrics={"cpu_percent[web]": 3.0, "docker.containers_total": 2}), headers=bearer(created["token"])
    )
    assert resp.status == 200
    detail = await push_hub.app[HUB_KEY].node_detail(created["node_id"])
    assert detail["metrics"] == {"docker.cpu_percent[web]": 3.0, "docker.containers_total": 2.0}


async def test_push_is_refused_while_disabled(client):
    created = await new_token(client)
    assert created["push_enabled"] is False
    resp = await client.post(PUSH, json=report(), headers=bearer(created["token"]))
    assert resp.status == 503
    assert "set push = true in the [hub] table" in (await resp.json())["error"]


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer rpt_nothex!!_abcdefabcdefabcdefabcdef",
        "Bearer rpt_0000abcd_abcdefabcdefabcdefabcdefabcd",  # unknown id
        "WRONG_SECRET",
        "USER_API_TOKEN",
    ],
)
async def test_bad_tokens_get_401(push_hub, header):
    created = await new_token(push_hub)
    if header == "WRONG_SECRET":
        token_id = created["id"]
        header = f"Bearer rpt_{token_id}_{'x' * 32}"
    elif header == "USER_API_TOKEN":
        header = f"Bearer {push_hub.roost_token}"  # a dashboard API token is not a push token
    headers = {"Authorization": header} if header else {"Authorization": ""}
    resp = await push_hub.post(PUSH, json=report(), headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Bearer rpt_" in (await resp.json())["error"]
    assert await push_hub.app[HUB_KEY].node_detail(created["node_id"]) is not None
    assert (await push_hub.app[HUB_KEY].node_detail(created["node_id"]))["state"] == {}


async def test_revoked_tokens_and_revoked_nodes_are_refused_at_once(push_hub):
    first = await new_token(push_hub, "one")
    assert (await push_hub.post(PUSH, json=report(), headers=bearer(first["token"]))).status == 200
    await push_hub.delete(f"{TOKENS}/{first['id']}")
    assert (await push_hub.post(PUSH, json=report(), headers=bearer(first["token"]))).status == 401
    second = await new_token(push_hub, "two")
    await push_hub.app[HUB_KEY].revoke_node(second["node_id"], actor="user:admin")
    assert (await push_hub.post(PUSH, json=report(), headers=bearer(second["token"]))).status == 401


async def test_an_address_that_keeps_guessing_is_banned(push_hub):
    created = await new_token(push_hub)
    for _ in range(10):
        assert (await push_hub.post(PUSH, json=report(), headers=bearer(f"rpt_{created['id']}_{'y' * 30}"))).status == 401
    resp = await push_hub.post(PUSH, json=report(), headers=bearer(created["token"]))
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "payload is not valid JSON"),
        (b"[1, 2]", "payload must be a JSON object"),
        (json.dumps({"collected_at": 1}).encode(), "invalid report: data: required key not provided"),
        (json.dumps(report(data={"linux_host": {}})).encode(), "invalid report: data"),
        (json.dumps(report(data={"docker": {"containers": [{"state": "running"}]}})).encode(), "data.docker.containers.0.name: required key not provided"),
        (json.dumps(report(data={"docker": {"containers": [{"name": "x", "state": "sleepy"}]}})).encode(), "data.docker.containers.0.state: must be one of"),
        (json.dumps(report(data={"docker": {"containers": "all of them"}})).encode(), "data.docker.containers"),
        (json.dumps(report(node_id="nsomeoneelse")).encode(), "report is for node 'nsomeoneelse'"),
        (json.dumps(report(collected_at=time.time() + 3600)).encode(), "collected_at is in the future"),
        (b'{"data": {"docker": {"containers": []}}, "metrics": {"x": NaN}}', "metrics.x: expected a finite number"),
        (json.dumps(report(v=2)).encode(), "protocol version"),
        (json.dumps(report(surprise=1)).encode(), "surprise: extra keys not allowed"),
    ],
)
async def test_malformed_payloads_get_400_with_the_reason(push_hub, body, reason):
    created = await new_token(push_hub)
    resp = await push_hub.post(PUSH, data=body, headers={**bearer(created["token"]), "Content-Type": "application/json"})
    assert resp.status == 400
    assert reason in (await resp.json())["error"]
    assert (await push_hub.app[HUB_KEY].node_detail(created["node_id"]))["state"] == {}


async def test_the_size_limit_is_enforced(push_hub):
    created = await new_token(push_hub)
    big = report()
    big["data"]["docker"]["containers"][0]["labels"] = {f"l{i}": "x" * 1000 for i in range(MAX_PUSH_BYTES // 1000 + 10)}
    resp = await push_hub.post(PUSH, data=json.dumps(big).encode(), headers={**bearer(created["token"]), "Content-Type": "application/json"})
    assert resp.status == 413 and "limit" in (await resp.json())["error"]

    async def chunks():  # no Content-Length: the limit still holds while reading
        for _ in range(MAX_PUSH_BYTES // 65536 + 2):
            yield b" " * 65536

    resp = await push_hub.post(PUSH, data=chunks(), headers={**bearer(created["token"]), "Content-Type": "application/json"})
    assert resp.status == 413


async def test_an_unknown_domain_is_not_pushable(push_hub):
    created = await new_token(push_hub)
    resp = await push_hub.post("/api/v1/push/proxmox", json=report(), headers=bearer(created["token"]))
    assert resp.status in (401, 404)  # not a public path: the login check answers first for anonymous clients
    assert (await push_hub.post("/api/v1/push/proxmox", json=report())).status == 404  # the admin client gets the reason


# -------------------------------------------------------- the script, for real


async def run_script(env: dict[str, str], timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        shutil.which("bash") or "/bin/bash", str(SCRIPT), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


def script_env(**extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", **extra}


async def test_the_push_script_sends_a_real_engine_s_containers(push_hub, docker_containers, tmp_path):
    from support import need

    need(shutil.which("docker") is not None, "the docker CLI")
    need(shutil.which("jq") is not None, "jq (apt-get install jq)")
    engine = docker_containers
    box = engine.run(
        ["sh", "-c", f"sleep 3600; echo --token {SECRET}"],
        name=engine.name("pushed"),
        environment={"SERVICE_PASSWORD": SECRET, "DSN": f"mysql://u:{SECRET}@db/x", "MODE": "prod"},
        labels={"com.docker.compose.project": "nas"},
        mem_limit="32m",
    )
    created = await new_token(push_hub)
    token_file = tmp_path / "token"
    token_file.write_text(created["token"] + "\n")
    env = script_env(DOCKER_HOST=engine.url, ROOST_HUB=str(push_hub.make_url("/")).rstrip("/"), ROOST_PUSH_TOKEN_FILE=str(token_file))

    dry = await run_script({**env, "ROOST_DRY_RUN": "1"})
    assert dry[0] == 0, dry[2]
    assert SECRET not in dry[1]  # masked before it could leave the host

    code, out, err = await run_script(env)
    assert code == 0, err
    assert out.strip().startswith("pushed ") and f"to node {created['node_id']}" in out
    detail = await push_hub.app[HUB_KEY].node_detail(created["node_id"])
    containers = {c["name"]: c for c in detail["state"]["docker"]["containers"]}
    pushed = containers[box.name]
    assert pushed["state"] == "running" and pushed["status"].startswith("Up")
    assert pushed["compose_project"] == "nas" and pushed["image_name"] == "local/busybox"
    env_values = {e["key"]: e["value"] for e in pushed["env"]}
    assert env_values["SERVICE_PASSWORD"] == MASK and env_values["DSN"] == f"mysql://u:{MASK}@db/x" and env_values["MODE"] == "prod"
    assert pushed["command"][-1] == f"sleep 3600; echo --token {MASK}"
    assert 0 < pushed["stats"]["mem_used_bytes"] <= 32 * 1024 * 1024 and pushed["stats"]["mem_limit_bytes"] == 32 * 1024 * 1024
    assert detail["state"]["docker"]["engine"]["api_version"] == "1.41"
    assert SECRET not in json.dumps(detail)
    assert f"docker.mem_used_bytes[{box.name}]" in detail["metrics"]

    # A bad token: the hub's reason, and a failing exit status for cron to mail.
    code, out, err = await run_script({**env, "ROOST_PUSH_TOKEN_FILE": "", "ROOST_PUSH_TOKEN": f"rpt_{created['id']}_{'z' * 32}"})
    assert code != 0 and "the hub answered 401" in err


async def test_the_push_script_says_when_jq_is_missing(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("curl", "docker", "mktemp", "rm", "cat", "tr", "date", "head"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    code, out, err = await run_script({"PATH": str(bin_dir), "ROOST_HUB": "http://127.0.0.1:9", "ROOST_PUSH_TOKEN": "rpt_x"})
    assert code == 127
    assert err.strip() == "roost-docker-push: jq is missing — install it (apt-get install jq, apk add jq, opkg install jq) and run again"


async def test_the_push_script_asks_for_the_hub_and_token(tmp_path):
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed")
    code, _, err = await run_script(script_env())
    assert code == 1 and "set ROOST_HUB" in err
