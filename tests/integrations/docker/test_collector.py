"""The docker collector against a real dockerd: what a container looks like in Roost's state, stats, secrets, engine facts and events."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from roost.core.config import AgentSettings
from roost.core.const import STATE_COLLECT_ERROR, STATE_LOADED, STATE_NOT_AVAILABLE, STATE_SETUP_RETRY
from roost.integrations.docker.collector import Collector, normalize_ports, split_image
from roost.integrations.docker.const import MASK

SECRET = "hunter2-s3cr3t-value"
MIB = 1024 * 1024


def state_of(result: dict[str, Any]) -> dict[str, Any]:
    return result["data"]["docker"]


def container(state: dict[str, Any], name: str) -> dict[str, Any]:
    for c in state["containers"]:
        if c["name"] == name:
            return c
    raise AssertionError(f"no container {name} in {[c['name'] for c in state['containers']]}")


def run_rich(engine, name: str) -> Any:
    """A container with a health check, secrets, a volume, a read-only bind mount, a memory limit and compose labels."""
    engine.client.volumes.create(f"{name}-data", labels={"org.roost.test": "1"})
    return engine.run(
        ["sh", "-c", "echo started; exec sleep 3600", "--password", SECRET],
        name=name,
        environment={"DB_PASSWORD": SECRET, "API_TOKEN": SECRET, "DATABASE_URL": f"postgres://app:{SECRET}@db/app", "MODE": "prod"},
        mem_limit="64m",
        volumes={f"{name}-data": {"bind": "/data", "mode": "rw"}, "/etc": {"bind": "/host-etc", "mode": "ro"}},
        healthcheck={"test": ["CMD", "true"], "interval": 1_000_000_000, "timeout": 1_000_000_000, "retries": 1},
        labels={"com.docker.compose.project": "shop", "com.docker.compose.service": "web", "com.example.secret-key": SECRET},
        restart_policy={"Name": "on-failure", "MaximumRetryCount": 3},
        ports={"8080/tcp": None},
    )


async def test_a_rich_container_is_described_with_secrets_masked(start_docker, docker_containers):
    engine = docker_containers
    name = engine.name("rich")
    run_rich(engine, name)
    engine.wait_for(lambda: engine.client.containers.get(name).attrs["State"].get("Health", {}).get("Status") == "healthy", what="healthy")
    manager = await start_docker({"url": engine.url})
    assert manager.integrations["docker"].state == STATE_LOADED, manager.integrations["docker"].reason
    result = await manager.collect_all()
    state = state_of(result)
    c = container(state, name)

    assert len(c["id"]) == 64 and c["short_id"] == c["id"][:12]
    assert c["image"] == "local/busybox:latest" and (c["image_name"], c["image_tag"]) == ("local/busybox", "latest")
    assert c["image_id"].startswith("sha256:")
    assert c["state"] == "running" and c["status"].startswith("Up") and "healthy" in c["status"]
    assert c["health"] == "healthy" and c["health_last"]["exit_code"] == 0
    assert c["healthcheck"]["test"] == ["CMD", "true"] and c["healthcheck"]["interval_s"] == 1.0
    assert c["created"] <= c["started_at"] <= time.time() and c["finished_at"] is None
    assert c["restart_count"] == 0 and c["restart_policy"] == "on-failure" and c["restart_max"] == 3
    assert c["exit_code"] == 0 and c["oom_killed"] is False
    assert c["mem_limit_bytes"] == 64 * MIB
    assert c["ports"] == [{"host_ip": None, "host_port": None, "container_port": 8080, "protocol": "tcp"}]
    assert [n["name"] for n in c["networks"]] == ["none"]
    mounts = {m["destination"]: m for m in c["mounts"]}
    assert mounts["/data"]["type"] == "volume" and mounts["/data"]["name"] == f"{name}-data" and mounts["/data"]["rw"] is True
    assert mounts["/host-etc"] == {"type": "bind", "name": None, "source": "/etc", "destination": "/host-etc", "rw": False}
    env = {e["key"]: e for e in c["env"]}
    assert env["DB_PASSWORD"]["value"] == MASK and env["API_TOKEN"]["value"] == MASK
    assert env["DATABASE_URL"]["value"] == f"postgres://app:{MASK}@db/app"
    assert env["MODE"] == {"key": "MODE", "value": "prod", "masked": False}
    assert c["command"][:3] == ["sh", "-c", "echo started; exec sleep 3600"] and c["command"][3:] == ["--password", MASK]
    assert c["compose_project"] == "shop" and c["compose_service"] == "web"
    assert c["labels"]["com.example.secret-key"] == MASK

    # The secret appears nowhere in the state or the metrics the agent hands on.
    assert SECRET not in json.dumps(result)


async def test_no_secret_reaches_the_message_the_agent_would_send(docker_containers, tmp_path: Path):
    """The real agent runtime: collect, spool, and encode the report exactly as the uplink sends it."""
    from roost.agent.runtime import AgentRuntime

    engine = docker_containers
    name = engine.name("wire")
    run_rich(engine, name)
    rt = AgentRuntime(
        data_dir=tmp_path / "agent",
        settings=AgentSettings(interval=1.0, discovery=False),
        integrations_config={"docker": {"url": engine.url}, "linux_host": {"enabled": False}},
        node_id="n-wire",
        entry_points=False,
    )
    await rt.start()
    try:
        assert "docker.read" in rt.manager.capabilities()
        rt.set_grants(["docker.read"])  # what the hub's default grant gives a docker host
        await rt.collect_once()
        rows = await rt.spool.after(0, 10)
        message = rt.report_message(rows[-1])
    finally:
        await rt.stop()
    sent = json.loads(message)
    assert sent["type"] == "report"
    assert name in [c["name"] for c in sent["data"]["docker"]["containers"]]
    assert SECRET not in message
    assert SECRET not in json.dumps(rt.hello())
    # Nor in the spool on disk, for good measure.
    assert SECRET.encode() not in (tmp_path / "agent" / "spool.db").read_bytes()


async def test_stats_fall_within_the_limits(start_docker, docker_containers):
    engine = docker_containers
    burner = engine.run(["sh", "-c", "yes > /dev/null"], name=engine.name("burn"), mem_limit="32m", nano_cpus=500_000_000)
    idle = engine.run(name=engine.name("idle"), mem_limit="48m")
    writer = engine.run(["sh", "-c", "dd if=/dev/zero of=/tmp/f bs=1M count=8 conv=fsync; exec sleep 3600"], name=engine.name("dd"))
    manager = await start_docker({"url": engine.url})
    await manager.collect_all()
    await asyncio.sleep(1.2)
    result = await manager.collect_all()
    state = state_of(result)
    metrics = result["metrics"]
    cpus = state["engine"]["cpus"]

    burn = container(state, burner.name)["stats"]
    # Limited to half a core: it cannot use much more, but it does use some.
    assert 10 <= burn["cpu_percent"] <= 60, burn
    assert 0 < burn["mem_used_bytes"] <= 32 * MIB and burn["mem_limit_bytes"] == 32 * MIB
    assert 0 <= burn["mem_percent"] <= 100
    assert burn["pids"] >= 1
    still = container(state, idle.name)["stats"]
    assert 0 <= still["cpu_percent"] <= cpus * 100 and still["cpu_percent"] < 5
    assert 0 < still["mem_used_bytes"] <= 48 * MIB and still["mem_limit_bytes"] == 48 * MIB
    # No network in a container run with network_mode=none: the rates are left out, not faked as zero.
    assert "net_rx_bytes_per_s" not in still and "net_rx_bytes" not in still
    dd = container(state, writer.name)["stats"]
    assert dd["block_write_bytes"] >= 0 and "block_write_bytes_per_s" in dd
    assert metrics[f"docker.cpu_percent[{burner.name}]"] == burn["cpu_percent"]
    assert metrics[f"docker.mem_used_bytes[{idle.name}]"] == still["mem_used_bytes"]
    assert metrics["docker.containers_running"] >= 3


async def test_stats_of_many_containers_are_gathered_concurrently(docker_containers):
    """Without one-shot each stats call waits for two of dockerd's 1 s samples; 12 in a row take over 12 s."""
    engine = docker_containers
    engine.run_many(12)
    collector = Collector({"url": engine.url, "stats_workers": 8, "disk_usage_interval": 0})
    collector.start()
    try:
        collector.one_shot = False  # the slow path older engines take
        collector._samples.clear()
        started = time.monotonic()
        result = await asyncio.to_thread(collector.collect)
        slow = time.monotonic() - started
    finally:
        collector.close()
    with_stats = [c for c in result["state"]["containers"] if c["name"].startswith("many") and "cpu_percent" in c.get("stats", {})]
    assert len(with_stats) == 12
    assert slow < 7.0, f"12 stats calls took {slow:.1f} s: not concurrent"


