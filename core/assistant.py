"""An MCP server for AI assistants: Roost's state as read-only tools, and actions only as far as the API token allows.

``roost mcp`` speaks MCP over stdio and talks to the hub's REST API with an
API token, like any other API client: it opens no port, holds no secret but
that token, and can do no more than the token's user (audited as that token).
Tools are read-only by default (annotated ``readOnlyHint``); with a token of
operate scope, and without ``--read-only``, ``run_action`` starts a job
through the hub's normal checks, and a destructive action never runs: the
tool returns the unsigned envelope and the ``roost sign`` command for a
person to sign.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from roost.core import jsonparse
from roost.core.const import __version__

READ_TOOLS = (
    "list_nodes", "node_health", "list_firing_alerts", "query_metrics", "list_jobs", "job_output", "list_containers", "search_logs",
    "storage_health", "backup_status",
)
WRITE_TOOLS = ("run_action",)
ALL_TOOLS = READ_TOOLS + WRITE_TOOLS
JOB_WAIT_SECONDS = 60.0
MAX_TEXT = 20_000
INSTRUCTIONS = (
    "Roost watches a homelab: its nodes (hosts, Docker hosts, Proxmox nodes, NAS boxes) report metrics and state to a hub. "
    "Start with list_nodes, then node_health for what is wrong and since when. Everything is read-only unless run_action is "
    "offered; destructive actions are never run here: they come back as an envelope a person signs with `roost sign`."
)


try:  # the SDK passes the message of its own ToolError on to the assistant, and hides any other exception's
    from mcp.server.mcpserver.exceptions import ToolError as _SDKToolError
except ImportError:  # pragma: no cover - without the mcp extra nothing serves these tools
    _SDKToolError = Exception  # type: ignore[assignment,misc]


class ToolError(_SDKToolError):  # type: ignore[misc,valid-type]
    """What the assistant is told when a call cannot be done; the message says why and what to do."""


class HubAPI:
    """The hub's REST API with one bearer token."""

    def __init__(self, url: str, token: str, *, ca_file: str | None = None, session: aiohttp.ClientSession | None = None) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.ssl: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else True
        self._session = session
        self._own = session is None

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self._session

    async def close(self) -> None:
        if self._own and self._session is not None:
            await self._session.close()

    async def request(self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        http = await self._http()
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            async with http.request(method, self.url + path, params=params, json=body, headers=headers, ssl=self.ssl) as resp:
                text = await resp.text()
                data = jsonparse.loads(text) if text and resp.content_type == "application/json" else text
                if resp.status >= 400:
                    why = data.get("error") if isinstance(data, dict) else text[:300]
                    raise ToolError(f"the hub answered {resp.status}: {why}")
                return data
        except aiohttp.ClientError as err:
            raise ToolError(f"cannot reach the hub at {self.url}: {err}") from None

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, params={k: v for k, v in params.items() if v not in (None, "")} or None)

    async def post(self, path: str, body: Any) -> Any:
        return await self.request("POST", path, body=body)


