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

from .app import HUB_KEY
from .auth import add_public_path

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
    app.cleanup_ctx.append(_notify_ctx)
