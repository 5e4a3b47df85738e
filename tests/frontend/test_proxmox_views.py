"""The Proxmox pages rendered through the aiohttp test client: clusters, guests, backups, missing data, escaping, CSP."""

from __future__ import annotations

import copy
import json
import re
import time
from html.parser import HTMLParser
from typing import Any

import pytest
from aiohttp import web
from roost import frontend
from roost.core.hub.app import HUB_KEY

NOW = time.time()
PVE_NODE = "n0a1b2c3d4e5"  # the sample node of the frontend fixtures
EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'

PROXMOX_STATE: dict[str, Any] = {
    "api": {"hosts": ["pve1.lan"], "host": "pve1.lan", "port": 8006, "token_id": "roost@pve!monitor", "verify_ssl": True, "read_only": False},
    "cluster": {"standalone": False, "name": "homelab", "quorate": True, "nodes_expected": 2, "nodes_total": 2, "nodes_online": 1, "version": "8.3.0"},
    "nodes": [
        {"name": "pve1", "status": "online", "local": True, "cpu_percent": 12.5, "cpu_count": 16, "mem_total_bytes": 67107545088,
         "mem_used_bytes": 20888879104, "mem_percent": 31.1, "rootfs_percent": 16.9, "load": [0.52, 0.61, 0.58],
         "uptime_s": 1814522, "pve_version": "8.3.0", "kernel": "6.8.12-4-pve"},
        {"name": "pve2", "status": "offline"},
    ],
    "guests": [
        {"vmid": 100, "type": "qemu", "name": "web", "node": "pve1", "status": "running", "template": False, "tags": ["prod", "web"],
         "cpu_percent": 15.3, "cpu_count": 2, "mem_used_bytes": 1610612736, "mem_percent": 37.5, "mem_total_bytes": 4294967296,
         "disk_total_bytes": 34359738368, "uptime_s": 259200, "net_in_bytes_per_s": 1200.0, "net_out_bytes_per_s": 300.0,
         "backup": {"last_ok_at": NOW - 2 * 86400, "source": "storage nas", "age_days": 2.0, "in_job": True, "overdue": False,
                    "last_task": {"upid": "UPID:pve1:1:2:3:vzdump:100:root@pam:", "state": "ok", "exit_status": "OK", "started_at": NOW - 2 * 86400, "ended_at": NOW - 2 * 86400 + 38, "duration_s": 38}}},
        {"vmid": 101, "type": "qemu", "name": "db", "node": "pve1", "status": "stopped", "template": False, "tags": [],
         "mem_total_bytes": 8589934592, "lock": "backup",
         "backup": {"in_job": False, "overdue": True, "warning": "no successful backup found",
                    "last_task": {"state": "error", "exit_status": "No space left on device", "started_at": NOW - 3600}}},
        {"vmid": 102, "type": "qemu", "name": "build", "node": "pve2", "status": "unknown", "template": False, "tags": [], "ha_state": "started",
         "backup": {"overdue": True, "warning": "no successful backup in 10 days", "last_ok_at": NOW - 10 * 86400}},
        {"vmid": 200, "type": "lxc", "name": "dns", "node": "pve1", "status": "running", "template": False, "tags": [],
         "cpu_percent": 0.5, "mem_used_bytes": 134217728, "mem_total_bytes": 536870912, "mem_percent": 25.0, "backup": {"overdue": False, "last_ok_at": NOW - 86400}},
        {"vmid": 9000, "type": "qemu", "name": "debian-template", "node": "pve1", "status": "stopped", "template": True, "tags": [],
         "backup": {"excluded": True, "overdue": False}},
    ],
    "storages": [
        {"id": "nas", "storage": "nas", "node": None, "shared": True, "type": "nfs", "content": ["backup", "iso"], "active": True,
         "total_bytes": 4398046511104, "used_bytes": 3820000000, "percent": 0.1},
        {"id": "pve1/local-lvm", "storage": "local-lvm", "node": "pve1", "shared": False, "type": "lvmthin", "content": ["images", "rootdir"],
         "active": True, "total_bytes": 107374182400, "used_bytes": 96636764160, "percent": 90.0},
        {"id": "pve2/local", "storage": "local", "node": "pve2", "shared": False, "type": "dir", "content": ["backup"], "active": False},
    ],
    "tasks": [
        {"upid": "UPID:pve1:A:B:C:qmstart:100:roost@pve!ops:", "node": "pve1", "type": "qmstart", "id": "100", "user": "roost@pve!ops",
         "state": "ok", "exit_status": "OK", "started_at": NOW - 600, "ended_at": NOW - 598, "duration_s": 2},
    ],
    "backups": {
        "warn_days": 7.0, "overdue": 2, "refreshed_at": NOW - 60,
        "jobs": [{"id": "backup-6f2b1c9a-8e11", "enabled": True, "schedule": "02:00", "storage": "nas", "mode": "snapshot", "vmids": [100, 200], "next_run_at": NOW + 3600},
                 {"id": "backup-weekly", "enabled": False, "schedule": "sun 03:00", "storage": "nas", "all": True, "exclude": [9000], "comment": "weekly"}],
        "tasks": [{"upid": "UPID:pve1:D:E:F:vzdump:101:root@pam:", "node": "pve1", "type": "vzdump", "id": "101", "state": "error",
                   "exit_status": "No space left on device", "started_at": NOW - 3600, "ended_at": NOW - 3500, "duration_s": 100}],
    },
    "pbs": {"host": "pbs.lan", "port": 8007, "datastores": [
        {"store": "store1", "total_bytes": 3936501481472, "used_bytes": 2155921203200, "percent": 54.8, "groups": 3, "last_backup_at": NOW - 7200, "estimated_full_at": NOW + 90 * 86400},
        {"store": "offsite", "error": "unable to open chunk store 'offsite'"},
    ]},
    "problems": [{"scope": "node pve2", "severity": "warn", "kind": "", "message": "node pve2 is offline; its guests show as unknown"}],
    "partial": False,
}

