"""The dashboard in real Chromium against a real `roost hub` process collecting its own host every second."""

from __future__ import annotations

import json
import re
import time
from urllib.parse import urlparse

import pytest
from roost.frontend import formatting

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

SCREENSHOTS = "/tmp"
EVIL = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
STRICT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def card_selector(node_id: str) -> str:
    return f'.node-card[data-node-id="{node_id}"]'


def wait_for_chart(page, key: str = "cpu", timeout: float = 30_000) -> int:
    page.wait_for_function(
        "key => { const f = document.querySelector(`figure[data-chart='${key}']`);"
        " return f && Number(f.dataset.points) >= 1 && !f.hasAttribute('data-loading'); }",
        arg=key,
        timeout=timeout,
    )
    return int(page.get_attribute(f'figure[data-chart="{key}"]', "data-points"))


def test_overview_shows_the_local_node_online_with_numbers(tab, live_hub):
    tab.goto("/")
    card = tab.page.locator(card_selector(live_hub.node_id))
    card.wait_for()
    assert card.get_attribute("data-status") == "online"
    assert card.locator(".badge.status").inner_text() == "Online"
    for field in ("cpu_percent", "mem_used_percent", "disk_used_percent"):
        text = card.locator(f'.gauge-value[data-field="headline.{field}"]').inner_text()
        assert re.fullmatch(r"\d+(\.\d)?%", text), (field, text)
    assert re.fullmatch(r"\d+\.\d\d", card.locator('[data-field="headline.load_1"]').inner_text())
    assert tab.page.locator('#status-counts .count[data-status="online"] .count-n').inner_text() == "1"
    tab.page.locator('#live-status[data-live="live"]').wait_for()
    tab.page.screenshot(path=f"{SCREENSHOTS}/roost-overview.png", full_page=True)
    tab.assert_no_errors()


def test_overview_updates_live_without_reload(tab, live_hub):
    tab.goto("/")
    seen = tab.page.locator(f'{card_selector(live_hub.node_id)} time[data-field="last_seen"]')
    seen.wait_for()
    before = float(seen.get_attribute("data-ts"))
    tab.page.evaluate("window.__sameDocument = true")
    tab.page.wait_for_function(
        "([sel, before]) => { const t = document.querySelector(sel);"
        " return t && Number(t.dataset.ts) > before; }",
        arg=[f'{card_selector(live_hub.node_id)} time[data-field="last_seen"]', before],
        timeout=15_000,
    )
    assert tab.page.evaluate("window.__sameDocument") is True  # changed in place, not by a reload
    assert tab.page.locator("#live-status").inner_text() == "Live"
    tab.assert_no_errors()


def test_overview_falls_back_to_polling_when_the_stream_fails(tab, live_hub):
    tab.page.route("**/api/v1/events", lambda route: route.abort())
    tab.goto("/")
    seen_sel = f'{card_selector(live_hub.node_id)} time[data-field="last_seen"]'
    tab.page.locator(seen_sel).wait_for()
    tab.page.locator('#live-status[data-live="polling"]').wait_for()
    before = float(tab.page.get_attribute(seen_sel, "data-ts"))
    tab.page.wait_for_function(
        "([sel, before]) => Number(document.querySelector(sel).dataset.ts) > before",
        arg=[seen_sel, before],
        timeout=25_000,
    )
    assert tab.page.locator("#live-status").inner_text() == "Polling"
    # Aborted EventSource requests are logged by Chromium; nothing else may be.
    assert not [e for e in tab.errors if "/api/v1/events" not in e and "ERR_FAILED" not in e], tab.errors


def test_node_page_draws_history_charts(tab, live_hub):
    tab.goto("/")
    tab.page.locator(f"{card_selector(live_hub.node_id)} .node-name a").click()
    tab.page.wait_for_url(f"**/nodes/{live_hub.node_id}")
    assert wait_for_chart(tab.page, "cpu") >= 1
    assert tab.page.locator('figure[data-chart="cpu"] canvas').count() == 1
    assert tab.page.locator('figure[data-chart="memory"] canvas').count() == 1
    for heading in ("Facts", "Disks", "Network", "Top processes by CPU", "Services", "Integrations"):
        assert tab.page.get_by_role("heading", name=heading, exact=True).count() == 1, heading
    tab.page.screenshot(path=f"{SCREENSHOTS}/roost-node.png", full_page=True)
    tab.assert_no_errors()


def test_range_buttons_refetch_history(tab, live_hub):
    tab.goto(f"/nodes/{live_hub.node_id}")
    wait_for_chart(tab.page, "cpu")
    for name in ("24h", "7d", "30d", "1h"):
        with tab.page.expect_request(lambda r, name=name: "/metrics?" in r.url and f"range={name}" in r.url) as request:
            tab.page.locator(f'button.range[data-range="{name}"]').click()
        assert request.value.response().status == 200
        tab.page.locator(f'figure[data-chart="cpu"][data-range="{name}"]').wait_for()
        assert tab.page.get_attribute(f'button.range[data-range="{name}"]', "aria-pressed") == "true"
        assert tab.page.locator('button.range[aria-pressed="true"]').count() == 1
        assert f"range={name}" in tab.page.url
    assert wait_for_chart(tab.page, "cpu") >= 1
    tab.assert_no_errors()


def test_node_page_details_refresh_live(tab, live_hub):
    tab.goto(f"/nodes/{live_hub.node_id}")
    report = tab.page.locator('#details time[data-format="ago"]').first
    report.wait_for()
    with tab.page.expect_response(lambda r: "fragment=details" in r.url, timeout=20_000) as response:
        pass
    assert response.value.status == 200
    tab.page.locator("#details h2", has_text="Disks").wait_for()
    tab.assert_no_errors()


