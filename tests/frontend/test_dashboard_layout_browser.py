"""The dashboard's layout in real Chromium: every page at 390 px and 1440 px, the overview table with 500 nodes, charts that
zoom together, the node page's section menu, the theme toggle. Screenshots of every page at both widths land in
$ROOST_TEST_ARTEFACTS/screenshots (default test-artefacts/ in the repository) for a reviewer to look at."""

from __future__ import annotations

import asyncio
import copy
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from frontend_support import serve_in_thread

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
ARTEFACTS = Path(os.environ.get("ROOST_TEST_ARTEFACTS") or REPO / "test-artefacts") / "screenshots"
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1440, "height": 900}}
FLEET_SIZE = 500
MIN_TOUCH = 40


def shot(page: Any, name: str, full_page: bool = True) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=full_page)


def slug(path: str) -> str:
    if path.startswith("/nodes/"):
        return "node"
    return re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "overview"


# ----------------------------------------------------------------------------------------------------------------------
# Every page the nav lists, on the real hub.


def nav_pages(tab: Any, node_id: str) -> list[str]:
    """Every page the top bar links to (new integrations' pages included), the user menu's and a node page."""
    tab.goto("/")
    tab.page.locator("main h1").wait_for()
    hrefs = tab.page.evaluate(
        "() => Array.from(document.querySelectorAll('.topbar a[href^=\"/\"]')).map(a => a.getAttribute('href'))"
    )
    pages = []
    for href in [*hrefs, f"/nodes/{node_id}"]:
        if href not in pages:
            pages.append(href)
    return pages


def overlaps(a: dict[str, float], b: dict[str, float]) -> bool:
    return a["x"] < b["x"] + b["width"] - 0.5 and b["x"] < a["x"] + a["width"] - 0.5 and \
        a["y"] < b["y"] + b["height"] - 0.5 and b["y"] < a["y"] + a["height"] - 0.5


TOPBAR_BOXES = """() => {
  const items = [...document.querySelectorAll('.topbar-inner > :not(.nav):not(.user-menu), .nav > a, .user-menu > *')];
  return items.filter(el => { const s = getComputedStyle(el); const r = el.getBoundingClientRect();
      return s.display !== 'none' && s.visibility !== 'hidden' && r.width > 0 && r.height > 0; })
    .map(el => { const r = el.getBoundingClientRect();
      return {name: (el.id || el.className || el.tagName) + ':' + el.textContent.trim().slice(0, 20),
              parent: el.parentElement.className, x: r.x, y: r.y, width: r.width, height: r.height}; });
}"""

SMALL_TARGETS = """(min) => {
  const sel = 'button, input:not([type=hidden]):not([type=checkbox]):not([type=radio]), select, .topbar a, .section-menu a, .nav a, .button';
  return [...document.querySelectorAll(sel)].filter(el => {
      const s = getComputedStyle(el); const r = el.getBoundingClientRect();
      return s.display !== 'none' && s.visibility !== 'hidden' && r.width > 0 && r.height > 0 && !el.closest('.visually-hidden, .u-legend, [hidden]')
        && r.height < min - 0.5;
    }).map(el => el.tagName + '.' + el.className + ' "' + el.textContent.trim().slice(0, 30) + '" ' + Math.round(el.getBoundingClientRect().height) + 'px');
}"""


def settle(tab: Any, path: str) -> None:
    tab.goto(path)
    tab.page.locator("main h1, main h2").first.wait_for()
    tab.page.locator("#live-status:not([hidden])").wait_for()
    if path.startswith("/nodes/"):
        tab.page.wait_for_function("() => document.querySelector('figure[data-chart=\"cpu\"][data-points]')", timeout=30_000)