async def test_engine_images_volumes_and_disk_usage(start_docker, docker_containers):
    engine = docker_containers
    name = engine.name("vol")
    run_rich(engine, name)
    # An untagged image: dangling.
    from docker_engine import _busybox_tar

    engine.client.api.import_image_from_data(_busybox_tar() + b"\0" * 1024)
    manager = await start_docker({"url": engine.url, "disk_usage_interval": 1})
    state = state_of(await manager.collect_all())
    collector = manager.integrations["docker"].context.data["collector"]
    engine.wait_for(lambda: collector._df is not None, what="docker system df in the background")
    result = await manager.collect_all()
    state = state_of(result)
    eng = state["engine"]
    assert eng["kind"] == "docker" and eng["api_version"] >= "1.41" and eng["version"]
    assert eng["storage_driver"] == engine.storage_driver and eng["cpus"] >= 1 and eng["endpoint"] == engine.url
    tags = {t for i in state["images"] for t in i["tags"]}
    assert "local/busybox:latest" in tags
    assert any(i["dangling"] for i in state["images"])
    assert all(i["size_bytes"] > 0 for i in state["images"])
    volumes = {v["name"]: v for v in state["volumes"]}
    assert volumes[f"{name}-data"]["driver"] == "local" and volumes[f"{name}-data"]["containers"] == 1
    disk = state["disk_usage"]
    assert disk["images_bytes"] > 0 and disk["images_count"] >= 2
    metrics = result["metrics"]
    assert metrics["docker.images_dangling"] >= 1 and metrics["docker.disk_images_bytes"] == disk["images_bytes"]
    assert metrics["docker.volumes_count"] >= 1


