"""Browser-test helpers shared by the dashboard's Playwright tests: tabs that record errors and CSP violations, one login per role."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable

CSP_WATCH = (
    "window.__csp = []; document.addEventListener('securitypolicyviolation',"
    " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
)


@dataclass
class Tab:
    page: Any
    base_url: str
    errors: list[str] = field(default_factory=list)

    def goto(self, path: str) -> Any:
        return self.page.goto(self.base_url + path)

    def assert_clean(self) -> None:
        assert not self.errors, "browser reported errors:\n" + "\n".join(self.errors)
        assert self.page.evaluate("window.__csp || []") == [], "content security policy violations"
        assert self.page.evaluate("window.__xss") is None


def login_states(browser: Any, base_url: str, users: dict[str, str], password: str) -> dict[str, Any]:
    """Log each user in once through the session API; tabs start from the saved cookies."""
    states = {}
    for role, name in users.items():
        context = browser.new_context()
        try:
            resp = context.request.post(base_url + "/api/v1/session", data={"username": name, "password": password})
            assert resp.status == 200, resp.text()
            states[role] = context.storage_state()
        finally:
            context.close()
    return states


@contextlib.contextmanager
def tab_factory(browser: Any, base_url: str, sessions: dict[str, Any], default_role: str) -> Iterator[Callable[..., Tab]]:
    """make(role, **context options) -> a logged-in Tab; every context is closed afterwards."""
    contexts = []

    def make(role: str = default_role, **options: Any) -> Tab:
        context = browser.new_context(**{"viewport": {"width": 1280, "height": 900}, "storage_state": sessions[role], **options})
        context.set_default_timeout(20_000)
        contexts.append(context)
        page = context.new_page()
        tab = Tab(page=page, base_url=base_url)
        page.on("console", lambda msg: msg.type == "error" and tab.errors.append(f"console: {msg.text}"))
        page.on("pageerror", lambda err: tab.errors.append(f"page error: {err}"))
        page.add_init_script(CSP_WATCH)
        return tab

    try:
        yield make
    finally:
        for context in contexts:
            context.close()


def session_state(cookie: str) -> dict[str, Any]:
    """A Playwright storage state holding one hub session cookie for 127.0.0.1."""
    return {
        "cookies": [
            {"name": "roost_session", "value": cookie, "domain": "127.0.0.1", "path": "/", "httpOnly": True, "secure": False, "sameSite": "Strict", "expires": -1}
        ],
        "origins": [],
    }


@contextlib.contextmanager
def page_factory(browser: Any, base_url: str, cookie: str) -> Iterator[Callable[..., tuple[Any, list[str]]]]:
    """make(**context options) -> (page, errors), logged in with the cookie; contexts closed afterwards."""
    with tab_factory(browser, base_url, {"owner": session_state(cookie)}, "owner") as make_tab:

        def make(**options: Any) -> tuple[Any, list[str]]:
            tab = make_tab(**options)
            return tab.page, tab.errors

        yield make


@contextlib.contextmanager
def serve_in_thread(make_app: Callable[[], Any], timeout: float = 30.0) -> Iterator[str]:
    """Run the aiohttp application ``await make_app()`` builds on 127.0.0.1 in a thread of its own; yield its base URL.

    For browser tests of pages drawn from hub-shaped data a test controls (500 nodes, alert counts) without a hub process.
    """
    import asyncio
    import threading

    from aiohttp import web

    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict[str, Any] = {}

    async def start() -> None:
        runner = web.AppRunner(await make_app(), shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        box["runner"] = runner
        box["url"] = "http://127.0.0.1:%d" % site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as err:  # reported to the test below
            box["error"] = err
        started.set()
        if "error" not in box:
            loop.run_forever()

    thread = threading.Thread(target=run, name="test-app", daemon=True)
    thread.start()
    assert started.wait(timeout), "the test app did not start"
    if "error" in box:
        raise box["error"]
    try:
        yield box["url"]
    finally:
        asyncio.run_coroutine_threadsafe(box["runner"].cleanup(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