def test_every_page_fits_a_phone_with_a_menu_button_and_big_touch_targets(new_tab, live_hub):
    tab = new_tab(**PHONE)
    pages = nav_pages(tab, live_hub.node_id)
    assert {"/", "/integrations", "/jobs", f"/nodes/{live_hub.node_id}"} <= set(pages), pages
    for path in pages:
        settle(tab, path)
        widths = tab.page.evaluate(
            "() => ({doc: document.documentElement.scrollWidth, body: document.body.scrollWidth, view: document.documentElement.clientWidth})"
        )
        assert widths["view"] == 390
        assert widths["doc"] <= 390 and widths["body"] <= 390, (path, widths)
        # The menu folds behind its button, and opens over the page when pressed.
        toggle = tab.page.locator("#menu-toggle")
        assert toggle.is_visible(), path
        assert not tab.page.locator("#main-nav").is_visible(), path
        small = tab.page.evaluate(SMALL_TARGETS, MIN_TOUCH)
        assert not small, (path, small)
        shot(tab.page, f"phone-{slug(path)}")
        toggle.click()
        assert toggle.get_attribute("aria-expanded") == "true"
        tab.page.locator("#main-nav").wait_for(state="visible")
        assert tab.page.evaluate("document.documentElement.scrollWidth") <= 390, path
        assert not tab.page.evaluate(SMALL_TARGETS, MIN_TOUCH), path
        toggle.click()
        assert not tab.page.locator("#main-nav").is_visible()
    tab.assert_no_errors()


def test_no_two_top_bar_items_overlap_at_desktop_width(new_tab, live_hub):
    tab = new_tab(**DESKTOP)
    pages = nav_pages(tab, live_hub.node_id)
    for path in pages:
        settle(tab, path)
        assert not tab.page.locator("#menu-toggle").is_visible(), "1440 px has room for the whole menu"
        boxes = tab.page.evaluate(TOPBAR_BOXES)
        names = [b["name"] for b in boxes]
        assert any(n.startswith("live-status") for n in names), (path, names)  # the Live indicator on every page
        assert any(n.startswith("global-search") or "search" in n for n in names), (path, names)
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert not overlaps(a, b), (path, a, b)
        assert tab.page.evaluate("document.documentElement.scrollWidth") <= 1440, path
        shot(tab.page, f"desktop-{slug(path)}")
    tab.assert_no_errors()


# ----------------------------------------------------------------------------------------------------------------------
# Charts on the real hub's node page.


def wait_for_points(page: Any, key: str = "cpu", at_least: int = 2) -> None:
    page.wait_for_function(
        "([key, n]) => { const f = document.querySelector(`figure[data-chart='${key}']`);"
        " return f && Number(f.dataset.points) >= n && !f.hasAttribute('data-loading') && f.dataset.xMin; }",
        arg=[key, at_least],
        timeout=40_000,
    )


def x_window(page: Any, key: str) -> tuple[float, float]:
    fig = page.locator(f'figure[data-chart="{key}"]')
    return float(fig.get_attribute("data-x-min")), float(fig.get_attribute("data-x-max"))


def test_short_history_fills_the_chart_and_the_legend_shows_the_latest_value(new_tab, live_hub):
    tab = new_tab(**DESKTOP)
    tab.goto(f"/nodes/{live_hub.node_id}?range=30d")
    wait_for_points(tab.page, "cpu")
    start, end = x_window(tab.page, "cpu")
    # The hub is minutes old: the chart spans its history, not 30 days with a dot at the right edge.
    assert end - start < 3600, (start, end)
    assert float(tab.page.get_attribute("#charts", "data-window-start")) > time.time() - 3600
    assert tab.page.get_attribute("#charts", "data-resolution") == "raw"  # every sample of a short history, not one hourly dot
    legend = tab.page.locator('figure[data-chart="cpu"] .u-legend .u-series:nth-child(2) .u-value')
    tab.page.mouse.move(0, 0)
    text = legend.inner_text()
    assert re.fullmatch(r"\d+(\.\d)?%", text), text
    tab.assert_no_errors()


def test_every_range_from_five_minutes_to_thirty_days_is_offered(tab, live_hub):
    tab.goto(f"/nodes/{live_hub.node_id}")
    wait_for_points(tab.page, "cpu", 1)
    ranges = tab.page.eval_on_selector_all("button.range[data-range]", "els => els.map(e => e.dataset.range)")
    assert ranges == ["5m", "15m", "1h", "6h", "24h", "7d", "30d"]
    with tab.page.expect_response(lambda r: "/metrics?" in r.url and "range=5m" in r.url) as response:
        tab.page.locator('button.range[data-range="5m"]').click()
    assert response.value.status == 200
    tab.page.locator('figure[data-chart="cpu"][data-range="5m"]').wait_for()
    tab.assert_no_errors()