PROXMOX_STATUS = {"domain": "proxmox", "name": "Proxmox VE", "version": "0.1.0", "source": "builtin", "state": "loaded", "reason": "", "since": NOW - 600}

# The hub halves these pages come from, loaded through the real kernel.
HUB_HALVES = ("linux_host", "proxmox")


def proxmox_detail(samples, state: Any = None, status: dict[str, Any] | None = None, summary: dict[str, Any] | None = None) -> dict[str, Any]:
    detail = samples.node_detail(summary)
    detail["node"]["integrations"].append(copy.deepcopy(status or PROXMOX_STATUS))
    if state is not None:
        detail["state"]["proxmox"] = copy.deepcopy(state)
    return detail


@pytest.fixture
def fake_hub(samples):
    hub = samples.FakeHub()
    hub.details = {PVE_NODE: proxmox_detail(samples, PROXMOX_STATE)}
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
    assert resp.status == status, text[:800]
    return text


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_bodies: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.script_bodies.append(data)


def parse(html: str) -> Tags:
    tags = Tags()
    tags.feed(html)
    return tags


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# -------------------------------------------------------------------- pages


async def test_proxmox_page_shows_cluster_nodes_guests_storage_and_backups(client):
    html = await fetch(client, "/proxmox")
    text = text_of(html)
    assert "Cluster homelab" in text and 'data-quorum="yes"' in html and "Quorate" in text
    assert 'href="/nodes/n0a1b2c3d4e5"' in html  # the Roost node that reads it
    assert "Proxmox VE 8.3.0" in text and "1 of 2" in text
    # Nodes, in status order, with words for each status.
    assert 'data-pve-node="pve1"' in html and 'data-pve-status="offline"' in html and "Offline" in text
    # Guests grouped under their node, linked to their page.
    assert "Guests on pve1" in text and "Guests on pve2" in text
    assert 'href="/proxmox/n0a1b2c3d4e5/guests/100"' in html
    assert 'data-guest-status="running"' in html and 'data-guest-status="unknown"' in html
    assert "locked (backup)" in text and "HA started" in text and "template" in text
    # Storage with its share and an inactive one said in words.
    assert 'data-storage="nas"' in html and "shared" in text and "Inactive" in text
    assert re.search(r'<meter[^>]*value="90.0"', html)
    # Backup warnings per guest.
    assert 'data-overdue="101"' in html and "no successful backup found" in text
    assert "no successful backup in 10 days" in text and "(warning after 7 days)" in text
    assert 'data-job="backup-6f2b1c9a-8e11"' in html and "100, 200" in text and "all except 9000" in text and "Disabled" in text
    assert "No space left on device" in text and 'data-task-state="error"' in html
    # PBS and tasks.
    assert "Proxmox Backup Server pbs.lan" in text and 'data-datastore="store1"' in html and "unable to open chunk store" in text
    assert 'data-task-type="qmstart"' in html
    assert "node pve2 is offline" in text
    assert '<a href="/proxmox" aria-current="page">Proxmox</a>' in html


