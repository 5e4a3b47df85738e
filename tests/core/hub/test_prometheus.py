"""Prometheus exposition: names and labels, access, no database per scrape, promtool's lint, and a real Prometheus scraping the hub."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import replace

import pytest
from support import free_port, need
from support_auth import seed_user
from support_hub import FakeAgent

from roost.core.hub.app import HUB_KEY
from roost.core.hub.prometheus import JOB_COUNTS_KEY, family_name, split_series
from roost.core.store.jobs import Job

METRICS = "/metrics"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def reporting_node(fake_agent, metrics: dict[str, float]):
    agent = fake_agent()
    await agent.enroll()
    assert (await agent.connect())["type"] == "welcome"
    await agent.send(agent.report(metrics=metrics))
    await wait_until(lambda: agent.hub._metrics.get(agent.node_id) == metrics, 10, "the report to reach the hub's latest state")
    return agent


def test_series_names_follow_prometheus_conventions():
    assert family_name("linux_host.cpu_percent") == "roost_linux_host_cpu_percent"
    assert family_name("linux_host.uptime_s") == "roost_linux_host_uptime_seconds"
    assert family_name("docker.net_rx_bytes_per_s") == "roost_docker_net_rx_bytes_per_second"
    assert family_name("docker.containers_total") == "roost_docker_containers"  # a gauge never ends in _total or _count
    assert family_name("docker.restart_count", "restarts") == "roost_docker_restarts"
    assert family_name("docker.restart_count", "no spaces!") == "roost_docker_restart"
    assert family_name("linux_host.mem_total_bytes") == "node_memory_MemTotal_bytes"
    assert family_name("linux_host.disk_total_bytes") == "node_filesystem_size_bytes"
    assert family_name("tcp-probe.rtt ms") == "roost_tcp_probe_rtt_ms"
    # A node cannot pose as the hub's own families.
    assert family_name("node.up") is None and family_name("jobs.x") is None and family_name("nodomain") is None
    assert split_series("disk_used_percent[/srv/a b]") == ("disk_used_percent", "/srv/a b")
    assert split_series("cpu_percent") == ("cpu_percent", None)


async def test_every_node_series_with_node_and_name_labels(client, fake_agent):
    agent = await reporting_node(
        fake_agent,
        {
            "linux_host.cpu_percent": 12.5,
            "linux_host.disk_used_percent[/]": 41.0,
            "linux_host.disk_total_bytes[/]": 1e9,
            "linux_host.mem_total_bytes": 8e9,
            "linux_host.uptime_s": 3600,
            'docker.cpu_percent[we"ird\nname]': 3.0,
            "node.up": 0,
        },
    )
    agent.hub._nodes[agent.node_id].fields.update(
        {"linux_host.disk_used_percent": {"label_name": "mountpoint", "description": "Disk used."}, "docker.cpu_percent": {"label_name": "node"}}
    )
    resp = await client.get(METRICS)
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await resp.text()
    nid = agent.node_id
    assert f'roost_node_up{{node="{nid}",name="box"}} 1.0' in text
    assert f'roost_node_last_seen_timestamp_seconds{{node="{nid}",name="box"}}' in text
    assert 'roost_node_info{' in text and 'os="Testix"' in text and 'status="online"' in text
    assert f'roost_integration_state{{node="{nid}",name="box",domain="linux_host",state="loaded"}} 1.0' in text
    assert f'roost_linux_host_cpu_percent{{node="{nid}",name="box"}} 12.5' in text
    assert f'roost_linux_host_disk_used_percent{{node="{nid}",name="box",mountpoint="/"}} 41.0' in text
    assert "# HELP roost_linux_host_disk_used_percent Disk used." in text
    assert f'node_filesystem_size_bytes{{node="{nid}",name="box",mountpoint="/"}} 1e+09' in text
    assert f'node_memory_MemTotal_bytes{{node="{nid}",name="box"}} 8e+09' in text
    assert f'roost_linux_host_uptime_seconds{{node="{nid}",name="box"}} 3600.0' in text
    # An agent's label name cannot override the node label; label values are escaped, never break a line.
    assert f'roost_docker_cpu_percent{{node="{nid}",name="box",key="we\\"ird\\nname"}} 3.0' in text
    assert "roost_node_up{" in text and text.count("roost_node_up{") == 1  # the node's own "node.up" is not exported
    assert "roost_hub_process_resident_memory_bytes" in text and "roost_hub_info{" in text


async def test_job_counts_follow_the_job_engine(client, fake_agent):
    agent = await reporting_node(fake_agent, {"linux_host.cpu_percent": 1.0})
    counts = client.app[JOB_COUNTS_KEY]
    counts.observe("j1", "files.read", "queued")
    counts.observe("j2", "files.read", "running")
    counts.observe("j3", "docker.container.restart", "succeeded")
    counts.observe("j3", "docker.container.restart", "succeeded")  # a repeated final event counts once
    text = await (await client.get(METRICS)).text()
    assert 'roost_jobs{state="queued",action="files.read"} 1.0' in text
    assert 'roost_jobs{state="running",action="files.read"} 1.0' in text
    assert 'roost_jobs_finished_total{action="docker.container.restart",state="succeeded"} 1.0' in text
    assert "# TYPE roost_jobs_finished_total counter" in text
    # The job engine feeds it on every state change.
    engine = agent.hub.jobs
    job = Job(
        job_id="j4", node_id=agent.node_id, action="logs.journal", params={}, state="queued",
        created_by="user:admin", created_at=time.time(), timeout=30, next_attempt_at=time.time(),
    )
    engine._publish(job)
    assert counts.active["j4"] == ("queued", "logs.journal")
    engine._publish(replace(job, state="timed_out"))
    text = await (await client.get(METRICS)).text()
    assert 'action="logs.journal"}' not in text.split("roost_jobs_finished_total")[0]
    assert 'roost_jobs_finished_total{action="logs.journal",state="timed_out"} 1.0' in text


async def test_alert_counts_by_severity_follow_the_alert_engine(client, fake_agent):
    agent = await reporting_node(fake_agent, {"linux_host.cpu_percent": 1.0})
    hub = client.app[HUB_KEY]
    ident = f'node="{agent.node_id}",name="{hub.node(agent.node_id).name}"'
    text = await (await client.get(METRICS)).text()
    assert "# TYPE roost_alerts_firing gauge" in text
    assert f'roost_alerts_firing{{{ident},severity="critical"}} 0.0' in text
    await hub.alerts.raise_alert(source="test", node_id=agent.node_id, name="disk gone", summary="sdb vanished", severity="critical")
    await hub.alerts.raise_alert(source="test", node_id=agent.node_id, name="warm", summary="42 °C", severity="warning", labels={"sensor": "cpu"})
    await hub.alerts.raise_alert(source="test", node_id=agent.node_id, name="warmer", summary="43 °C", severity="warning")
    text = await (await client.get(METRICS)).text()
    assert f'roost_alerts_firing{{{ident},severity="critical"}} 1.0' in text
    assert f'roost_alerts_firing{{{ident},severity="warning"}} 2.0' in text
    await hub.alerts.resolve_alert("test", agent.node_id, "disk gone")
    text = await (await client.get(METRICS)).text()
    assert f'roost_alerts_firing{{{ident},severity="critical"}} 0.0' in text


async def test_a_scrape_never_touches_the_database(make_hub, monkeypatch):
    # A LAN-open hub, so not even the login layer looks a token up: what is left is the scrape itself.
    client = await make_hub(metrics_public_lan=True)
    agent = FakeAgent(client)
    await agent.enroll()
    assert (await agent.connect())["type"] == "welcome"
    await agent.send(agent.report(metrics={"linux_host.cpu_percent": 7.0}))
    await wait_until(lambda: agent.hub._metrics.get(agent.node_id), 10, "the report")
    store = agent.hub.store

    async def refuse(*args, **kwargs):
        raise AssertionError("a scrape queried the database")

    monkeypatch.setattr(store, "_fetchall", refuse)
    monkeypatch.setattr(store, "_transaction", refuse)
    resp = await client.get(METRICS, headers={"Authorization": ""})
    assert resp.status == 200 and "roost_linux_host_cpu_percent" in await resp.text()


async def test_access_needs_a_token_unless_the_lan_is_allowed(make_hub, client):
    anon = await make_hub(as_role=None)
    resp = await anon.get(METRICS, allow_redirects=False)
    assert resp.status == 401 and "Bearer" in resp.headers["WWW-Authenticate"] and "metrics_public_lan" in await resp.text()
    assert (await anon.get(METRICS, headers=bearer("rst_00000000_" + "x" * 30))).status == 401
    assert (await anon.get("/metrics/nodes/nanything", allow_redirects=False)).status == 401
    reader = await seed_user(client.app[HUB_KEY].config, "grafana", "viewer")
    assert (await anon.get(METRICS, headers=bearer(reader))).status == 200  # a viewer's token (read scope) is enough
    open_lan = await make_hub(as_role=None, metrics_public_lan=True)
    assert (await open_lan.get(METRICS)).status == 200  # the test client is on 127.0.0.1


async def test_one_target_per_node_for_http_service_discovery(client, fake_agent):
    agent = await reporting_node(fake_agent, {"linux_host.cpu_percent": 2.0, "linux_host.load_1": 0.5})
    targets = await (await client.get("/api/v1/prometheus/targets")).json()
    mine = [t for t in targets if t["labels"]["node"] == agent.node_id]
    assert len(mine) == 1 and mine[0]["labels"]["__metrics_path__"] == f"/metrics/nodes/{agent.node_id}"
    text = await (await client.get(mine[0]["labels"]["__metrics_path__"])).text()
    assert "roost_linux_host_load_1{" in text and "roost_hub_process" not in text and "roost_jobs" not in text
    assert (await client.get("/metrics/nodes/nnope")).status == 404


async def test_promtool_finds_nothing_to_lint(client, fake_agent):
    need(shutil.which("promtool") is not None, "promtool (apt-get install prometheus)")
    await reporting_node(fake_agent, {"linux_host.cpu_percent": 5.0, "linux_host.disk_used_percent[/]": 50.0, "docker.restart_count[web]": 2})
    text = await (await client.get(METRICS)).text()
    proc = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


async def test_a_real_prometheus_scrapes_the_hub(make_hub, tmp_path):
    need(shutil.which("prometheus") is not None, "prometheus (apt-get install prometheus)")
    client = await make_hub()
    agent = FakeAgent(client)
    await agent.enroll()
    assert (await agent.connect())["type"] == "welcome"
    await agent.send(agent.report(metrics={"linux_host.cpu_percent": 33.0}))
    await wait_until(lambda: agent.hub._metrics.get(agent.node_id), 10, "the report")
    hub_addr = f"{client.server.host}:{client.server.port}"
    token_file = tmp_path / "token"
    token_file.write_text(client.roost_token)
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {"job_name": "roost", "static_configs": [{"targets": [hub_addr]}], "authorization": {"type": "Bearer", "credentials_file": str(token_file)}},
                    {
                        "job_name": "roost-nodes",
                        "http_sd_configs": [{"url": f"http://{hub_addr}/api/v1/prometheus/targets", "refresh_interval": "5s", "authorization": {"type": "Bearer", "credentials_file": str(token_file)}}],
                        "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
                    },
                ],
            }
        )
    )
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            "--storage.tsdb.retention.time=1h",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "prometheus.log", "wb"),
    )

    def query(expr: str):
        url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return json.load(answer)["data"]["result"]
        except OSError:
            return None

    try:
        deadline = time.monotonic() + 90
        while True:
            result = await asyncio.to_thread(query, f'roost_linux_host_cpu_percent{{job="roost",node="{agent.node_id}"}}')
            per_node = await asyncio.to_thread(query, f'roost_node_up{{job="roost-nodes",node="{agent.node_id}"}}')
            if result and per_node:
                break
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            assert time.monotonic() < deadline, f"Prometheus never stored the series: {(tmp_path / 'prometheus.log').read_text()[-2000:]}"
            await asyncio.sleep(0.5)
        assert result[0]["value"][1] == "33" and result[0]["metric"]["name"] == "box" and result[0]["metric"]["job"] == "roost"
        assert per_node[0]["value"][1] == "1"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