def test_dragging_zooms_every_chart_and_double_click_resets(new_tab, live_hub):
    tab = new_tab(**DESKTOP)
    tab.goto(f"/nodes/{live_hub.node_id}?range=5m")
    wait_for_points(tab.page, "cpu", 4)
    wait_for_points(tab.page, "memory", 4)
    tab.page.mouse.move(0, 0)
    shot(tab.page, "readme-node", full_page=False)  # the README's picture of a node page
    before_cpu = x_window(tab.page, "cpu")
    over = tab.page.locator('figure[data-chart="cpu"] .u-over')
    box = over.bounding_box()
    y = box["y"] + box["height"] / 2
    tab.page.mouse.move(box["x"] + box["width"] * 0.3, y)
    # The crosshair is shared: the memory chart's cursor follows the pointer over the CPU chart.
    tab.page.wait_for_function(
        "() => { const c = document.querySelector(\"figure[data-chart='memory'] .u-cursor-x\");"
        " return c && getComputedStyle(c).display !== 'none' && /translate/.test(c.style.transform || '') && !/-10px/.test(c.style.transform); }"
    )
    tab.page.mouse.down()
    tab.page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=5)
    tab.page.mouse.move(box["x"] + box["width"] * 0.7, y, steps=5)
    tab.page.mouse.up()
    tab.page.wait_for_function("() => document.getElementById('charts').dataset.zoom")
    zoomed_cpu = x_window(tab.page, "cpu")
    zoomed_mem = x_window(tab.page, "memory")
    assert zoomed_cpu[1] - zoomed_cpu[0] < (before_cpu[1] - before_cpu[0]) * 0.6, (before_cpu, zoomed_cpu)
    assert zoomed_cpu[0] > before_cpu[0]
    assert zoomed_mem == pytest.approx(zoomed_cpu, abs=1)  # every chart of the page zooms together
    assert tab.page.locator("#chart-zoom-reset").is_visible()
    over.dblclick()
    tab.page.wait_for_function("() => !document.getElementById('charts').dataset.zoom")
    reset = x_window(tab.page, "cpu")
    assert reset[1] - reset[0] > (zoomed_cpu[1] - zoomed_cpu[0]) * 1.5
    assert not tab.page.locator("#chart-zoom-reset").is_visible()
    tab.assert_no_errors()


def test_node_page_has_a_sticky_menu_of_its_sections(tab, live_hub):
    tab.goto(f"/nodes/{live_hub.node_id}")
    menu = tab.page.locator("#section-menu")
    menu.locator("a").first.wait_for()
    links = menu.locator("a").all_inner_texts()
    for name in ("Overview", "Charts", "Storage", "Network", "Processes", "Services", "Integrations", "Actions", "Grants"):
        assert name in links, links
    menu.get_by_role("link", name="Services", exact=True).click()
    tab.page.wait_for_function("() => location.hash === '#section-services'")
    tab.page.wait_for_function("() => { const r = document.querySelector('[data-section=\"services\"]').getBoundingClientRect(); return r.top < 200; }")
    # Still on screen after scrolling: the menu sticks.
    assert menu.bounding_box()["y"] >= 0 and menu.is_visible()
    tab.page.wait_for_function(
        "() => document.querySelector('#section-menu a[aria-current=\"true\"]')?.textContent === 'Services'"
    )
    # A section an integration adds later (a refreshed fragment with a new panel) gets its own entry.
    tab.page.evaluate(
        "() => { const s = document.createElement('section'); s.dataset.section = 'panel-test'; s.dataset.sectionTitle = 'Test panel';"
        " document.getElementById('details').appendChild(s); document.dispatchEvent(new CustomEvent('roost:fragment', {detail: {name: 'details'}})); }"
    )
    menu.get_by_role("link", name="Test panel", exact=True).wait_for()
    tab.assert_no_errors()