def test_integrations_page_lists_linux_host_as_loaded(tab, live_hub):
    tab.goto("/integrations")
    row = tab.page.locator(f'.integrations-node[data-node-id="{live_hub.node_id}"] tr[data-domain="linux_host"]')
    row.wait_for()
    badge = row.locator(".badge.state")
    assert badge.get_attribute("data-state") == "loaded"
    assert badge.inner_text() == "Loaded"
    tab.assert_no_errors()


def test_unknown_node_gives_a_404_page(tab):
    response = tab.goto("/nodes/does-not-exist")
    assert response.status == 404
    assert tab.page.locator("h1").inner_text() == "Not found"
    assert "does-not-exist" in tab.page.locator("main").inner_text()
    # Chromium logs the document's own 404 status; nothing else may fail.
    assert not [e for e in tab.errors if "404" not in e], tab.errors


@pytest.mark.parametrize("path", ["/", "/nodes/{node}", "/integrations", "/updates"])
def test_phone_width_has_no_horizontal_scroll(new_tab, live_hub, path):
    tab = new_tab(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    tab.goto(path.format(node=live_hub.node_id))
    if "{node}" in path:
        wait_for_chart(tab.page, "cpu")
    else:
        tab.page.locator("main h1").wait_for()
    widths = tab.page.evaluate(
        "() => ({doc: document.documentElement.scrollWidth, body: document.body.scrollWidth,"
        " view: document.documentElement.clientWidth})"
    )
    assert widths["view"] == 390
    assert widths["doc"] <= widths["view"] and widths["body"] <= widths["view"], widths
    name = path.strip("/").split("/")[0] or "overview"
    tab.page.screenshot(path=f"{SCREENSHOTS}/roost-phone-{name}.png", full_page=True)
    tab.assert_no_errors()


def test_pages_work_under_a_strict_content_security_policy(tab, live_hub):
    pages = {"/", f"/nodes/{live_hub.node_id}", "/integrations"}

    def add_csp(route):
        response = route.fetch()
        route.fulfill(response=response, headers={**response.headers, "content-security-policy": STRICT_CSP})

    tab.page.route(lambda url: urlparse(url).path in pages and "fragment=" not in url, add_csp)
    tab.page.add_init_script(
        "window.__csp = []; document.addEventListener('securitypolicyviolation',"
        " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    for path in sorted(pages):
        response = tab.goto(path)
        assert response.headers["content-security-policy"] == STRICT_CSP
        if path.startswith("/nodes/"):
            wait_for_chart(tab.page, "cpu")
        tab.page.locator('#live-status[data-live="live"]').wait_for()
        assert tab.page.evaluate("window.__csp") == [], path
    tab.assert_no_errors()


def test_live_updates_write_names_as_text(tab, live_hub):
    evil = dict(live_hub.get("/api/v1/nodes")["nodes"][0], name=EVIL, last_seen=time.time() + 5)
    assert evil["id"] == live_hub.node_id
    body = f"retry: 60000\nevent: node\ndata: {json.dumps(evil)}\n\n"
    tab.page.route("**/api/v1/events", lambda route: route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body))
    tab.page.route("**/api/v1/nodes", lambda route: route.fulfill(status=200, json={"nodes": [evil]}))
    tab.goto("/")
    link = tab.page.locator(f"{card_selector(live_hub.node_id)} .node-name a")
    tab.page.wait_for_function("([sel, name]) => document.querySelector(sel)?.textContent === name",
                               arg=[f"{card_selector(live_hub.node_id)} .node-name a", EVIL])
    assert link.inner_text() == EVIL
    assert tab.page.locator("main img").count() == 0
    assert tab.page.evaluate("window.__xss") is None


def test_browser_formats_numbers_like_the_server(tab, live_hub):
    tab.goto("/")
    tab.page.wait_for_function("window.Roost && window.Roost.format")
    cases = {
        "bytes": (formatting.fmt_bytes, [None, 0, 1, 1023, 1024, 1536, 1048575, 1023.96 * 1024, 5e8, 5e11, 4e12, -2048, -0.2, "2048"]),
        "rate": (formatting.fmt_rate, [None, 0, 2_500_000, 125_000, 1e9]),
        "percent": (formatting.fmt_percent, [None, 0, 0.05, 4.25, 9.96, 12.5, 63.2, 99.5, 100, -0.04]),
        "number": (formatting.fmt_number, [None, 0, 0.4249, 0.125, 1.005, 2.675, -0.001, 12.3456]),
        "integer": (formatting.fmt_count, [None, 0, 7, 2.5, 1234, 1234567.5, -1234]),
        "duration": (formatting.fmt_duration, [None, -1, 0, 59.9, 60, 3599, 3600, 3660, 86400, 93784, 1e7]),
    }
    for name, (python, values) in cases.items():
        browser_texts = tab.page.evaluate(
            "([name, values]) => values.map(v => window.Roost.format[name](v))", [name, values]
        )
        assert browser_texts == [python(v) for v in values], name
    now = 1_800_000_000
    stamps = [None, now, now - 1, now - 2, now - 90, now - 7200, now - 200_000]
    browser_ago = tab.page.evaluate("([vs, now]) => vs.map(v => window.Roost.format.ago(v, now))", [stamps, now])
    assert browser_ago == [formatting.fmt_ago(v, now=now) for v in stamps]
    tab.assert_no_errors()
