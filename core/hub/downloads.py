"""The hub as the source of its agents: GET /install.sh and the signed releases under /download/, plus the hub's own systemd notifications."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from roost.core import sdnotify
from roost.core.const import __version__
from roost.core.release import NAME_RE, releases_dir, stored_release, stored_releases

from .state import HUB_KEY
from .auth import ROLE_OPERATOR, ROLE_VIEWER, actor_of, add_public_path, requires

_LOGGER = logging.getLogger(__name__)

INSTALL_PATH = "/install.sh"
DOWNLOAD_PREFIX = "/download/"
SUFFIXES = {"": "application/octet-stream", ".manifest": "text/plain", ".sig": "text/plain"}


def hub_pin(config: Any, tls: Any) -> str:
    """The --pinnedpubkey value of the certificate this hub presents ("" on plain HTTP)."""
    from roost.deploy import spki_pin

    if not config.tls or tls is None:
        return ""
    return spki_pin(tls.cert_path.read_bytes())


def install_info(config: Any, tls: Any, token: str, *, hub_url: str | None = None) -> dict[str, Any]:
    """What the join-token page and `roost join-token create` print: the one-line install and a Compose service."""
    from roost.deploy import compose_snippet, install_command

    hub_url = hub_url or config.url()
    pin = hub_pin(config, tls)
    releases = sorted(stored_releases(releases_dir(config.data_dir)))
    if pin:
        command = install_command(hub_url, pin, token)
    else:
        command = f"curl -fsSL {hub_url}/install.sh | sudo sh -s -- --join {token}"
    return {
        "install_command": command,
        "releases": releases,
        "compose": compose_snippet(hub_url, token, __version__),
    }


async def install_script(request: web.Request) -> web.Response:
    """The installer for this hub; it refuses by itself, with the reason, when no release fits the host."""
    from roost.deploy import render_install_script

    hub = request.app[HUB_KEY]
    releases = await asyncio.to_thread(stored_releases, releases_dir(hub.config.data_dir))
    text = render_install_script(
        hub_url=hub.config.url(),
        pin=await asyncio.to_thread(hub_pin, hub.config, hub.tls),
        operator_keys=hub.config.operator_keys,
        releases=releases,
    )
    return web.Response(text=text, content_type="text/x-shellscript", headers={"Cache-Control": "no-store"})


async def download(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB_KEY]
    name = request.match_info["name"]
    base, suffix = name, ""
    for ending in (".manifest", ".sig"):
        if name.endswith(ending):
            base, suffix = name[: -len(ending)], ending
    if not NAME_RE.match(base):
        raise web.HTTPNotFound(text="no such download; this hub serves roost-linux-x86_64 and roost-linux-aarch64 (with .manifest and .sig)\n")
    directory = releases_dir(hub.config.data_dir)
    release = await asyncio.to_thread(stored_release, directory, base)
    if release is None:
        raise web.HTTPNotFound(text=f"this hub holds no signed {base} release; add one with `roost release add` on the hub (docs/install.md)\n")
    headers = {"Cache-Control": "no-store", "X-Roost-Version": release.version}
    if suffix == "":
        headers["X-Roost-SHA256"] = release.sha256
    return web.FileResponse(directory / name, headers={**headers, "Content-Type": SUFFIXES[suffix]})


UPDATE_ACTION = "self_update.update"
UPDATES_PATH = "/api/v1/updates"


def rollback_of(state: Any) -> dict[str, Any] | None:
    """The last rolled-back update a node reported while it backs off from it (version, reason, at, retry_after), or None.

    It arrives in the self_update state's facts (reports, not the hello); what an agent sends is not trusted to have a shape.
    """
    domain = state.get("self_update") if isinstance(state, dict) else None
    facts = domain.get("facts") if isinstance(domain, dict) else None
    failed = facts.get("update_failed") if isinstance(facts, dict) else None
    if not isinstance(failed, dict):
        return None
    number = lambda v: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None  # noqa: E731
    return {
        "version": str(failed.get("version") or "")[:64],
        "reason": str(failed.get("reason") or "no reason given")[:1000],
        "at": number(failed.get("at")),
        "retry_after": number(failed.get("retry_after")),
    }


async def _versions(hub: Any) -> list[dict[str, Any]]:
    """Every active node's agent version against the newest release this hub holds for its architecture."""
    from roost.core.release import ReleaseError, artefact_name, version_key

    releases = await asyncio.to_thread(stored_releases, releases_dir(hub.config.data_dir))
    out = []
    for node in await hub.store.list_nodes():
        if node.revoked:
            continue
        arch = str((node.facts or {}).get("arch", ""))
        release = releases.get(artefact_name(arch)) if arch else None
        try:
            outdated = bool(release and node.agent_version and version_key(node.agent_version) < version_key(release.version))
        except ReleaseError:
            outdated = False
        offered = UPDATE_ACTION in hub.jobs.actions.get(node.node_id, {})
        failed = rollback_of((await hub.store.latest_state(node.node_id)).data)
        out.append({
            "node_id": node.node_id, "name": node.name, "version": node.agent_version, "arch": arch,
            "latest": release.version if release else None, "outdated": outdated, "updatable": offered,
            "online": node.node_id in hub.jobs.channels,
            "update_failed": failed,
        })
    return out