def test_theme_toggle_overrides_the_system_setting_and_is_remembered(new_tab, live_hub):
    tab = new_tab(color_scheme="dark")
    tab.goto("/")
    background = "() => getComputedStyle(document.body).backgroundColor"
    dark = tab.page.evaluate(background)
    toggle = tab.page.locator("#theme-toggle")
    toggle.click()
    assert tab.page.get_attribute("html", "data-theme") == "light"
    light = tab.page.evaluate(background)
    assert light != dark
    tab.page.reload()
    assert tab.page.get_attribute("html", "data-theme") == "light"
    assert tab.page.evaluate(background) == light
    toggle.click()
    assert tab.page.get_attribute("html", "data-theme") == "dark"
    toggle.click()
    assert tab.page.get_attribute("html", "data-theme") is None  # back to following the system
    assert tab.page.evaluate(background) == dark
    tab.assert_no_errors()


# ----------------------------------------------------------------------------------------------------------------------
# The overview with 500 nodes: hub-shaped summaries a test controls (alerts among them), history in a real SQLite store.


class FleetHub:
    """The calls the overview, the node list API, the metrics API and the live stream make, over a fleet of summaries."""

    def __init__(self, nodes: list[dict[str, Any]], store: Any) -> None:
        from roost.core.hub.events import EventBus

        self.nodes = nodes
        self.by_id = {n["id"]: n for n in nodes}
        self.store = store
        self.events = EventBus()
        self.pairing = self  # no agent asks to pair: the menu's badge stays empty
        self.loop: asyncio.AbstractEventLoop | None = None

    async def pending(self) -> list[dict[str, Any]]:
        return []

    def node(self, node_id: str) -> Any:
        return self.by_id.get(node_id)

    async def nodes_summary(self) -> dict[str, Any]:
        return {"nodes": copy.deepcopy(self.nodes)}

    async def node_detail(self, node_id: str) -> dict[str, Any] | None:
        return None

    async def integrations_overview(self) -> dict[str, Any]:
        return {"hub": [], "nodes": {}}

    def publish(self, summary: dict[str, Any]) -> None:
        """From the test's thread: the node changes and the live stream says so, as the hub does on a report."""
        assert self.loop is not None

        def change() -> None:
            self.by_id[summary["id"]].update(summary)
            self.events.publish("node", summary)

        self.loop.call_soon_threadsafe(change)


def fleet_summaries(samples: Any, now: float) -> list[dict[str, Any]]:
    nodes = []
    for i in range(FLEET_SIZE):
        node = copy.deepcopy(samples.SUMMARY)
        node.update(id=f"n{i:04d}", name=f"node-{i:03d}", hostname=f"node-{i:03d}.lan", local=False, last_seen=now - 2,
                    integrations_summary={"loaded": 2, "problems": 0}, alerts={"firing": 0, "critical": 0, "warning": 0})
        node["headline"] = dict(node["headline"], cpu_percent=float(i % 97), mem_used_percent=float(20 + i * 7 % 75),
                                disk_used_percent=float(10 + i * 13 % 85), containers_running=i % 9, containers_unhealthy=0,
                                containers_restarting=0, net_rx_bytes_per_s=1000.0 * i, net_tx_bytes_per_s=333.0 * i,
                                temperature_c=float(35 + i % 40))
        nodes.append(node)
    nodes[499].update(status="offline", last_seen=now - 7200)
    nodes[300]["alerts"] = {"firing": 1, "critical": 1, "warning": 0}
    nodes[100]["alerts"] = {"firing": 2, "critical": 0, "warning": 2}
    nodes[42]["headline"]["containers_unhealthy"] = 1
    for i in (3, 250):
        nodes[i]["labels"] = {"role": "nas", "site": "attic"}
    del nodes[7]["alerts"]  # a hub without the alert engine: no field at all
    return nodes


