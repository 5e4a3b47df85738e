"""The Pings page in Chromium: an operator creates a check with the form, copies its whole URL, a job pings it and
the page's timeline and status follow, all under the hub's CSP."""

from __future__ import annotations

import urllib.request

import pytest
from frontend_support import CSP_WATCH

pytestmark = pytest.mark.browser


def test_create_a_check_copy_its_url_and_see_its_pings(tab, live_hub):
    page = tab.page
    page.add_init_script(CSP_WATCH)
    tab.goto("/pings")
    form = page.locator('[data-testid="ping-create"]')
    form.locator('input[name="name"]').fill("browser nightly")
    form.locator('input[name="period"]').fill("3600")
    form.locator('input[name="grace"]').fill("600")
    with page.expect_navigation():
        form.locator('button[type="submit"]').click()
    row = page.locator("tr.ping-check", has_text="browser nightly")
    row.wait_for()
    assert row.get_attribute("data-status") == "new"
    url = row.locator('[data-testid="ping-url"]').inner_text().strip()
    assert url.startswith(tab.base_url + "/ping/") and len(url) == len(tab.base_url) + len("/ping/") + 36
    assert "no pings yet" in row.inner_text()

    # A cron job calls it (no login), with its output; the page shows the ping and the check is up.
    with urllib.request.urlopen(urllib.request.Request(url + "/0", data=b"rsync done", method="POST"), timeout=10) as resp:
        assert resp.read() == b"OK\n"
    tab.goto("/pings")
    row = page.locator("tr.ping-check", has_text="browser nightly")
    assert row.get_attribute("data-status") == "up"
    assert row.locator(".ping-mark[data-kind='success']").count() == 1
    row.locator("a", has_text="browser nightly").click()
    page.locator('[data-testid="ping-log"]').wait_for()
    log = page.locator('[data-testid="ping-log"] tbody tr').first
    assert log.get_attribute("data-kind") == "success" and "10 B" in log.inner_text()
    log.locator("details summary").click()  # the job's output, folded until asked for
    assert log.locator("pre.ping-body").inner_text() == "rsync done"
    page.screenshot(path=str(live_hub.log.parent / "pings-check.png"), full_page=True)
    assert page.evaluate("window.__csp || []") == [], "content security policy violations"
    tab.assert_no_errors()