@requires(ROLE_VIEWER)
async def list_updates(request: web.Request) -> web.Response:
    return web.json_response({"nodes": await _versions(request.app[HUB_KEY])})


@requires(ROLE_OPERATOR)
async def update_outdated(request: web.Request) -> web.Response:
    """Start self_update.update on the nodes asked for (`{"nodes": [...]}`) or on every outdated one; each is a job, audited."""
    from .jobs import JobError, job_view

    hub = request.app[HUB_KEY]
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        return web.json_response({"error": "body must be JSON"}, status=400)
    wanted = body.get("nodes") if isinstance(body, dict) else None
    if wanted is not None and (not isinstance(wanted, list) or not all(isinstance(n, str) for n in wanted) or len(wanted) > 10_000):
        return web.json_response({"error": "invalid request: nodes must be a list of node ids, or left out for every outdated node"}, status=400)
    started, skipped = [], []
    for node in await _versions(hub):
        if wanted is not None and node["node_id"] not in wanted:
            continue
        if wanted is None and not node["outdated"]:
            continue
        if not node["updatable"]:
            skipped.append({"node_id": node["node_id"], "reason": "it does not offer self_update.update (not installed by install.sh, offline, or not granted agent.update within its ceiling)"})
            continue
        try:
            job = await hub.jobs.create(node["node_id"], UPDATE_ACTION, {}, actor=actor_of(request))
        except JobError as err:
            skipped.append({"node_id": node["node_id"], "reason": str(err)})
            continue
        started.append(job_view(job))
    await hub.audit("update.requested", actor=actor_of(request), target="nodes",
                    details={"started": [j["node_id"] for j in started], "skipped": [s["node_id"] for s in skipped]})
    return web.json_response({"started": started, "skipped": skipped}, status=202 if started else 200)


async def _notify_ctx(app: web.Application) -> AsyncIterator[None]:
    """Tell systemd the hub is up (Type=notify) and ping its watchdog while the event loop runs."""
    sdnotify.notify(f"READY=1\nSTATUS=serving {app[HUB_KEY].config.url()}")
    pinger = asyncio.create_task(sdnotify.watchdog(), name="roost-watchdog")
    yield
    sdnotify.notify("STOPPING=1")
    pinger.cancel()
    await asyncio.gather(pinger, return_exceptions=True)


def setup(app: web.Application) -> None:
    app.router.add_get(INSTALL_PATH, install_script)
    app.router.add_get(DOWNLOAD_PREFIX + "{name}", download)
    add_public_path(app, INSTALL_PATH)
    add_public_path(app, DOWNLOAD_PREFIX, prefix=True)
    app.router.add_get(UPDATES_PATH, list_updates)
    app.router.add_post(UPDATES_PATH, update_outdated)
    app.cleanup_ctx.append(_notify_ctx)