@pytest.fixture
def fleet(samples, tmp_path, browser):
    from aiohttp import web
    from roost import frontend
    from roost.core.hub import api
    from roost.core.hub.state import HUB_KEY
    from roost.core.store import NodeRecord, Report
    from roost.core.store.sqlite import SQLiteStore

    now = time.time()
    hub = FleetHub(fleet_summaries(samples, now), SQLiteStore(tmp_path / "hub.db"))

    async def make_app() -> Any:
        hub.loop = asyncio.get_running_loop()
        await hub.store.open()
        for node in hub.nodes:
            await hub.store.add_node(NodeRecord(node_id=node["id"], name=node["name"], hostname=node["hostname"],
                                                public_key=node["id"], created_at=now - 86400))
        reports = []
        for i, node in enumerate(hub.nodes[:60] + hub.nodes[-60:]):
            for k in range(12):
                at = now - 3600 + k * 300
                reports.append(Report(node_id=node["id"], seq=k + 1, epoch="e", collected_at=at, received_at=at, data={},
                                      metrics={"linux_host.cpu_percent": float((i + k * 7) % 100), "linux_host.mem_used_percent": 50.0,
                                               "linux_host.disk_used_percent": 70.0}, integrations=[]))
        await hub.store.ingest(reports)
        app = web.Application()
        app[HUB_KEY] = await samples.with_hub_halves(hub, tmp_path, "linux_host", "docker")
        api.setup(app)
        frontend.setup(app)

        async def close(_app: Any) -> None:
            hub.events.close()
            await hub.store.close()

        app.on_shutdown.append(close)
        return app

    with serve_in_thread(make_app) as url:
        yield hub, url


def open_fleet(browser: Any, url: str, path: str = "/", **options: Any) -> Any:
    from frontend_support import CSP_WATCH, Tab

    context = browser.new_context(**{"viewport": {"width": 1440, "height": 900}, **options})
    context.set_default_timeout(20_000)
    page = context.new_page()
    tab = Tab(page=page, base_url=url)
    page.on("console", lambda msg: msg.type == "error" and tab.errors.append(f"console: {msg.text}"))
    page.on("pageerror", lambda err: tab.errors.append(f"page error: {err}"))
    page.on("response", lambda r: r.status >= 500 and tab.errors.append(f"HTTP {r.status}: {r.url}"))
    page.add_init_script(CSP_WATCH)
    tab.goto(path)
    page.locator("#node-table tbody tr").first.wait_for()
    return tab


def visible_ids(page: Any) -> list[str]:
    return page.eval_on_selector_all("#node-table tbody tr", "rows => rows.map(r => r.dataset.nodeId)")


def test_overview_of_500_nodes_puts_problems_first_sorts_filters_and_pages(browser, fleet):
    hub, url = fleet
    tab = open_fleet(browser, url)
    page = tab.page
    shown = visible_ids(page)
    assert len(shown) == 100 and page.locator("#node-table tbody tr").count() == 100  # one page of rows at a time
    assert page.locator("#node-table-foot").inner_text() == "500 nodes"
    assert page.locator('#status-counts .count[data-status="offline"] .count-n').inner_text() == "1"
    assert shown[:4] == ["n0499", "n0300", "n0100", "n0042"], shown[:6]
    assert page.locator("#node-pager-text").inner_text() == "1\u2013100 of 500"
    # The offline node is greyed and shows when it was last seen, not its old figures.
    offline = page.locator('tr[data-node-id="n0499"]')
    assert offline.locator('.fig-value[data-field="headline.cpu_percent"]').is_hidden()
    assert "2 h ago" in offline.locator('td[data-col="seen"]').inner_text()
    assert page.locator('tr[data-node-id="n0300"] .alert-count').inner_text() == "1"
    assert page.locator('tr[data-node-id="n0007"] .alert-count').inner_text() == "0"
    # Sparklines of the last hour, for the rows on screen.
    page.wait_for_function("() => Number(document.querySelector('tr[data-node-id=\"n0042\"] canvas.spark')?.dataset.points) >= 10")
    shot(page, "readme-overview", full_page=False)  # the README's picture of the overview

    page.locator('button.sort[data-sort="name"]').click()
    assert visible_ids(page)[:2] == ["n0000", "n0001"]
    assert page.get_attribute('th[data-col="name"]', "aria-sort") == "ascending"
    page.locator('button.sort[data-sort="name"]').click()
    assert visible_ids(page)[0] == "n0499"
    page.locator('button.sort[data-sort="f-net_rx_bytes_per_s"]').click()
    assert visible_ids(page)[:2] == ["n0499", "n0498"]  # biggest first
    assert "sort=-f-net_rx_bytes_per_s" in page.url
    page.locator("[data-page=next]").click()
    assert visible_ids(page)[0] == "n0399"
    assert page.locator("#node-pager-text").inner_text() == "101\u2013200 of 500"

    page.locator("#node-filter").fill("node-12")
    assert sorted(visible_ids(page)) == [f"n{i:04d}" for i in range(120, 130)]
    assert page.locator("#node-table-foot").inner_text() == "10 of 500 nodes match"
    page.locator("#node-filter").fill("status:offline")
    assert visible_ids(page) == ["n0499"]
    page.locator("#node-filter").fill("role=nas")  # the node labels set on the hub or in the agent's config
    assert sorted(visible_ids(page)) == ["n0003", "n0250"]
    page.locator("#node-filter").fill("")
    assert len(visible_ids(page)) == 100
    shot(page, "desktop-overview-500-nodes")
    tab.assert_clean()
    page.context.close()