async def test_without_a_proxmox_node_the_page_says_how_to_add_one(client, fake_hub, samples):
    fake_hub.details = {PVE_NODE: samples.node_detail()}
    text = text_of(await fetch(client, "/proxmox"))
    assert "No Proxmox cluster reports to this hub yet" in text and "token_id" in text and "PVEAuditor" in text


async def test_a_node_whose_integration_is_not_available_is_not_listed(client, fake_hub, samples):
    status = {**PROXMOX_STATUS, "state": "not_available", "reason": "not configured"}
    fake_hub.details = {PVE_NODE: proxmox_detail(samples, None, status)}
    assert "No Proxmox cluster reports" in await fetch(client, "/proxmox")


async def test_a_failing_integration_shows_its_reason_and_no_data(client, fake_hub, samples):
    reason = "Proxmox: pve1.lan:8006 refused the API token roost@pve!monitor (401 authentication failure) — it may have expired"
    status = {**PROXMOX_STATUS, "state": "collect_error", "reason": reason}
    fake_hub.details = {PVE_NODE: proxmox_detail(samples, None, status)}
    html = await fetch(client, "/proxmox")
    assert "No Proxmox data from this node yet" in html
    assert "refused the API token roost@pve!monitor" in html and "Collect error" in html


async def test_lost_quorum_and_partial_snapshots_are_shown(client, fake_hub, samples):
    state = copy.deepcopy(PROXMOX_STATE)
    state["cluster"]["quorate"] = False
    state["partial"] = True
    state["problems"].insert(0, {"scope": "cluster", "severity": "bad", "kind": "quorum", "message": "the cluster has lost quorum: /etc/pve is read-only"})
    fake_hub.details = {PVE_NODE: proxmox_detail(samples, state)}
    html = await fetch(client, "/proxmox")
    assert 'data-quorum="no"' in html and "No quorum" in html
    assert re.search(r'class="notice tone-bad" data-problem="quorum"><strong>cluster:</strong> the cluster has lost quorum', html)


async def test_missing_and_odd_values_render_as_dashes(client, fake_hub, samples):
    state = {"cluster": {}, "nodes": [{"name": "pve1"}, "junk"], "guests": [{"vmid": 100}, {"vmid": "x"}, None],
             "storages": [{}], "tasks": [{}], "backups": {"jobs": [{}], "tasks": "nope"}, "problems": [{}]}
    fake_hub.details = {PVE_NODE: proxmox_detail(samples, state)}
    html = await fetch(client, "/proxmox")
    assert "Quorum unknown" in html and "Proxmox node pve1" in html, text_of(html)[:3000]
    assert "—" in html and "None" not in text_of(html) and "Undefined" not in html
    # A guest missing everything still gets its own page.
    guest = await fetch(client, f"/proxmox/{PVE_NODE}/guests/100")
    assert "guest 100" in guest and "—" in guest