async def test_events_from_real_containers(start_docker, docker_containers):
    engine = docker_containers
    manager = await start_docker({"url": engine.url})
    sick = engine.run(
        name=engine.name("sick"),
        healthcheck={"test": ["CMD", "sh", "-c", "test ! -e /tmp/sick"], "interval": 200_000_000, "timeout": 1_000_000_000, "retries": 1},
    )
    crash = engine.run(["sh", "-c", "sleep 3; exit 3"], name=engine.name("crash"))
    calm = engine.run(name=engine.name("calm"))
    doomed = engine.run(name=engine.name("doomed"))
    await manager.collect_all()  # baseline

    sick.exec_run(["sh", "-c", "echo > /tmp/sick"])
    calm.stop(timeout=0)
    doomed.remove(force=True)
    engine.wait_for(lambda: engine.client.containers.get(crash.id).status == "exited", what="crash to exit")
    engine.wait_for(lambda: engine.client.api.inspect_container(sick.id)["State"]["Health"]["Status"] == "unhealthy", what="unhealthy")
    state = state_of(await manager.collect_all())
    seen = {(e["type"], e["container"]) for e in state["events"]}
    assert ("unhealthy", sick.name) in seen
    assert ("exited_unexpectedly", crash.name) in seen
    assert ("disappeared", doomed.name) in seen
    # calm was stopped on purpose (137 after a kill): not unexpected.
    assert not any(e["container"] == calm.name for e in state["events"])
    by_name = {e["container"]: e for e in state["events"]}
    assert by_name[crash.name]["detail"] == "exit code 3"
    assert by_name[doomed.name]["detail"] == "removed"


async def test_a_restart_loop_is_reported(start_docker, docker_containers):
    engine = docker_containers
    manager = await start_docker({"url": engine.url})
    looper = engine.run(["sh", "-c", "exit 1"], name=engine.name("loop"), restart_policy={"Name": "always"})
    await manager.collect_all()
    # Docker backs off 100 ms, 200 ms, 400 ms... three restarts take about a second.
    engine.wait_for(lambda: engine.client.api.inspect_container(looper.id)["RestartCount"] >= 4, timeout=20, what="4 restarts")
    state = state_of(await manager.collect_all())
    assert ("restart_loop", looper.name) in {(e["type"], e["container"]) for e in state["events"]}
    assert container(state, looper.name)["restart_count"] >= 3


async def test_no_engine_socket_means_not_available(start_docker, tmp_path: Path):
    manager = await start_docker({"url": f"unix://{tmp_path}/missing.sock"})
    integ = manager.integrations["docker"]
    assert integ.state == STATE_NOT_AVAILABLE
    assert integ.reason.startswith(f"docker: no engine socket at {tmp_path}/missing.sock")
    assert (await manager.collect_all())["data"] == {}


async def test_a_socket_nobody_answers_is_retried(start_docker, tmp_path: Path):
    import socket

    path = tmp_path / "silent.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))  # bound, never listening: connections are refused
    try:
        manager = await start_docker({"url": f"unix://{path}"})
        integ = manager.integrations["docker"]
        assert integ.state == STATE_SETUP_RETRY
        assert "refuses connections — is the engine (dockerd or podman) running?" in integ.reason
    finally:
        sock.close()


