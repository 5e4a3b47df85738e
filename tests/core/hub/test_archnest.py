"""The ArchNest Docker push contract: the design's own example round-trips, its refusals, shared tokens, and an agent.sh-shaped script against a real dockerd."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from docker_engine import docker_containers, docker_engine  # noqa: F401 - fixtures
from support_auth import seed_user

from roost.core.hub.app import HUB_KEY
from roost.integrations.docker.const import MASK

REPORT = "/api/agents/docker/report"
HOSTS = "/api/agents/docker/hosts"
TOKENS = "/api/v1/push-tokens"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "archnest"
EXAMPLE = json.loads((FIXTURES / "archnest-docker-report.json").read_text())
SECRET = "hunter2-hunter2"


def example(**over: Any) -> dict[str, Any]:
    body = copy.deepcopy(EXAMPLE)
    body.update(over)
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def new_token(client, name: str = "docker01", **extra: Any) -> dict[str, Any]:
    resp = await client.post(TOKENS, json={"name": name, **extra})
    assert resp.status == 201, await resp.text()
    return await resp.json()


@pytest.fixture
async def push_hub(make_hub):
    return await make_hub(push=True)


async def test_the_design_s_own_example_round_trips(push_hub):
    token = await new_token(push_hub)
    assert token["archnest_url"].endswith(REPORT)
    resp = await push_hub.post(REPORT, json=EXAMPLE, headers=bearer(token["token"]))
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert answer["hostId"] == "proxmox-vm-1" and answer["node_id"] == token["node_id"] and answer["containers"] == 1

    hosts = await (await push_hub.get(HOSTS)).json()
    assert [(h["hostId"], h["hostname"], h["containerCount"], h["stale"]) for h in hosts] == [("proxmox-vm-1", "docker01", 1, False)]
    assert hosts[0]["receivedAt"].endswith("Z") and hosts[0]["reportedAt"] == "2026-06-20T19:30:00Z"

    listed = await (await push_hub.get(f"{HOSTS}/proxmox-vm-1/containers")).json()
    one = await (await push_hub.get(f"{HOSTS}/proxmox-vm-1/containers/{EXAMPLE['containers'][0]['id']}")).json()
    assert listed == [one]
    assert one == EXAMPLE["containers"][0]  # every field, in the contract's own shape, as sent
    by_name = await push_hub.get(f"{HOSTS}/proxmox-vm-1/containers/myapp")
    assert (await by_name.json()) == one
    assert (await push_hub.get(f"{HOSTS}/nope/containers")).status == 404
    assert (await push_hub.get(f"{HOSTS}/proxmox-vm-1/containers/nope")).status == 404


async def test_it_lands_as_the_same_docker_state_the_agent_produces(push_hub):
    token = await new_token(push_hub)
    assert (await push_hub.post(REPORT, json=EXAMPLE, headers=bearer(token["token"]))).status == 200
    detail = await push_hub.app[HUB_KEY].node_detail(token["node_id"])
    (container,) = detail["state"]["docker"]["containers"]
    assert container["image_name"] == "nginx" and container["image_tag"] == "1.27" and container["compose_project"] == "myapp"
    assert container["command"] == ["nginx", "-g", "daemon off;"] and container["health"] == "healthy"
    assert container["ports"] == [{"host_ip": "0.0.0.0", "host_port": 8080, "container_port": 80, "protocol": "tcp"}]
    assert container["stats"]["mem_used_bytes"] == 20971520 and container["stats"]["mem_percent"] == pytest.approx(3.91, abs=0.01)
    assert detail["metrics"]["docker.cpu_percent[myapp]"] == 1.4
    assert detail["metrics"]["docker.containers_running"] == 1
    assert detail["node"]["integrations"][0]["domain"] == "docker"

    # A second report a while later: the byte counters become the rates the Containers page charts.
    later = example()
    later["containers"][0]["stats"] = {**later["containers"][0]["stats"], "netRxBytes": 10**9}
    assert (await push_hub.post(REPORT, json=later, headers=bearer(token["token"]))).status == 200
    detail = await push_hub.app[HUB_KEY].node_detail(token["node_id"])
    assert detail["state"]["docker"]["containers"][0]["stats"]["net_rx_bytes_per_s"] > 0


async def test_secrets_are_masked_again_on_the_hub(push_hub):
    token = await new_token(push_hub)
    body = example()
    body["containers"][0]["env"] = [{"key": "DB_PASSWORD", "value": SECRET}, {"key": "DSN", "value": f"pg://u:{SECRET}@db/x"}]
    body["containers"][0]["command"] = f"app --password {SECRET}"
    assert (await push_hub.post(REPORT, json=body, headers=bearer(token["token"]))).status == 200
    one = await (await push_hub.get(f"{HOSTS}/proxmox-vm-1/containers/myapp")).json()
    assert {e["key"]: e["value"] for e in one["env"]} == {"DB_PASSWORD": MASK, "DSN": f"pg://u:{MASK}@db/x"}
    assert one["command"] == f"app --password {shlex_quote(MASK)}"
    detail = await push_hub.app[HUB_KEY].node_detail(token["node_id"])
    assert SECRET not in json.dumps(detail)


def shlex_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


async def test_the_contract_s_refusals(make_hub, push_hub):
    off = await make_hub(push=False)
    resp = await off.post(REPORT, json=EXAMPLE, headers=bearer("rpt_00000000_" + "x" * 32))
    assert resp.status == 503 and "push = true" in (await resp.json())["error"]

    token = await new_token(push_hub)
    for header in ({}, bearer("wrong"), bearer(token["token"][:-1] + "Z")):
        resp = await push_hub.post(REPORT, json=EXAMPLE, headers=header)
        assert resp.status == 401, header

    bad_state = example()
    bad_state["containers"][0]["state"] = "sleepy"
    bad_health = example()
    bad_health["containers"][0]["health"] = "fine"
    bad_port = example()
    bad_port["containers"][0]["ports"][0]["hostPort"] = "eighty"
    bad_time = example(reportedAt="yesterday")
    for body, field in (
        ({k: v for k, v in EXAMPLE.items() if k != "hostId"}, "hostId: required key not provided"),
        (example(hostId="../etc"), "hostId: must be"),
        (bad_state, "containers.0.state: must be one of running, exited"),
        (bad_health, "containers.0.health"),
        (bad_port, "containers.0.ports.0.hostPort"),
        (bad_time, "reportedAt: expected an ISO 8601 time"),
        (example(containers="all"), "containers"),
    ):
        resp = await push_hub.post(REPORT, json=body, headers=bearer(token["token"]))
        assert resp.status == 400, body
        assert field in (await resp.json())["error"]
    deep = "[" * 5000 + "]" * 5000
    resp = await push_hub.post(REPORT, data=deep, headers={**bearer(token["token"]), "Content-Type": "application/json"})
    assert resp.status == 400
    # Nothing of the refused reports was stored.
    assert await (await push_hub.get(HOSTS)).json() == []


async def test_a_token_is_for_one_host_unless_an_admin_made_it_multi_host(push_hub):
    single = await new_token(push_hub)
    assert single["multi_host"] is False
    assert (await push_hub.post(REPORT, json=EXAMPLE, headers=bearer(single["token"]))).status == 200
    resp = await push_hub.post(REPORT, json=example(hostId="other-host"), headers=bearer(single["token"]))
    assert resp.status == 403 and "multi_host" in (await resp.json())["error"]

    shared = await new_token(push_hub, name="docker02", multi_host=True)
    assert shared["multi_host"] is True
    for host_id, hostname in (("docker02", "docker02"), ("docker03", "docker03.lan")):
        resp = await push_hub.post(REPORT, json=example(hostId=host_id, hostname=hostname), headers=bearer(shared["token"]))
        assert resp.status == 200, await resp.text()
    hosts = {h["hostId"]: h for h in await (await push_hub.get(HOSTS)).json()}
    assert set(hosts) == {"proxmox-vm-1", "docker02", "docker03"}
    assert hosts["docker02"]["nodeId"] == shared["node_id"]  # the first host takes the token's own node
    third = push_hub.app[HUB_KEY].node(hosts["docker03"]["nodeId"])
    assert third.name == "docker03.lan" and third.node_id != shared["node_id"]
    # The same hostId again lands on the same node.
    resp = await push_hub.post(REPORT, json=example(hostId="docker03"), headers=bearer(shared["token"]))
    assert (await resp.json())["node_id"] == third.node_id
    # Revoking the token stops every host it reported for.
    assert (await push_hub.delete(f"{TOKENS}/{shared['id']}")).status == 200
    assert (await push_hub.post(REPORT, json=example(hostId="docker03"), headers=bearer(shared["token"]))).status == 401


async def test_the_read_endpoints_need_a_login(push_hub, make_hub):
    anon = await make_hub(as_role=None, push=True)
    assert (await anon.get(HOSTS)).status == 401
    viewer = await seed_user(push_hub.app[HUB_KEY].config, "viewer1", "viewer")
    resp = await push_hub.get(HOSTS, headers=bearer(viewer))
    assert resp.status == 200


async def test_an_agent_sh_shaped_script_works_unchanged(push_hub, docker_containers, tmp_path):
    from support import need

    need(shutil.which("docker") is not None, "the docker CLI")
    need(shutil.which("jq") is not None, "jq (apt-get install jq)")
    need(shutil.which("curl") is not None, "curl")
    engine = docker_containers
    box = engine.run(
        ["sleep", "3600"], name=engine.name("archnest"), environment={"API_TOKEN": SECRET, "MODE": "prod"}, labels={"com.docker.compose.project": "nest"}
    )
    token = await new_token(push_hub)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "DOCKER_HOST": engine.url,
        "ARCHNEST_URL": str(push_hub.make_url("/")).rstrip("/"),
        "ARCHNEST_TOKEN": token["token"],
        "HOST_ID": "docker-ci",
    }
    proc = await asyncio.create_subprocess_exec(
        "bash", str(FIXTURES / "agent.sh"), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, (out.decode(), err.decode())
    one = await (await push_hub.get(f"{HOSTS}/docker-ci/containers/{box.name}")).json()
    assert one["state"] == "running" and one["id"] == box.id and one["labels"]["com.docker.compose.project"] == "nest"
    assert {e["key"]: e["value"] for e in one["env"]}["API_TOKEN"] == MASK
    assert one["command"] == "sleep 3600" and one["stats"]["memUsage"] > 0
    detail = await push_hub.app[HUB_KEY].node_detail(token["node_id"])
    assert SECRET not in json.dumps(detail)
    assert f"docker.mem_used_bytes[{box.name}]" in detail["metrics"]