async def test_guest_page_shows_facts_backup_tasks_and_chart_series(client):
    html = await fetch(client, f"/proxmox/{PVE_NODE}/guests/101")
    text = text_of(html)
    assert "VM 101 · db" in text and "Virtual machine (QEMU)" in text
    assert "no successful backup found" in text and "no job covers it" in text
    assert "No space left on device" in text
    assert '<a href="/proxmox">Proxmox</a>' in html and "Cluster homelab" in text
    page = json.loads(parse(html).script_bodies[0])
    assert page["id"] == PVE_NODE and page["vmid"] == 101 and page["range"] == "1h"
    names = [s["name"] for c in page["charts"] for s in c["series"]]
    assert "proxmox.guest_cpu_percent[101]" in names and "proxmox.guest_net_in_bytes_per_s[101]" in names
    assert len(names) <= 20  # one request to the metrics API
    web_html = await fetch(client, f"/proxmox/{PVE_NODE}/guests/100?range=7d")
    assert "in 1.2 KiB/s · out 300 B/s" in text_of(web_html)
    assert json.loads(parse(web_html).script_bodies[0])["range"] == "7d"
    assert 'data-task-type="qmstart"' in web_html
    ct = text_of(await fetch(client, f"/proxmox/{PVE_NODE}/guests/200"))
    assert "Container (LXC)" in ct


@pytest.mark.parametrize("path", [f"/proxmox/{PVE_NODE}/guests/555", f"/proxmox/{PVE_NODE}/guests/abc", "/proxmox/nope/guests/100"])
async def test_unknown_guests_and_nodes_are_404_pages(client, path):
    html = await fetch(client, path, status=404)
    assert "Not found" in html and 'href="/proxmox"' in html


async def test_fragments_render_only_their_part(client):
    clusters = await fetch(client, "/proxmox?fragment=clusters")
    assert "<html" not in clusters and "Cluster homelab" in clusters
    guest = await fetch(client, f"/proxmox/{PVE_NODE}/guests/100?fragment=guest")
    assert "<html" not in guest and "History" not in guest and "storage nas" in guest
    await fetch(client, "/proxmox?fragment=nope", status=404)


async def test_hub_data_is_escaped_everywhere(client, fake_hub, samples):
    state = copy.deepcopy(PROXMOX_STATE)
    state["cluster"]["name"] = EVIL
    state["nodes"][0]["name"] = EVIL
    state["guests"][0].update(name=EVIL, tags=[EVIL], lock=EVIL, node=EVIL)
    state["guests"][0]["backup"]["source"] = EVIL
    state["storages"][0].update(storage=EVIL, content=[EVIL])
    state["tasks"][0].update(type=EVIL, user=EVIL, state="error", exit_status=EVIL)
    state["problems"][0].update(scope=EVIL, message=EVIL)
    state["backups"]["jobs"][0].update(comment=EVIL, schedule=EVIL)
    state["pbs"]["datastores"][1]["error"] = EVIL
    state["pbs"]["error"] = EVIL
    summary = copy.deepcopy(samples.SUMMARY) | {"id": "evil/<x>", "name": EVIL}
    fake_hub.details = {summary["id"]: proxmox_detail(samples, state, summary=summary)}
    pages = [
        await fetch(client, "/proxmox"),
        await fetch(client, "/proxmox?fragment=clusters"),
        await fetch(client, "/proxmox/evil%2F%3Cx%3E/guests/100"),
        await fetch(client, "/proxmox/evil%2F%3Cx%3E/guests/100?fragment=guest"),
        await fetch(client, "/proxmox/%3Cscript%3E/guests/1", status=404),
    ]
    for html in pages:
        assert "<script>alert" not in html and "<img src=x" not in html
        assert not [t for t, a in parse(html).tags if t == "img" and a.get("src") == "x"]
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in pages[0]
    assert 'href="/proxmox/evil%2F%3Cx%3E/guests/100"' in pages[0]
    assert "\\u003cx\\u003e" in pages[2]  # the id inside the JSON block cannot close the script element