async def test_permission_denied_says_what_to_do(docker_engine, tmp_path: Path):
    """A real user without access to the socket: the STYLE.md message, as not_available."""
    import os
    import shutil
    import subprocess
    import sys

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run as another user")
    os.chmod(docker_engine.socket, 0o660)
    script = (
        "import asyncio, json, pathlib, tempfile\n"
        "from roost.core.plugins import IntegrationManager\n"
        "async def main():\n"
        f"    m = IntegrationManager(role='agent', config={{'docker': {{'url': {docker_engine.url!r}}}}}, data_dir=pathlib.Path(tempfile.mkdtemp()), only=['docker'], entry_points=False)\n"
        "    m.load(); await m.setup_all()\n"
        "    i = m.integrations['docker']; print(json.dumps([i.state, i.reason]))\n"
        "asyncio.run(main())\n"
    )
    proc = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HOME": "/tmp"},
    )
    if proc.returncode != 0 and "Permission denied" in proc.stderr and "python" in proc.stderr.lower():
        pytest.skip(f"the interpreter is not readable by nobody: {proc.stderr[-300:]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    state, reason = json.loads(proc.stdout.strip().splitlines()[-1])
    assert state == STATE_NOT_AVAILABLE
    assert reason == (
        f"docker: cannot reach {docker_engine.socket} (permission denied) — add the roost user to the docker group "
        "or set integrations.docker.url"
    )


async def test_an_engine_that_goes_away_is_one_clear_error_not_a_storm(start_docker, docker_engine, tmp_path: Path, caplog):
    """A socket proxy in front of the real engine, closed after setup: collect fails with a reason, logged once."""
    path = tmp_path / "proxy.sock"
    target = docker_engine.socket

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(target)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_unix_server(handle, path=str(path))
    manager = await start_docker({"url": f"unix://{path}", "disk_usage_interval": 0})
    integ = manager.integrations["docker"]
    assert integ.state == STATE_LOADED
    assert "docker" in (await manager.collect_all())["data"]
    server.close()
    await server.wait_closed()
    path.unlink()
    # Pooled keep-alive connections may outlive the server; drop them as an engine restart would.
    integ.context.data["collector"].client.api.close()
    caplog.clear()
    with caplog.at_level("DEBUG", logger="roost.core.plugins"):
        for _ in range(3):
            result = await manager.collect_all()
            assert "docker" not in result["data"]
    assert integ.state == STATE_COLLECT_ERROR
    assert integ.reason == f"collect failed: RuntimeError: docker: no engine socket at {path} (from config) — check integrations.docker.url"
    errors = [r for r in caplog.records if r.levelname == "ERROR" and "docker" in r.getMessage()]
    assert len(errors) == 1, [r.getMessage() for r in errors]


def test_pure_helpers():
    assert split_image("registry.lan:5000/team/app:1.2") == ("registry.lan:5000/team/app", "1.2")
    assert split_image("registry.lan:5000/team/app") == ("registry.lan:5000/team/app", "latest")
    assert split_image("nginx@sha256:abc") == ("nginx", None)
    assert normalize_ports({"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"}], "53/udp": None}) == [
        {"host_ip": None, "host_port": None, "container_port": 53, "protocol": "udp"},
        {"host_ip": "0.0.0.0", "host_port": 8080, "container_port": 80, "protocol": "tcp"},
        {"host_ip": "::", "host_port": 8080, "container_port": 80, "protocol": "tcp"},
    ]


def test_a_huge_host_stays_within_the_report_budget():
    from roost.integrations.docker.collector import container_metrics, fit_budget

    containers = [
        {"id": f"{i:064x}", "name": f"c{i}", "state": "running" if i % 2 else "exited", "restart_count": 0,
         "env": [{"key": f"K{j}", "value": "v" * 100, "masked": False} for j in range(20)],
         "labels": {f"l{j}": "x" * 100 for j in range(20)}, "stats": {"cpu_percent": 1.0, "mem_used_bytes": 1}}
        for i in range(1000)
    ]
    state = fit_budget({"containers": containers, "images": [{"id": str(i), "size_bytes": i} for i in range(500)], "volumes": []}, budget=200_000)
    assert len(json.dumps(state)) <= 200_000 + 200
    assert len(state["containers"]) == 1000 and "env" not in state["containers"][0] and "labels" not in state["containers"][0]
    assert state["trimmed"]["left_out"][:3] == ["images beyond the largest 100", "containers' labels", "containers' env"]
    assert [i["size_bytes"] for i in state["images"][:2]] == [499, 498]
    metrics = container_metrics(containers)
    assert len(metrics) <= 6 + 400 * 3
    assert "cpu_percent[c1]" in metrics and "restart_count[c0]" not in metrics  # running ones first
    small = {"containers": containers[:2], "images": [], "volumes": []}
    assert "trimmed" not in fit_budget(small)
