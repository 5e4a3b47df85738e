"""The containers pages rendered against hub-shaped docker state: the table, grouping, the detail, missing values, escaping, 404s."""

from __future__ import annotations

import copy
import re
import time
from html.parser import HTMLParser
from typing import Any

import pytest
from aiohttp import web
from roost import frontend
from roost.core.hub.app import HUB_KEY

NOW = time.time()
EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'

# The hub halves these pages come from, loaded through the real kernel.
HUB_HALVES = ("linux_host", "docker")


def web_container(**over: Any) -> dict[str, Any]:
    c = {
        "id": "a1" * 32,
        "short_id": ("a1" * 32)[:12],
        "name": "web",
        "image": "nginx:1.25",
        "image_name": "nginx",
        "image_tag": "1.25",
        "image_id": "sha256:" + "b" * 64,
        "state": "running",
        "status": "Up 3 hours (healthy)",
        "created": NOW - 86400,
        "started_at": NOW - 10800,
        "finished_at": None,
        "restart_count": 2,
        "restart_policy": "unless-stopped",
        "exit_code": 0,
        "oom_killed": False,
        "health": "healthy",
        "health_failing_streak": 0,
        "health_last": {"at": NOW - 5, "exit_code": 0, "output": "ok"},
        "healthcheck": {"test": ["CMD", "curl", "-f", "http://localhost"], "interval_s": 30.0},
        "ports": [
            {"host_ip": "0.0.0.0", "host_port": 8080, "container_port": 80, "protocol": "tcp"},
            {"host_ip": "::", "host_port": 8080, "container_port": 80, "protocol": "tcp"},
            {"host_ip": None, "host_port": None, "container_port": 443, "protocol": "tcp"},
        ],
        "networks": [{"name": "site_default", "ip": "172.18.0.2", "ipv6": None}],
        "mounts": [
            {"type": "volume", "name": "site_data", "source": "/var/lib/docker/volumes/site_data/_data", "destination": "/data", "rw": True},
            {"type": "bind", "name": None, "source": "/etc/nginx", "destination": "/etc/nginx", "rw": False},
        ],
        "env": [{"key": "DB_PASSWORD", "value": "********", "masked": True}, {"key": "MODE", "value": "prod", "masked": False}],
        "command": ["nginx", "-g", "daemon off;"],
        "entrypoint": ["/docker-entrypoint.sh"],
        "labels": {"com.docker.compose.project": "site", "com.docker.compose.service": "web"},
        "compose_project": "site",
        "compose_service": "web",
        "mem_limit_bytes": 268435456,
        "stats": {"cpu_percent": 12.5, "mem_used_bytes": 52428800, "mem_limit_bytes": 268435456, "mem_percent": 19.53, "pids": 5},
    }
    c.update(over)
    return c


def docker_state() -> dict[str, Any]:
    return {
        "engine": {"kind": "docker", "version": "24.0.7", "api_version": "1.43"},
        "containers": [
            web_container(),
            web_container(id="c3" * 32, short_id="c3c3c3c3c3c3", name="db", image="postgres:16", image_name="postgres", image_tag="16",
                          state="exited", status="Exited (1) 5 minutes ago", exit_code=1, health=None, stats=None, ports=[],
                          compose_service="db", health_last=None, healthcheck=None, mem_limit_bytes=None),
            # A container from a minimal source: most fields missing.
            {"id": "d4" * 32, "name": "bare", "state": "paused"},
        ],
        "images": [],
        "volumes": [],
        "events": [{"type": "exited_unexpectedly", "container": "db", "id": "c3" * 32, "at": NOW - 300, "detail": "exit code 1"}],
    }


