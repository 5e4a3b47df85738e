"""Logging in to the dashboard in real Chromium against a real `roost hub` on its first start."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

OWNER, OWNER_PASSWORD = "hubowner", "a long owner passphrase"
VIEWER, VIEWER_PASSWORD = "vera", "a long viewer passphrase"


class Page:
    """One browser context on the fresh hub, recording console errors, uncaught exceptions and CSP violations."""

    def __init__(self, browser: Any, base_url: str) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.context.set_default_timeout(20_000)
        self.page = self.context.new_page()
        self.base_url = base_url
        self.errors: list[str] = []
        self.page.on("console", lambda msg: msg.type == "error" and self.errors.append(f"console: {msg.text}"))
        self.page.on("pageerror", lambda err: self.errors.append(f"page error: {err}"))
        self.page.add_init_script(
            "document.addEventListener('securitypolicyviolation', e => console.error('CSP ' + e.violatedDirective + ' ' + e.blockedURI));"
        )

    def goto(self, path: str) -> Any:
        return self.page.goto(self.base_url + path)

    def path(self) -> str:
        return self.page.url[len(self.base_url):]

    def login(self, username: str, password: str) -> None:
        self.goto("/login")
        self.page.fill("#username", username)
        self.page.fill("#password", password)
        self.page.click("button[type=submit]")
        self.page.wait_for_load_state()

    def errors_except_status(self, *statuses: int) -> list[str]:
        # Chromium logs a document's own 4xx status as a console error; nothing else may appear.
        return [e for e in self.errors if not any(f"status of {s}" in e for s in statuses)]


@pytest.fixture
def pages(browser, fresh_hub) -> Iterator[Any]:
    opened: list[Page] = []

    def make() -> Page:
        opened.append(Page(browser, fresh_hub.base_url))
        return opened[-1]

    yield make
    for page in opened:
        page.context.close()


def ensure_owner(pages: Any) -> None:
    """Create the owner through onboarding unless an earlier test did."""
    tab = pages()
    tab.goto("/")
    if tab.path().startswith("/onboarding"):
        onboard(tab)


def onboard(tab: Page) -> None:
    tab.page.fill("#username", OWNER)
    tab.page.fill("#password", OWNER_PASSWORD)
    tab.page.fill("#confirm", OWNER_PASSWORD)
    tab.page.click("button[type=submit]")
    tab.page.wait_for_url(tab.base_url + "/")


def test_onboarding_creates_the_owner_and_lands_on_the_overview(pages, fresh_hub):
    tab = pages()
    response = tab.goto("/")
    assert tab.path() == "/onboarding"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert tab.page.locator("h1").inner_text() == "Welcome to Roost"
    # The browser refuses a password shorter than the rule before it is sent.
    tab.page.fill("#username", OWNER)
    tab.page.fill("#password", "short")
    tab.page.fill("#confirm", "short")
    tab.page.click("button[type=submit]")
    assert tab.path() == "/onboarding"
    onboard(tab)
    tab.page.locator("main h1", has_text="Nodes").wait_for()
    assert tab.page.locator(".user-menu .user-name").inner_text() == OWNER
    assert tab.page.locator(".user-menu a[href='/users']").count() == 1
    assert tab.page.evaluate("document.querySelector('meta[name=csrf-token]').content").strip()
    assert tab.page.evaluate("document.cookie") == ""  # the session cookie is HttpOnly
    tab.page.locator('#live-status[data-live="live"]').wait_for()
    # Onboarding is over for everyone.
    other = pages()
    other.goto("/onboarding")
    assert other.path() == "/login"
    assert not tab.errors, tab.errors


def test_logout_leads_back_to_login(pages):
    ensure_owner(pages)
    tab = pages()
    tab.login(OWNER, OWNER_PASSWORD)
    assert tab.path() == "/"
    tab.page.locator('#live-status[data-live="live"]').wait_for()
    tab.page.click(".user-menu button", timeout=10_000)
    tab.page.wait_for_url(lambda url: urlparse(url).path == "/login")
    tab.goto("/integrations")
    assert tab.path() == "/login?next=/integrations"
    tab.page.fill("#username", OWNER)
    tab.page.fill("#password", OWNER_PASSWORD)
    tab.page.click("button[type=submit]")
    tab.page.wait_for_url(tab.base_url + "/integrations")
    assert not tab.errors, tab.errors


def test_wrong_password_shows_an_error(pages):
    ensure_owner(pages)
    tab = pages()
    tab.login(OWNER, "not the right passphrase")
    assert tab.path() == "/login"
    assert tab.page.locator("#login-error").inner_text() == "wrong user name or password"
    assert tab.page.input_value("#username") == OWNER
    assert tab.page.input_value("#password") == ""
    assert not tab.errors_except_status(401), tab.errors


def test_a_viewer_cannot_see_admin_pages(pages):
    ensure_owner(pages)
    admin = pages()
    admin.login(OWNER, OWNER_PASSWORD)
    admin.goto("/users")
    admin.page.fill("#new-name", VIEWER)
    admin.page.fill("#new-password", VIEWER_PASSWORD)
    admin.page.select_option("#new-role", "viewer")
    admin.page.click("form[action='/users'] button[type=submit]")
    admin.page.locator(f"tr[data-user='{VIEWER}']").wait_for()
    assert not admin.errors, admin.errors

    viewer = pages()
    viewer.login(VIEWER, VIEWER_PASSWORD)
    assert viewer.path() == "/"
    viewer.page.locator("main h1", has_text="Nodes").wait_for()
    assert viewer.page.locator(".user-menu a[href='/users']").count() == 0
    response = viewer.goto("/users")
    assert response.status == 403
    assert viewer.page.locator("h1").inner_text() == "Not allowed"
    assert "needs the admin role" in viewer.page.locator("main").inner_text()
    # Their own account page works: a read token is shown once, then only its id.
    viewer.goto("/account")
    assert viewer.page.locator("#token-scope option").all_inner_texts() == ["read"]
    viewer.page.fill("#token-name", "grafana")
    viewer.page.click("form[action='/account/tokens'] button[type=submit]")
    token = viewer.page.input_value("#new-token")
    assert token.startswith("rst_")
    # One click copies it.
    viewer.page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=viewer.page.url.split("/account")[0])
    viewer.page.click("[data-testid=copy-api-token]")
    viewer.page.locator(".new-token .copy-status", has_text="Copied.").wait_for()
    assert viewer.page.evaluate("navigator.clipboard.readText()") == token
    viewer.goto("/account")
    assert token not in viewer.page.content()
    viewer.page.click("tr[data-token-id] button", timeout=10_000)
    viewer.page.wait_for_url("**/account?done=revoked")
    assert viewer.page.locator("tr[data-token-id] td", has_text="revoked").count() == 1
    assert not viewer.errors_except_status(403), viewer.errors