@pytest.mark.parametrize("path", ["/proxmox", f"/proxmox/{PVE_NODE}/guests/100", f"/proxmox/{PVE_NODE}/guests/555"])
async def test_pages_need_no_inline_script_or_style(client, path):
    html = await fetch(client, path, status=404 if path.endswith("555") else 200)
    tags = parse(html)
    for tag, attrs in tags.tags:
        assert "style" not in attrs, (tag, attrs)
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        assert tag != "style"
        if tag == "script":
            assert attrs.get("src") or attrs.get("type") == "application/json", attrs
    assert all(body.lstrip().startswith("{") for body in tags.script_bodies)


async def test_static_assets_of_the_pages_are_served(client):
    html = await fetch(client, f"/proxmox/{PVE_NODE}/guests/100")
    urls = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    assert any("js/proxmox.js" in u for u in urls) and any("proxmox.css" in u for u in urls) and any("uPlot.iife" in u for u in urls)
    for url in urls:
        assert re.search(r"\?v=[0-9a-f]{12}$", url), url
        assert (await client.get(url)).status == 200, url


async def test_renders_what_the_real_collector_reports(client, fake_hub, samples, fakepve, fakepve_cafile):
    """The collector's output through the real proxmoxer against fakepve, rendered without surprises."""
    from roost.integrations.proxmox import CONFIG_SCHEMA
    from roost.integrations.proxmox.client import settings_from_config
    from roost.integrations.proxmox.collector import Collector

    fakepve.apitokens["roost@pve!monitor"] = "s3cret"
    fakepve.add_vm(100, "web", status="running", config={"tags": "prod"})
    fakepve.add_ct(200, "dns", status="stopped")
    host, port = fakepve.url.removeprefix("https://").rsplit(":", 1)
    config = CONFIG_SCHEMA({"host": host, "port": int(port), "token_id": "roost@pve!monitor", "token_secret": "s3cret", "ca_file": fakepve_cafile})
    collector = Collector(config, settings_from_config(config))
    collector.start()
    state = collector.collect()["state"]
    collector.close()
    fake_hub.details = {PVE_NODE: proxmox_detail(samples, state)}
    html = await fetch(client, "/proxmox")
    assert "Cluster fakecluster" in text_of(html) and 'data-vmid="100"' in html and 'data-vmid="200"' in html
    assert "s3cret" not in html
    assert "web" in await fetch(client, f"/proxmox/{PVE_NODE}/guests/100")


async def test_a_proxmox_nodes_page_shows_its_guests(client):
    """The proxmox integration's hub half draws the node's guests on its node page."""
    html = await fetch(client, f"/nodes/{PVE_NODE}")
    panel = html.split('data-integration="proxmox"', 1)[1].split("</section>", 1)[0]
    assert "Cluster homelab" in panel
    vmids = re.findall(r'<tr data-vmid="(\d+)"', panel)
    # Running guests first, then by id.
    assert sorted(vmids) == sorted(str(g["vmid"]) for g in PROXMOX_STATE["guests"]) and vmids[0] == "100"
    running = [str(g["vmid"]) for g in PROXMOX_STATE["guests"] if g.get("status") == "running"]
    assert vmids[: len(running)] == sorted(running, key=int)
    assert f'href="/proxmox/{PVE_NODE}/guests/100"' in panel
    assert "/static/integrations/proxmox/proxmox.css?v=" in html


async def test_search_finds_guests_by_name_vmid_or_tag(client):
    html = await fetch(client, "/search?q=prod")
    assert 'data-kind="Guests"' in html
    assert f'href="/proxmox/{PVE_NODE}/guests/100"' in html and "web (100)" in html
    assert "/guests/101" not in html
    assert f'href="/proxmox/{PVE_NODE}/guests/200"' in await fetch(client, "/search?q=200")