@pytest.fixture
def fake_hub(samples):
    detail = samples.node_detail()
    detail["state"]["docker"] = docker_state()
    detail["node"]["integrations"] = [
        {"domain": "linux_host", "state": "loaded", "reason": ""},
        {"domain": "docker", "state": "loaded", "reason": ""},
    ]
    other = copy.deepcopy(samples.SUMMARY) | {"id": "nnas", "name": "nas", "local": False}
    other_detail = samples.node_detail(other, state={})
    other_detail["node"]["integrations"] = [
        {"domain": "docker", "state": "not_available", "reason": "docker: cannot reach /var/run/docker.sock (permission denied) — add the roost user to the docker group or set integrations.docker.url"}
    ]
    plain = copy.deepcopy(samples.SUMMARY) | {"id": "nplain", "name": "plain", "local": False}
    plain_detail = samples.node_detail(plain)
    plain_detail["node"]["integrations"] = [{"domain": "linux_host", "state": "loaded", "reason": ""}]
    hub = samples.FakeHub(nodes=[samples.SUMMARY, other, plain])
    hub.details = {samples.SUMMARY["id"]: detail, "nnas": other_detail, "nplain": plain_detail}
    return hub


@pytest.fixture
async def client(aiohttp_client, fake_hub, samples, tmp_path):
    app = web.Application()
    app[HUB_KEY] = await samples.with_hub_halves(fake_hub, tmp_path, *HUB_HALVES)
    frontend.setup(app)
    return await aiohttp_client(app)


async def fetch(client, path: str, status: int = 200) -> str:
    resp = await client.get(path)
    text = await resp.text()
    assert resp.status == status, text[:500]
    return text