class Tools:
    """The tools, each a plain coroutine over the API, so they are the same over stdio and in tests."""

    def __init__(self, api: HubAPI) -> None:
        self.api = api

    async def _node_id(self, node: str) -> str:
        nodes = (await self.api.get("/api/v1/nodes"))["nodes"]
        for n in nodes:
            if node == n["id"]:
                return n["id"]
        matches = [n for n in nodes if n["name"].casefold() == node.casefold() or (n.get("hostname") or "").casefold() == node.casefold()]
        if len(matches) == 1:
            return matches[0]["id"]
        names = ", ".join(sorted(n["name"] for n in nodes)) or "none"
        raise ToolError(f"no single node called {node!r}; the nodes are: {names}")

    async def list_nodes(self) -> list[dict[str, Any]]:
        """Every node with its status (online, stale, offline, new, revoked), when it was last seen, and its headline figures."""
        nodes = (await self.api.get("/api/v1/nodes"))["nodes"]
        return [
            {
                "id": n["id"],
                "name": n["name"],
                "status": n["status"],
                "last_seen": _iso(n.get("last_seen")),
                "headline": n.get("headline") or {},
                "integration_problems": (n.get("integrations_summary") or {}).get("problems", 0),
            }
            for n in nodes
        ]

    async def node_health(self, node: str) -> dict[str, Any]:
        """What is wrong with one node (by id or name) and since when: liveness, integrations in error, unhealthy or restarting containers, full filesystems, dropped reports."""
        detail = await self.api.get(f"/api/v1/nodes/{quote(await self._node_id(node))}")
        summary = detail["node"]
        problems: list[str] = []
        if summary["status"] != "online":
            problems.append(f"the node is {summary['status']}, last seen {_iso(summary.get('last_seen')) or 'never'}")
        for integ in summary.get("integrations") or ():
            if integ.get("state") not in ("loaded", "disabled", "not_available"):
                since = _iso(integ.get("since"))
                problems.append(f"integration {integ.get('domain')} is {integ.get('state')}: {integ.get('reason') or 'no reason given'}" + (f" (since {since})" if since else ""))
        for container in ((detail.get("state") or {}).get("docker") or {}).get("containers") or ():
            if container.get("health") == "unhealthy":
                problems.append(f"container {container['name']} is unhealthy")
            if container.get("state") in ("restarting", "dead"):
                problems.append(f"container {container['name']} is {container['state']} (restarted {container.get('restart_count', 0)} times)")
        for series, value in (detail.get("metrics") or {}).items():
            if series.startswith("linux_host.disk_used_percent[") and value >= 90:
                problems.append(f"filesystem {series[len('linux_host.disk_used_percent['):-1]} is {value:.0f}% full")
        if summary.get("spool_dropped"):
            problems.append(f"the agent dropped {summary['spool_dropped']} reports while the hub was away")
        return {
            "id": summary["id"],
            "name": summary["name"],
            "status": summary["status"],
            "last_seen": _iso(summary.get("last_seen")),
            "healthy": not problems,
            "problems": problems,
            "headline": summary.get("headline") or {},
            "facts": summary.get("facts") or {},
        }

    async def list_firing_alerts(self, node: str = "") -> list[dict[str, Any]]:
        """Alerts firing now, most severe first, optionally of one node (by id or name): what is wrong, since when, and whether someone acknowledged or silenced it."""
        node_id = await self._node_id(node) if node else None
        instances = (await self.api.get("/api/v1/alerts", node_id=node_id))["instances"]
        firing = [i for i in instances if i.get("state") == "firing"]
        firing.sort(key=lambda i: (i.get("severity") != "critical", -(i.get("fired_at") or 0)))
        return [
            {
                "id": i.get("id"),
                "alert": i.get("rule_name"),
                "severity": i.get("severity"),
                "node_id": i.get("node_id"),
                "node": (i.get("alert_labels") or {}).get("node_name") or i.get("node_id"),
                "summary": i.get("summary"),
                "labels": i.get("labels") or {},
                "since": _iso(i.get("fired_at") or i.get("started_at")),
                "acknowledged": bool(i.get("acknowledged")),
                "silenced": bool(i.get("silenced")),
                "snoozed": bool(i.get("snoozed")),
            }
            for i in firing
        ]

    async def query_metrics(self, node: str, series: list[str], range: str = "1h") -> dict[str, Any]:
        """History of a node's series (e.g. linux_host.cpu_percent, linux_host.disk_used_percent[/]) over 1h, 6h, 24h, 7d, 30d or 1y, as [time, avg, min, max] points."""
        if not series:
            available = await self.api.get(f"/api/v1/nodes/{quote(await self._node_id(node))}/series")
            raise ToolError(f"name at least one series; this node has: {', '.join(available.get('series', [])[:50])}")
        node_id = await self._node_id(node)
        return await self.api.get(f"/api/v1/nodes/{quote(node_id)}/metrics", series=",".join(series), range=range)

    async def list_jobs(self, node: str = "", state: str = "", limit: int = 20) -> list[dict[str, Any]]:
        """Recent jobs (actions run on nodes), newest first, optionally of one node or in one state (queued, running, succeeded, failed, timed_out, cancelled)."""
        node_id = await self._node_id(node) if node else None
        jobs = (await self.api.get("/api/v1/jobs", node=node_id, state=state, limit=max(1, min(int(limit), 200))))["jobs"]
        return [
            {k: j.get(k) for k in ("id", "node_id", "action", "state", "created_by", "created_at", "finished_at", "error")} | {"created_at": _iso(j.get("created_at")), "finished_at": _iso(j.get("finished_at"))}
            for j in jobs
        ]

    async def job_output(self, job_id: str) -> dict[str, Any]:
        """One job with its result and output (the output cut to 20,000 characters)."""
        job = await self.api.get(f"/api/v1/jobs/{quote(job_id)}")
        job["output"] = _clip(job.get("output") or "")
        return job

    async def list_containers(self, node: str = "") -> list[dict[str, Any]]:
        """Docker containers of one node or of every node: name, state, health, image, restart count."""
        node_ids = [await self._node_id(node)] if node else [n["id"] for n in (await self.api.get("/api/v1/nodes"))["nodes"]]
        out = []
        for node_id in node_ids:
            detail = await self.api.get(f"/api/v1/nodes/{quote(node_id)}")
            for c in ((detail.get("state") or {}).get("docker") or {}).get("containers") or ():
                out.append(
                    {
                        "node": detail["node"]["name"],
                        "name": c.get("name"),
                        "state": c.get("state"),
                        "health": c.get("health"),
                        "image": c.get("image"),
                        "restart_count": c.get("restart_count"),
                        "status": c.get("status"),
                    }
                )
        return out

    async def _integration(self, domain: str, path: str) -> Any:
        try:
            return await self.api.get(f"/api/v1/integrations/{domain}{path}")
        except ToolError as err:
            if "404" in str(err) or "503" in str(err):
                raise ToolError(f"the {domain} integration is not running on this hub ({err})") from None
            raise

    async def storage_health(self, node: str = "") -> list[dict[str, Any]]:
        """Every disk, pool, array and expected storage target with its verdict and the reasons, worst first, optionally of one node (by id or name)."""
        node_id = await self._node_id(node) if node else None
        rows = (await self._integration("storage", ""))["rows"]
        return [
            {k: r.get(k) for k in ("host", "node_id", "kind", "name", "detail", "verdict", "reasons")}
            for r in rows
            if node_id is None or r.get("node_id") == node_id
        ]

    async def backup_status(self, node: str = "") -> list[dict[str, Any]]:
        """Every backup policy and repository with its verdict (fresh, stale, failed, unverified, restore test failed), the reasons and the last backup, check and restore test, worst first, optionally of one node."""
        node_id = await self._node_id(node) if node else None
        rows = (await self._integration("backup", "/overview"))["rows"]
        return [r for r in rows if node_id is None or (r.get("node") or {}).get("id") == node_id]

    async def search_logs(self, node: str, unit: str = "", match: str = "", lines: int = 100) -> dict[str, Any]:
        """Search a node's journal (one systemd unit, or all) for a text, through its logs.journal action (needs logs.read); waits up to a minute."""
        node_id = await self._node_id(node)
        params: dict[str, Any] = {"lines": max(1, min(int(lines), 1000))}
        if unit:
            params["unit"] = unit
        if match:
            params["match"] = match
        job = await self.api.post(f"/api/v1/nodes/{quote(node_id)}/actions/logs.journal", {"params": params})
        return await self._wait(job["id"])

    async def run_action(self, node: str, action: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run a named action on a node as a job, through the node's grant and ceiling (audited as this API token). A destructive action is never run: you get its unsigned envelope and the `roost sign` command for a person."""
        node_id = await self._node_id(node)
        offered = (await self.api.get(f"/api/v1/nodes/{quote(node_id)}/actions"))["actions"]
        described = next((a for a in offered if a.get("name") == action), None)
        if described is None:
            raise ToolError(f"node {node} offers no action {action!r}; it offers: {', '.join(a['name'] for a in offered) or 'none'}")
        if described.get("destructive"):
            envelope = await self.api.post(f"/api/v1/nodes/{quote(node_id)}/actions/{quote(action)}/envelope", {"params": params or {}})
            return {
                "executed": False,
                "why": f"{action} is destructive: only a person holding the operator key can allow it",
                "summary": envelope["summary"],
                "sign_command": envelope["command"],
                "then": f"POST {envelope['submit']} with the signed envelope (or paste it into the dashboard)",
                "expires_at": _iso(envelope["expires_at"]),
            }
        job = await self.api.post(f"/api/v1/nodes/{quote(node_id)}/actions/{quote(action)}", {"params": params or {}})
        return await self._wait(job["id"])

    async def _wait(self, job_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + JOB_WAIT_SECONDS
        while True:
            job = await self.api.get(f"/api/v1/jobs/{quote(job_id)}")
            if job["state"] in ("succeeded", "failed", "timed_out", "cancelled") or time.monotonic() > deadline:
                return {
                    "job": job_id,
                    "state": job["state"],
                    "result": job.get("result"),
                    "error": job.get("error") or "",
                    "output": _clip(job.get("output") or ""),
                    "finished": job["state"] in ("succeeded", "failed", "timed_out", "cancelled"),
                }
            await asyncio.sleep(0.5)


def _iso(ts: Any) -> str | None:
    if not isinstance(ts, (int, float)) or not ts:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + f"\n… ({len(text) - MAX_TEXT} more characters)"


async def token_may_operate(api: HubAPI) -> bool:
    """Whether the token's user and scope may run actions (an operator or admin, with operate or admin scope)."""
    session = await api.get("/api/v1/session")
    scope = (session.get("token") or {}).get("scope", "")
    return session.get("role") in ("operator", "admin") and scope in ("operate", "admin")


def build_server(api: HubAPI, *, read_only: bool = True, tools: Iterable[str] | None = None) -> Any:
    """An MCPServer over the API: the read tools, plus run_action unless read-only; ``tools`` narrows the set."""
    from mcp.server.mcpserver import MCPServer
    from mcp.types import ToolAnnotations

    wanted = set(tools) if tools else set(ALL_TOOLS)
    unknown = wanted - set(ALL_TOOLS)
    if unknown:
        raise ValueError(f"unknown tools {', '.join(sorted(unknown))}; the tools are: {', '.join(ALL_TOOLS)}")
    server = MCPServer(name="roost", version=__version__, instructions=INSTRUCTIONS)
    impl = Tools(api)
    for name in READ_TOOLS:
        if name in wanted:
            server.add_tool(getattr(impl, name), name=name, annotations=ToolAnnotations(readOnlyHint=True, openWorldHint=False))
    if not read_only and "run_action" in wanted:
        server.add_tool(impl.run_action, name="run_action", annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False, openWorldHint=False))
    return server


async def serve_stdio(url: str, token: str, *, ca_file: str | None, read_only: bool, tools: Iterable[str] | None) -> None:
    api = HubAPI(url, token, ca_file=ca_file)
    try:
        may_operate = await token_may_operate(api)
        server = build_server(api, read_only=read_only or not may_operate, tools=tools)
        await server.run_stdio_async()
    finally:
        await api.close()


def read_token(path: str | None, env: str | None) -> str:
    if path:
        return Path(path).expanduser().read_text().strip()
    if env:
        return env.strip()
    raise ValueError("give the API token with --token-file FILE (or $ROOST_API_TOKEN); make one with `roost api-token create --scope read`")
