"""The Notifications page in Chromium: an admin adds a webhook receiver through the form, "Send test" reaches a real webhook
on loopback and says so, a receiver refused by the outbound check says why, and delete removes it."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect
from support import free_port
from support_notify import ThreadedWebhook

pytestmark = pytest.mark.browser


@pytest.fixture
def webhook():
    hook = ThreadedWebhook(free_port())
    yield hook
    hook.close()


def _add(tab, name: str, url: str, *, allow_private: bool) -> None:
    form = tab.page.locator('[data-testid="receiver-form"]')
    form.locator('input[name="name"]').fill(name)
    form.locator('select[name="kind"]').select_option("notify.webhook")
    form.locator('textarea[name="settings"]').fill(json.dumps({"url": url, "hmac_key": "browser-secret-key"}))
    if allow_private:
        form.locator('input[name="allow_private"]').check()
    with tab.page.expect_navigation():
        form.locator('button[type="submit"]').click()


def test_add_a_receiver_send_a_test_and_delete_it(tab, webhook):
    tab.goto("/notifications")
    _add(tab, "browser-hook", webhook.url, allow_private=True)
    row = tab.page.locator('tr[data-receiver="browser-hook"]')
    assert "notify.webhook" in row.inner_text() and "private targets allowed" in row.inner_text()
    assert "browser-secret-key" not in tab.page.content() and "hmac_key" in row.inner_text()
    row.locator('[data-testid="test-receiver"]').click()
    status = tab.page.locator('[data-testid="notify-status"]')
    expect(status).to_contain_text("Test delivered to browser-hook", timeout=30_000)
    assert [p["title"] for p in webhook.payloads()] == ["Roost test notification"]

    _add(tab, "browser-lan", webhook.url, allow_private=False)
    tab.page.locator('tr[data-receiver="browser-lan"] [data-testid="test-receiver"]').click()
    expect(status).to_contain_text("Test to browser-lan failed", timeout=30_000)
    text = status.inner_text()
    assert "Test to browser-lan failed" in text and "loopback address" in text and "allow private targets" in text
    assert len(webhook.payloads()) == 1

    tab.page.on("dialog", lambda dialog: dialog.accept())
    for name in ("browser-hook", "browser-lan"):
        with tab.page.expect_navigation():
            tab.page.locator(f'tr[data-receiver="{name}"] [data-delete-receiver]').click()
    assert tab.page.locator("tr[data-receiver]").count() == 0
    tab.assert_no_errors()