class Rows(HTMLParser):
    """The data-* attributes of every container row, and every script tag."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str | None]] = []
        self.scripts: list[dict[str, str | None]] = []
        self.groups: list[str | None] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "ct-row" in (a.get("class") or ""):
            self.rows.append(a)
        if tag == "tbody" and "data-group" in a:
            self.groups.append(a["data-group"])
        if tag == "script":
            self.scripts.append(a)


def parse(html: str) -> Rows:
    rows = Rows()
    rows.feed(html)
    return rows


async def test_every_container_of_every_docker_host_is_one_row(client, samples):
    html = await fetch(client, "/containers")
    rows = parse(html).rows
    assert [(r["data-name"], r["data-host"], r["data-state"]) for r in rows] == [("bare", "atlas", "paused"), ("db", "atlas", "exited"), ("web", "atlas", "running")]
    web_row = rows[2]
    assert web_row["data-image"] == "nginx:1.25" and web_row["data-project"] == "site" and web_row["data-health"] == "healthy"
    assert web_row["data-cpu"] == "12.5" and web_row["data-mem"] == "52428800.0"
    assert web_row["data-ports"] == "8080→80/tcp, 443/tcp"  # 0.0.0.0 and :: once
    for text in ("13%", "50.0 MiB", "256 MiB", "site"):
        assert text in html
    assert f'href="/containers/{samples.SUMMARY["id"]}/web"' in html
    # A host whose docker integration cannot run is folded into one line, with why, in words.
    folded = html[html.index('id="ct-without"'):html.index("</details>")]
    assert "1 host without Docker" in folded and ">nas<" in folded and "permission denied" in folded
    assert 'class="ct-host card" data-node-id="nnas"' not in html
    # A node without the docker integration is not listed.
    assert ">plain<" not in html
    assert 'aria-current="page"' in html and 'href="/containers"' in html
    assert "exited unexpectedly" in html and "exit code 1" in html


async def test_missing_values_show_a_dash(client):
    html = await fetch(client, "/containers")
    bare = re.search(r'<tr class="ct-row"[^>]*data-name="bare".*?</tr>', html, re.S).group(0)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", bare, re.S)
    texts = [re.sub(r"<[^>]+>", "", c).strip() for c in cells]
    # pick, host, image, state, health, exit, up, cpu, memory, ports, project, actions
    assert texts[:11] == ["", "atlas", "—", "paused", "—", "—", "—", "—", "—", "—", "—"]
    assert re.findall(r'data-row-action="([^"]+)"', bare) == ["docker.container.stop", "docker.container.restart"]


async def test_exit_code_and_uptime_columns(client):
    html = await fetch(client, "/containers")
    rows = {r["data-name"]: r for r in parse(html).rows}
    assert rows["db"]["data-exit"] == "1" and rows["db"]["data-uptime"] == ""
    # Started 3 h before the sample data was made.
    assert rows["web"]["data-exit"] == "" and 10790 < float(rows["web"]["data-uptime"]) < 10810 + time.time() - NOW
    web = re.search(r'<tr class="ct-row"[^>]*data-name="web".*?</tr>', html, re.S).group(0)
    assert re.search(r">3 h( \d+ min)?<", web)  # more on a slow run: the sample data was made at import
    db = re.search(r'<tr class="ct-row"[^>]*data-name="db".*?</tr>', html, re.S).group(0)
    assert '<span class="tone-bad-text">1</span>' in db
    # Each row offers what its state allows; the whole table can be ticked for a bulk action.
    assert re.findall(r'data-row-action="([^"]+)"', db) == ["docker.container.start", "docker.container.restart"]
    assert rows["web"]["data-actions"].split() == ["docker.container.stop", "docker.container.restart", "docker.container.pause"]
    assert 'id="ct-pick-all"' in html and html.count('class="ct-pick-row"') == 3
    assert 'data-bulk-action="docker.container.restart"' in html and 'id="ct-confirm"' in html


async def test_grouping_by_compose_project(client):
    html = await fetch(client, "/containers?group=project")
    parsed = parse(html)
    assert parsed.groups == ["site", ""]
    assert "Not in a compose project" in html and "2 containers, 1 running" in html


async def test_the_table_fragment_is_the_same_markup(client):
    fragment = await fetch(client, "/containers?fragment=containers")
    assert "<html" not in fragment and 'data-name="web"' in fragment
    await fetch(client, "/containers?fragment=nope", status=404)


async def test_the_container_page_shows_everything_masked_values_marked(client, samples):
    node_id = samples.SUMMARY["id"]
    html = await fetch(client, f"/containers/{node_id}/web")
    for text in (
        "nginx:1.25", "Up 3 hours (healthy)", "unless-stopped", "172.18.0.2", "site_default", "/etc/nginx", "read-only", "read-write",
        "site_data", "DB_PASSWORD", "********", "masked", "daemon off;", "/docker-entrypoint.sh", "com.docker.compose.project",
        "8080", "443", "50.0 MiB of 256 MiB", "healthy", "Logs", "docker.container.logs",
    ):
        assert text in html, text
    assert 'data-action="docker.container.restart"' in html and 'data-action="docker.container.remove"' not in html
    # The chart spec names the per-container series.
    assert "docker.cpu_percent[web]" in html and "docker.mem_used_bytes[web]" in html
    by_id = await fetch(client, f"/containers/{node_id}/{'a1' * 6}")
    assert "nginx:1.25" in by_id
    fragment = await fetch(client, f"/containers/{node_id}/web?fragment=detail")
    assert "<html" not in fragment and 'class="ct-detail"' in fragment


async def test_a_sparse_container_renders_with_dashes(client, samples):
    html = await fetch(client, f"/containers/{samples.SUMMARY['id']}/bare")
    assert "No ports." in html and "No mounts." in html and "Not reported" in html
    assert html.count("—") > 15


async def test_unknown_containers_and_nodes_are_404(client, samples):
    html = await fetch(client, f"/containers/{samples.SUMMARY['id']}/ghost", status=404)
    assert "no container named" in html
    html = await fetch(client, "/containers/nope/web", status=404)
    assert "no node with id" in html


async def test_hub_data_is_escaped(client, fake_hub, samples):
    state = fake_hub.details[samples.SUMMARY["id"]]["state"]["docker"]
    state["containers"].append(web_container(name=EVIL, image=EVIL, image_name=EVIL, status=EVIL, labels={EVIL: EVIL}, compose_project=EVIL,
                                             env=[{"key": EVIL, "value": EVIL, "masked": False}], command=[EVIL]))
    state["events"].append({"type": EVIL, "container": EVIL, "at": NOW, "detail": EVIL})
    for path in ("/containers", "/containers?group=project"):
        html = await fetch(client, path)
        assert EVIL not in html and "<script>alert" not in html
    from urllib.parse import quote

    html = await fetch(client, f"/containers/{samples.SUMMARY['id']}/{quote(EVIL, safe='')}")
    assert EVIL not in html and "<script>alert" not in html and "&lt;script&gt;" in html


async def test_no_inline_script_or_style(client, samples):
    for path in ("/containers", f"/containers/{samples.SUMMARY['id']}/web"):
        html = await fetch(client, path)
        parsed = parse(html)
        for script in parsed.scripts:
            assert script.get("src") or script.get("type") == "application/json", script
        assert "style=" not in html and not re.search(r"\son[a-z]+=", html)


async def test_an_empty_hub_explains_how_containers_appear(aiohttp_client, samples, tmp_path):
    app = web.Application()
    app[HUB_KEY] = await samples.with_hub_halves(samples.FakeHub(nodes=[], details={}), tmp_path, *HUB_HALVES)
    frontend.setup(app)
    client = await aiohttp_client(app)
    html = await fetch(client, "/containers")
    assert "No host reports Docker containers yet" in html and "roost-docker-push.sh" in html


async def test_a_docker_hosts_node_page_shows_its_containers(client, fake_hub, samples):
    """The docker integration's hub half draws a panel from the node's docker state, not just the raw state."""
    html = await fetch(client, f"/nodes/{samples.SUMMARY['id']}")
    panel = html.split('data-integration="docker"', 1)[1].split("</section>", 1)[0]
    assert [m for m in re.findall(r'data-container="([^"]+)" data-state="([^"]+)"', panel)] == [("web", "running"), ("bare", "paused"), ("db", "exited")]
    assert f'href="/containers/{samples.SUMMARY["id"]}/web"' in panel
    assert "8080→80/tcp" in panel and "1 of 3 containers running" in panel
    assert "/static/integrations/docker/containers.css?v=" in html
    # The live-refreshed details carry the panel too, and a node without docker state has none.
    assert 'data-integration="docker"' in await fetch(client, f"/nodes/{samples.SUMMARY['id']}?fragment=details")
    assert 'data-integration="docker"' not in await fetch(client, "/nodes/nplain")
    state = fake_hub.details[samples.SUMMARY["id"]]["state"]["docker"]
    state["containers"].append(web_container(name=EVIL, image=EVIL, image_name=EVIL))
    html = await fetch(client, f"/nodes/{samples.SUMMARY['id']}")
    assert EVIL not in html and "<script>alert" not in html


NODE_ID = "n0a1b2c3d4e5"  # the sample node's id


async def test_search_finds_nodes_and_containers_by_every_word(client):
    html = await fetch(client, "/search?q=nginx+atlas")
    assert 'data-kind="Containers"' in html
    assert f'href="/containers/{NODE_ID}/web"' in html
    assert "nginx:1.25 on atlas · running" in html
    assert 'href="/containers/' + NODE_ID + '/db"' not in html  # postgres: not every word matches
    html = await fetch(client, "/search?q=ATLAS")
    assert f'href="/nodes/{NODE_ID}"' in html and 'data-kind="Node"' in html
    html = await fetch(client, "/search?q=nothing-like-this")
    assert "0 results" in html
    assert "Every word must appear" not in html
    assert "every word must appear" in await fetch(client, "/search")


async def test_search_writes_what_it_finds_as_text(client, fake_hub):
    detail = fake_hub.details[NODE_ID]
    detail["state"]["docker"]["containers"][0]["name"] = EVIL
    html = await fetch(client, "/search?q=nginx")
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html
    assert "%3Cscript%3E" in html  # the name is quoted into the URL path


async def test_a_failing_search_hook_leaves_out_only_its_integration(client, monkeypatch):
    import sys

    async def broken(ctx, query, limit):
        raise RuntimeError("engine state unreadable")

    # A hub half that fails: the page still answers, with the nodes, and names what is missing.
    monkeypatch.setattr(sys.modules["roost.integrations.docker.pages"], "search", broken)
    html = await fetch(client, "/search?q=atlas")
    assert f'href="/nodes/{NODE_ID}"' in html
    assert "Left out because they failed to answer: Docker" in html
    assert 'data-kind="Containers"' not in html
