"""The API reference page in Chromium: the vendored Swagger UI renders the hub's own OpenAPI document under the hub's
CSP (no CDN, no inline script), with the pings and alerts operations among the rest."""

from __future__ import annotations

import pytest
from frontend_support import CSP_WATCH

pytestmark = pytest.mark.browser


def test_the_api_reference_renders_every_operation_from_the_document(tab, live_hub):
    page = tab.page
    page.add_init_script(CSP_WATCH)
    tab.goto("/api-reference")
    page.locator("#api-reference .opblock").first.wait_for(timeout=30_000)
    shown = page.locator("#api-reference .opblock-summary-path").all_inner_texts()
    document = live_hub.get("/api/v1/openapi.json")
    operations = sum(len(ops) for ops in document["paths"].values())
    assert len(shown) == operations > 50
    text = " ".join(s.replace("\u200b", "") for s in shown)
    for path in ("/api/v1/nodes/{node_id}/metrics", "/api/v1/integrations/ping/checks", "/ping/{uuid}/{op}", "/api/v1/alerts/rules"):
        assert path in text, path
    requests = page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
    assert all(url.startswith(tab.base_url) for url in requests), [u for u in requests if not u.startswith(tab.base_url)]
    assert page.evaluate("window.__csp || []") == [], "content security policy violations"
    tab.assert_no_errors()