def test_overview_moves_a_node_up_when_it_starts_firing(browser, fleet):
    hub, url = fleet
    tab = open_fleet(browser, url)
    page = tab.page
    page.locator("#live-status[data-live=live]").wait_for()
    assert visible_ids(page)[:3] == ["n0499", "n0300", "n0100"]
    change = copy.deepcopy(hub.by_id["n0250"])
    change["alerts"] = {"firing": 3, "critical": 2, "warning": 1}
    hub.publish(change)
    page.wait_for_function("() => document.querySelectorAll('#node-table tbody tr')[1].dataset.nodeId === 'n0250'")
    row = page.locator('tr[data-node-id="n0250"]')
    assert row.locator(".alert-count").inner_text() == "3"
    assert row.locator(".problem-count").inner_text() == "3"
    # Back online after being offline: the node leaves the top.
    back = dict(copy.deepcopy(hub.by_id["n0499"]), status="online", last_seen=time.time())
    hub.publish(back)
    page.wait_for_function("() => document.querySelectorAll('#node-table tbody tr')[0].dataset.nodeId === 'n0250'")
    page.locator("#node-filter").fill("node-499")
    assert page.locator('tr[data-node-id="n0499"]').get_attribute("data-status") == "online"
    assert page.locator('tr[data-node-id="n0499"] .fig-value[data-field="headline.cpu_percent"]').is_visible()
    # A node the page has never seen joins the table from its first event.
    newcomer = dict(copy.deepcopy(hub.by_id["n0001"]), id="n9999", name="newcomer", status="offline")
    hub.by_id["n9999"] = newcomer
    hub.publish(newcomer)
    page.locator("#node-filter").fill("")
    page.wait_for_function("() => document.querySelector('#node-table tbody tr')?.dataset.nodeId === 'n9999'")
    assert page.locator("#node-table-foot").inner_text() == "501 nodes"
    assert page.locator('#status-counts .count[data-status="offline"] .count-n').inner_text() == "1"
    tab.assert_clean()
    page.context.close()


def test_overview_table_fits_a_phone(browser, fleet):
    hub, url = fleet
    tab = open_fleet(browser, url, **PHONE)
    widths = tab.page.evaluate("() => ({doc: document.documentElement.scrollWidth, view: document.documentElement.clientWidth})")
    assert widths["doc"] <= widths["view"] == 390, widths
    # The table scrolls inside its own box instead.
    assert tab.page.evaluate("() => [document.querySelector('.node-table-wrap'), document.getElementById('node-table')]"
                             ".some(w => w.scrollWidth > w.clientWidth && getComputedStyle(w).overflowX === 'auto')")
    shot(tab.page, "phone-overview-500-nodes")
    tab.assert_clean()
    tab.page.context.close()
