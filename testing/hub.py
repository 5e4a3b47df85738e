"""A real hub (aiohttp app on real SQLite) with a real agent in the same process, for one integration under test."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from html.parser import HTMLParser
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp.test_utils import TestServer

from roost.agent.runtime import AgentRuntime
from roost.agent.uplink import Backoff, WebSocketUplink
from roost.core.capabilities import Ceiling, is_capability, is_read_only
from roost.core.config import AgentSettings, load_hub_config
from roost.core.hub.app import HUB_KEY, create_app
from roost.core.hub.auth import ROLE_SCOPE, create_api_token, hash_password, new_user
from roost.core.store.jobs import JOB_FINAL
from roost.core.store.sqlite import SQLiteStore

from .kernel import Collection, Source, custom_dir_for, others_disabled, source_domain

T = TypeVar("T")

ADMIN = "admin"
# Only for the hub a test makes; never a real account.
ADMIN_PASSWORD = "roost-testing-password"
DEFAULT_TIMEOUT = 15.0


class JobRefused(Exception):
    """The hub refused to create the job (unknown action, capability not granted, ...); the message is the hub's."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


async def _until(probe: Callable[[], Awaitable[T | None]], timeout: float, what: str) -> T:
    """Await probe() until it returns something truthy; bounded, never a guessed sleep."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class HubHarness:
    """One hub, one node (an agent running the integration under test) and an admin's HTTP session.

    Use the fixture ``roost_hub`` (or ``start_hub``) to make one. Everything
    goes through the hub's real paths: reports over the agent's WebSocket and
    the ingest pipeline into SQLite; actions as jobs through the REST API, the
    hub's grant check and the agent's grant-and-ceiling check; pages through
    the dashboard with its authentication.
    """

    def __init__(self, workdir: Path, domain: str) -> None:
        self.workdir = workdir
        self.domain = domain
        self.server: TestServer | None = None
        self.agent: AgentRuntime | None = None
        self.http: aiohttp.ClientSession | None = None
        self.node_id = ""
        self.token = ""
        self._users: list[str] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ what it is

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    @property
    def hub(self) -> Any:
        """The hub object itself, for what the API does not show (tests of Roost's own internals)."""
        assert self.server is not None
        return self.server.app[HUB_KEY]

    @property
    def app(self) -> Any:
        assert self.server is not None
        return self.server.app

    # --------------------------------------------------------------- talking

    async def request(self, method: str, path: str, *, json: Any = None, token: str | None = None) -> tuple[int, Any]:
        """One authenticated request (the admin's API token unless ``token`` is given); returns (status, JSON or text)."""
        assert self.http is not None
        headers = {"Authorization": f"Bearer {self.token if token is None else token}"}
        async with self.http.request(method, self.url + path, json=json, headers=headers) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.text()

    async def get(self, path: str) -> tuple[int, Any]:
        return await self.request("GET", path)

    async def api(self, method: str, path: str = "", *, json: Any = None, token: str | None = None) -> tuple[int, Any]:
        """Call one of the integration's own API routes, ``/api/v1/integrations/<domain><path>``."""
        return await self.request(method, f"/api/v1/integrations/{self.domain}{path}", json=json, token=token)

    async def token_for(self, role: str, name: str | None = None) -> str:
        """An API token of a new user with this role (viewer, operator, admin), to test who may see or do what."""
        name = name or f"{role}-{len(self._users)}"
        user = new_user(name, await asyncio.to_thread(hash_password, ADMIN_PASSWORD), role)
        await self.hub.store.add_user(user)
        self._users.append(name)
        text, _record = await create_api_token(self.hub.store, user, scope=ROLE_SCOPE[role], name="roost.testing")
        return text

    async def page(self, path: str) -> str:
        """The HTML of a dashboard page as the admin sees it; fails on any status but 200."""
        status, body = await self.get(path)
        if status != 200:
            raise AssertionError(f"GET {path} answered {status}: {str(body)[:500]}")
        return body

    async def node_page(self) -> str:
        """The HTML of the test node's page in the dashboard."""
        return await self.page(f"/nodes/{self.node_id}")

    async def node_panels(self) -> dict[str, dict[str, str]]:
        """The integrations' panels on the node's page: {title: {"domain", "html", "error"}} ("error" when it failed to draw)."""
        return _panels(await self.node_page())

    async def node_panel(self, title: str) -> str:
        """The inner HTML of the node page's panel with this title; fails when it is missing or drew an error instead."""
        panels = await self.node_panels()
        if title not in panels:
            errors = [p["error"] for p in panels.values() if p["domain"] == self.domain and p["error"]]
            if errors:
                # A panel hook that raised has no title of its own: the dashboard shows the error in its place.
                raise AssertionError(f"the node page has no panel titled {title!r}; {self.domain} shows an error instead: {errors[0]}")
            status, body = await self.get("/api/v1/integrations")
            on_hub = [i for i in (body.get("hub", []) if status == 200 and isinstance(body, dict) else []) if i.get("domain") == self.domain]
            where = (
                f"; on the hub, {self.domain} is {on_hub[0]['state']}" + (f" ({on_hub[0]['reason']})" if on_hub[0].get("reason") else "")
                if on_hub
                else f"; the hub did not load {self.domain} (does its manifest's roles list name 'hub'?)"
            )
            raise AssertionError(f"the node page has no panel titled {title!r}; it has {sorted(panels) or 'none'}{where}")
        panel = panels[title]
        if panel["error"]:
            raise AssertionError(f"the {title!r} panel of {panel['domain']} shows an error instead: {panel['error']}")
        return panel["html"]

    # ------------------------------------------------------------ collecting

    async def collect(self, *, timeout: float = DEFAULT_TIMEOUT) -> Collection:
        """Run one collection on the agent now, wait until the hub has stored that report, and return what it stored.

        The state is the integration's latest state as the hub keeps it; the
        metrics are the latest values of the integration's series.
        """
        assert self.agent is not None
        seq = await self.agent.collect_once()

        async def stored() -> bool:
            node = self.hub.node(self.node_id)
            return node is not None and node.last_seq >= seq and node.epoch == self.agent.spool.epoch

        await _until(stored, timeout, f"report {seq} to reach the hub")
        detail = await self.node()
        prefix = f"{self.domain}."
        metrics = {k: v for k, v in (detail.get("metrics") or {}).items() if k.startswith(prefix)}
        return Collection(state=(detail.get("state") or {}).get(self.domain), metrics=metrics)

    async def node(self) -> dict[str, Any]:
        """GET /api/v1/nodes/{id}: the node's summary, integrations, fields, state and latest metrics."""
        status, body = await self.get(f"/api/v1/nodes/{self.node_id}")
        if status != 200:
            raise AssertionError(f"the hub answered {status} for the test node: {body}")
        return body

    async def history(self, metric: str, *, range: str = "1h") -> list[tuple[float, float]]:  # noqa: A002 - the API's name
        """The stored points of one series (full name, ``domain.metric[label]``) as (timestamp, value), oldest first."""
        status, body = await self.get(f"/api/v1/nodes/{self.node_id}/metrics?series={metric}&range={range}&resolution=raw")
        if status != 200:
            raise AssertionError(f"the hub answered {status} for the history of {metric}: {body}")
        # Raw points come as [time, value, min, max] (rollups fill min and max); raw min and max equal the value.
        return [(point[0], point[1]) for point in body["series"].get(metric, [])]

    # --------------------------------------------------------------- acting

    async def grant(self, capabilities: list[str]) -> None:
        """Set the node's grants through the API, as an admin would on the node's page."""
        status, body = await self.request("PUT", f"/api/v1/nodes/{self.node_id}/grants", json={"grants": list(capabilities)})
        if status != 200:
            raise AssertionError(f"the hub refused the grants {capabilities}: {status} {body}")

    async def run_action(self, action: str, params: Mapping[str, Any] | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """Ask for an action as a job through the REST API and wait for its final state; returns the job.

        The job's ``state`` is ``succeeded``, ``failed``, ``timed_out`` or
        ``refused`` (by the agent: parameters, ceiling); ``result`` holds what
        the handler returned, ``error`` why it did not. Raises JobRefused when
        the hub will not create the job at all (capability not granted,
        unknown action).
        """
        status, body = await self.request("POST", f"/api/v1/nodes/{self.node_id}/actions/{action}", json={"params": dict(params or {})})
        if status != 201:
            message = body.get("error", body) if isinstance(body, dict) else body
            raise JobRefused(status, str(message))
        job_id = body["id"]

        async def final() -> dict[str, Any] | None:
            code, job = await self.get(f"/api/v1/jobs/{job_id}")
            return job if code == 200 and job.get("state") in JOB_FINAL else None

        return await _until(final, timeout, f"job {job_id} ({action}) to finish")

    # ------------------------------------------------------------- lifetime

    async def start(
        self,
        source: Source,
        *,
        config: Mapping[str, Any] | None = None,
        grants: list[str] | None = None,
        ceiling: Ceiling | Mapping[str, Any] | None = None,
        hub: Mapping[str, Any] | None = None,
        custom_dirs: list[Path] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        workdir = self.workdir
        custom = [*custom_dir_for(source, workdir), *(Path(p) for p in custom_dirs or [])]
        integrations = others_disabled(self.domain, config)
        hub_config = load_hub_config(
            None,
            overrides={
                "hub": {
                    "data_dir": str(workdir / "hub"),
                    "bind": "127.0.0.1",
                    "discovery": False,
                    "wol_broadcast": "127.0.0.1",
                    "custom_integrations": [str(p) for p in custom],
                    **dict(hub or {}),
                },
                # The node under test is the agent below; the hub's own in-process agent would be a second one.
                "agent": {"enabled": False},
            },
        )
        hub_config.integrations = integrations
        self.token = await _seed_admin(hub_config)
        self.server = TestServer(create_app(hub_config), host="127.0.0.1", port=_free_port())
        await self.server.start_server()
        self.http = aiohttp.ClientSession()

        if ceiling is None:
            ceiling = Ceiling(mode="execute")
        elif not isinstance(ceiling, Ceiling):
            ceiling = Ceiling.from_dict(dict(ceiling))
        self.agent = AgentRuntime(
            data_dir=workdir / "agent",
            # One collection at start; later ones when the test asks (collect()).
            settings=AgentSettings(interval=3600, heartbeat=1, ceiling=ceiling, custom_integrations=custom, discovery=False),
            integrations_config=integrations,
            entry_points=not isinstance(source, os.PathLike),
        )
        await self.agent.start()
        offered = self.agent.manager.capabilities()
        node = await self.hub.add_node(
            public_key=self.agent.identity.public_key,
            hostname="roost-test",
            name="roost-test",
            facts={},
            # An admin approving this node for the integration grants its read-only capabilities
            # (Roost's own default grants only capabilities it knows, and an author's are new).
            grants=sorted(c for c in offered if is_capability(c) and is_read_only(c)) if grants is None else list(grants),
        )
        self.node_id = self.agent.node_id = node.node_id
        self._task = asyncio.create_task(
            self.agent.run(WebSocketUplink(self.url, backoff=Backoff(0.05, 0.2)), self._stop), name="roost-testing-agent"
        )

        async def ready() -> bool:
            if self._task is not None and self._task.done():
                self._task.result()  # the agent stopped: say why
            found = self.hub.node(self.node_id)
            return self.node_id in self.hub.jobs.channels and found is not None and found.last_seq >= 1

        await _until(ready, timeout, "the agent to connect and deliver its first report")

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 10)
            except Exception:
                self._task.cancel()
        if self.agent is not None:
            await self.agent.stop()
        if self.http is not None:
            await self.http.close()
        if self.server is not None:
            await self.server.close()


class _PanelParser(HTMLParser):
    """Finds the dashboard's integration panels (<section class="integration-panel" aria-label=TITLE>) and their inner HTML."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.text = text
        self.lines = [0]
        for line in text.splitlines(keepends=True):
            self.lines.append(self.lines[-1] + len(line))
        self.panels: dict[str, dict[str, str]] = {}
        self._open: list[tuple[dict[str, str] | None, int]] = []  # every open <section>: (its panel, where its content starts)
        self._error_depth = 0

    def _offset(self) -> int:
        line, column = self.getpos()
        return self.lines[line - 1] + column

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "section":
            panel = None
            if "integration-panel" in found.get("class", "").split():
                panel = {"domain": found.get("data-integration", ""), "html": "", "error": ""}
                self.panels[found.get("aria-label", "")] = panel
            start = self.text.index(">", self._offset()) + 1
            self._open.append((panel, start))
        elif "panel-error" in found.get("class", "").split():
            self._error_depth = 1
        elif self._error_depth:
            self._error_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if self._error_depth:
            self._error_depth -= 1
        if tag == "section" and self._open:
            panel, start = self._open.pop()
            if panel is not None:
                panel["html"] = self.text[start : self._offset()].strip()

    def handle_data(self, data: str) -> None:
        if self._error_depth:
            for panel, _start in reversed(self._open):
                if panel is not None:
                    panel["error"] = (panel["error"] + data).strip()
                    break


def _panels(html: str) -> dict[str, dict[str, str]]:
    parser = _PanelParser(html)
    parser.feed(html)
    parser.close()
    return parser.panels


async def _seed_admin(config: Any) -> str:
    """An admin user and an admin-scope API token in the new hub's store; returns the token."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    store = SQLiteStore(config.store_path)
    await store.open()
    try:
        user = new_user(ADMIN, await asyncio.to_thread(hash_password, ADMIN_PASSWORD), "admin")
        await store.add_user(user)
        text, _record = await create_api_token(store, user, scope=ROLE_SCOPE[user.role], name="roost.testing")
        return text
    finally:
        await store.close()


async def start_hub(source: Source, workdir: Path, **options: Any) -> HubHarness:
    """Start a hub and an agent running ``source`` (a folder or a domain); call ``close()`` when done.

    Options: ``config`` (the integration's config table), ``grants`` (the
    node's grants; default: the read-only capabilities it offers, as an
    admin approving it for this integration grants), ``ceiling`` (the agent's ceiling; default: execute, allow
    all), ``hub`` (extra ``[hub]`` settings), ``custom_dirs`` (folders of
    custom integrations to find a domain in), ``timeout``.
    """
    harness = HubHarness(workdir, source_domain(source))
    try:
        await harness.start(source, **options)
    except BaseException:
        await harness.close()
        raise
    return harness
