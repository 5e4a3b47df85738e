"""Server-side rendering of the dashboard against hub-shaped data: content, missing values, escaping, 404s, CSP-readiness."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from html.parser import HTMLParser

import pytest
from aiohttp import web
from roost import frontend
from roost.core.hub.app import HUB_KEY

NODE_ID = "n0a1b2c3d4e5"  # the sample node's id
EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'

# The hub halves these pages come from, loaded through the real kernel.
HUB_HALVES = ("linux_host", "docker", "proxmox")


@pytest.fixture
def fake_hub(samples):
    return samples.FakeHub(hub_integrations=[copy.deepcopy(samples.INTEGRATIONS[0])])


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


class Tags(HTMLParser):
    """Every start tag with its attributes, for checks that must not depend on formatting."""

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


async def test_overview_shows_each_node_with_status_and_headline(client):
    html = await fetch(client, "/")
    assert "atlas" in html
    assert 'data-node-id="n0a1b2c3d4e5"' in html
    assert ">Online<" in html  # status in words, not only a colour
    for text in ("13%", "63%", "91%", "0.42", "1 d 2 h", "1 problem"):
        assert text in html
    assert f'href="/nodes/{NODE_ID}"' in html
    assert "this hub" in html


async def test_overview_counts_statuses(client, fake_hub, samples):
    stale = copy.deepcopy(samples.SUMMARY) | {"id": "nstale", "name": "bravo", "status": "stale", "local": False}
    offline = copy.deepcopy(samples.SUMMARY) | {"id": "noff", "name": "charlie", "status": "offline", "local": False}
    fake_hub.nodes += [offline, stale]
    html = await fetch(client, "/")
    counts = dict(re.findall(r'data-status="(\w+)" data-count="(\d+)"', html))
    assert counts == {"online": "1", "stale": "1", "offline": "1", "new": "0"}
    # Problems first: the offline node, then the stale one, then the hub's own host (one failing integration).
    assert html.index(">charlie<") < html.index(">bravo<") < html.index(">atlas<")


def _fleet(samples, n: int) -> list[dict]:
    nodes = []
    for i in range(n):
        node = copy.deepcopy(samples.SUMMARY) | {"id": f"n{i:03d}", "name": f"node-{i:03d}", "local": False,
                                                "integrations_summary": {"loaded": 1, "problems": 0}}
        nodes.append(node)
    return nodes


def _table_nodes(html: str) -> list[dict]:
    """The summaries js/overview.js draws the table from, in the order the server put them (problems first)."""
    return json.loads(re.search(r'<script type="application/json" id="overview-data">(.*?)</script>', html, re.S).group(1))["nodes"]


def _row_order(html: str) -> list[str]:
    return [n["id"] for n in _table_nodes(html)]


async def test_overview_is_a_table_past_a_handful_of_nodes_and_cards_on_request(client, fake_hub, samples):
    fake_hub.nodes = _fleet(samples, 3)
    html = await fetch(client, "/")
    assert 'class="card node-card"' in html and 'id="node-table"' not in html
    fake_hub.nodes = _fleet(samples, 12)
    html = await fetch(client, "/")
    assert 'id="node-table"' in html and 'class="card node-card"' not in html
    assert len(_row_order(html)) == 12
    assert 'class="card node-card"' in await fetch(client, "/?view=cards")
    assert 'id="node-table"' in await fetch(client, "/?view=table&fragment=nodes")
    assert _table_nodes(await fetch(client, "/?view=cards")) == []  # the cards need no copy of the data
    # Every column sorts: a button per header.
    headers = re.findall(r'<button type="button" class="sort" data-sort="([^"]+)"', html)
    assert {"rank", "name", "alerts", "problems", "version", "seen", "f-cpu_percent", "f-mem_used_percent",
            "f-disk_used_percent", "f-load_1", "f-uptime_s", "f-net_rx_bytes_per_s", "f-temperature_c",
            "f-containers_unhealthy"} <= set(headers)


async def test_overview_puts_offline_then_critical_then_warning_first(client, fake_hub, samples):
    nodes = _fleet(samples, 8)
    nodes[5]["alerts"] = {"firing": 2, "critical": 0, "warning": 2}
    nodes[6]["alerts"] = {"firing": 1, "critical": 1, "warning": 0}
    nodes[7]["status"] = "offline"
    nodes[7]["alerts"] = {"firing": 3, "critical": 3, "warning": 0}  # offline comes first whatever it fires
    nodes[2]["headline"] = dict(nodes[2]["headline"], containers_unhealthy=1)  # over its declared limit
    fake_hub.nodes = nodes
    html = await fetch(client, "/?view=table")
    order = _row_order(html)
    assert order[:4] == ["n007", "n006", "n005", "n002"], order
    assert order[4:] == ["n000", "n001", "n003", "n004"]
    table = {n["id"]: n for n in _table_nodes(html)}
    assert table["n006"]["alert_counts"] == {"firing": 1, "critical": 1, "warning": 0}
    assert table["n006"]["problems"] == 1 and table["n006"]["rank"] == 1
    assert table["n002"]["problems"] == 1 and table["n000"]["problems"] == 0
    # The problem threshold travels with the figures, so the browser ranks live updates the same way.
    figures = {f["key"]: f for f in json.loads(re.search(r'id="overview-data">(.*?)</script>', html, re.S).group(1))["figures"]}
    assert figures["containers_unhealthy"]["problem_above"] == 0 and figures["cpu_percent"]["problem_above"] is None


async def test_overview_counts_a_summary_without_alerts_as_none(client, fake_hub, samples):
    nodes = _fleet(samples, 7)
    for node in nodes:
        node.pop("alerts", None)
    nodes[1]["alerts"] = {"firing": "many", "critical": None}  # nonsense counts are none, not a crash
    fake_hub.nodes = nodes
    html = await fetch(client, "/")
    assert [n["alert_counts"] for n in _table_nodes(html)] == [{"firing": 0, "critical": 0, "warning": 0}] * 7
    assert _row_order(html) == [f"n{i:03d}" for i in range(7)]


async def test_the_table_data_is_escaped_inside_its_script_block(client, fake_hub, samples):
    nodes = _fleet(samples, 7)
    nodes[0]["name"] = "</script><script>alert(1)</script>"
    fake_hub.nodes = nodes
    html = await fetch(client, "/")
    assert "</script><script>alert(1)" not in html
    assert _table_nodes(html)[0]["name"] == "</script><script>alert(1)</script>"


async def test_overview_without_nodes_explains_what_to_do(client, fake_hub):
    fake_hub.nodes = []
    html = await fetch(client, "/")
    assert "No nodes yet" in html


async def test_node_page_shows_facts_disks_network_processes_services(client):
    html = await fetch(client, f"/nodes/{NODE_ID}")
    for text in (
        "AMD Ryzen 7 5700G",
        "Debian GNU/Linux",
        "6.1.0-18-amd64",
        "31.3 GiB",  # mem_total_bytes
        "/dev/nvme0n1p2",
        "424 GiB",  # used on /
        "/srv",
        "192.168.1.10",
        "122 KiB/s",  # eth0 receive
        "1 Gb/s",
        "postgres",
        "java -Xmx4G -jar server.jar",
        "4.0 GiB",
        "ssh.service",
        "1 failed",
        "Setup error",
        "permission denied",
        "host.metrics.read",
        "reporting every 2.5 s",
    ):
        assert text in html, text
    # A failed unit is listed before the healthy ones.
    assert html.index("backup.service") < html.index("ssh.service")
    for r in ("1h", "24h", "7d", "30d"):
        assert f'data-range="{r}"' in html


async def test_node_page_passes_data_to_script_as_json_block(client):
    html = await fetch(client, f"/nodes/{NODE_ID}?range=7d")
    match = re.search(r'<script type="application/json" id="node-data">(.*?)</script>', html, re.S)
    assert match
    data = json.loads(match.group(1))
    assert data["id"] == NODE_ID
    assert data["range"] == "7d"
    assert data["fields"]["linux_host.cpu_percent"]["unit"] == "percent"
    assert 'data-range="7d" aria-pressed="true"' in html


async def test_node_page_ignores_an_unknown_range(client):
    html = await fetch(client, f"/nodes/{NODE_ID}?range=5y")
    assert 'data-range="1h" aria-pressed="true"' in html


async def test_node_page_with_nothing_reported_shows_dashes(client, fake_hub):
    bare = {"id": "nbare", "name": "bare", "status": "new"}
    fake_hub.nodes.append(bare)
    fake_hub.details["nbare"] = {"node": bare, "state": {}, "collected_at": None, "metrics": {}}
    html = await fetch(client, "/nodes/nbare")
    assert "—" in html
    assert "No disk data reported" in html
    assert ">New<" in html
    for leak in ("Undefined", "None", "undefined", "nan"):
        assert leak not in re.sub(r"<[^>]+>", "", html), leak


async def test_node_page_with_partial_linux_host_state(client, fake_hub, samples):
    detail = samples.node_detail()
    host = detail["state"]["linux_host"]
    del host["memory"], host["cpu"]["load"], host["network"][0]["addresses"]
    host["services"] = {"available": False, "reason": "systemd is not running (not PID 1)"}
    host["sensors"] = {"temperatures": [{"chip": "k10temp", "label": "Tctl", "current_c": 91.0, "high_c": 80.0, "critical_c": 95.0}], "fans": []}
    detail["state"]["docker"] = {"containers": [{"name": "web"}]}
    fake_hub.details[NODE_ID] = detail
    html = await fetch(client, f"/nodes/{NODE_ID}")
    assert "Not available: systemd is not running (not PID 1)" in html
    assert "91.0 °C" in html and ">high<" in html
    assert "&#34;containers&#34;" in html  # other integrations' state as escaped JSON


async def test_unknown_node_renders_a_404_page(client):
    html = await fetch(client, "/nodes/does-not-exist", status=404)
    assert "Not found" in html
    assert "does-not-exist" in html
    assert '<a href="/">' in html


async def test_integrations_page_lists_hub_and_node_states_with_reasons(client):
    html = await fetch(client, "/integrations")
    assert "Hub" in html
    assert "Linux host" in html
    assert 'data-state="loaded"' in html and ">Loaded<" in html
    assert 'data-state="setup_error"' in html and ">Setup error<" in html
    assert "cannot reach /var/run/docker.sock" in html
    assert "2 integrations" in html and "1 problem<" in html


async def test_fragments_render_only_their_part(client):
    html = await fetch(client, "/?fragment=nodes")
    assert "<html" not in html and "node-card" in html
    html = await fetch(client, f"/nodes/{NODE_ID}?fragment=details")
    assert "<html" not in html and "Disks" in html
    html = await fetch(client, "/integrations?fragment=integrations")
    assert "<html" not in html and "Linux host" in html
    await fetch(client, "/?fragment=nope", status=404)


async def test_hub_data_is_escaped_everywhere(client, fake_hub, samples):
    evil = copy.deepcopy(samples.SUMMARY) | {"id": "evil/<x>", "name": EVIL, "hostname": EVIL}
    detail = samples.node_detail(evil)
    detail["state"]["linux_host"]["processes"]["top_cpu"][0]["cmdline"] = EVIL
    detail["node"]["integrations"][1]["reason"] = EVIL
    fake_hub.nodes = [evil]
    fake_hub.details = {evil["id"]: detail}
    pages = [
        await fetch(client, "/"),
        await fetch(client, "/?fragment=nodes"),
        await fetch(client, "/nodes/evil%2F%3Cx%3E"),
        await fetch(client, "/nodes/evil%2F%3Cx%3E?fragment=details"),
        await fetch(client, "/integrations"),
        await fetch(client, "/nodes/%3Cscript%3Ealert(1)%3C%2Fscript%3E", status=404),
    ]
    for html in pages:
        assert "<script>alert" not in html
        assert "<img src=x" not in html
        tags = parse(html)
        assert not [t for t, a in tags.tags if t == "img" and a.get("src") == "x"]
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in pages[0]
    # The node id is quoted as one path segment in links.
    assert 'href="/nodes/evil%2F%3Cx%3E"' in pages[0]
    # Inside the JSON block, "<" is escaped so the data cannot close the script element.
    assert "\\u003cx\\u003e" in pages[2]


@pytest.mark.parametrize("path", ["/", f"/nodes/{NODE_ID}", "/integrations", "/nodes/nope"])
async def test_pages_need_no_inline_script_or_style(client, path):
    html = await fetch(client, path, status=404 if path == "/nodes/nope" else 200)
    tags = parse(html)
    for tag, attrs in tags.tags:
        assert "style" not in attrs, (tag, attrs)
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        assert tag != "style"
        if tag == "script":
            assert attrs.get("src") or attrs.get("type") == "application/json", attrs
    assert all(body.lstrip().startswith("{") for body in tags.script_bodies)


async def test_static_assets_are_served_with_content_hashes(client):
    html = await fetch(client, f"/nodes/{NODE_ID}")
    urls = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    assert any("uPlot.iife.min.js" in u for u in urls)
    assert any("js/node.js" in u for u in urls)
    for url in urls:
        assert re.search(r"\?v=[0-9a-f]{12}$", url), url
        resp = await client.get(url)
        assert resp.status == 200, url
        assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    resp = await client.get("/static/vendor/uplot/LICENSE")
    assert resp.status == 200
    assert "immutable" not in resp.headers.get("Cache-Control", "")


async def test_pages_are_not_cached(client):
    resp = await client.get("/")
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.content_type == "text/html"


def test_importing_the_dashboard_does_not_import_the_hub():
    code = "import sys, roost.frontend; assert 'roost.core.hub.app' not in sys.modules, 'hub imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
