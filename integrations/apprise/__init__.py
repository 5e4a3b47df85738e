"""Apprise URLs as a notification receiver (hub only), for ntfy, Gotify, Telegram, Discord, Pushover, Matrix and the rest.

Apprise (BSD-2-Clause) makes its own connections, so the hub cannot check the
address of each one as it connects. It checks what the URL's host resolves to
just before handing the message to Apprise instead: a private, loopback or
link-local target is refused unless an admin allowed private targets for the
receiver. A name whose DNS answer changes in the instant between that check
and Apprise's own lookup is the remaining gap (docs/notifications.md).
"""

from __future__ import annotations

import asyncio
from typing import Any

import voluptuous as vol

from roost.core import hookimpl
from roost.core.hub import outbound
from roost.core.hub_integration import HubContext, NotificationReceiver
from roost.core.reads import Reads

KIND = "apprise.url"
# A hub-only integration: it reports nothing.
READS = Reads()
DEFAULT_PORTS = {"https": 443, "http": 80}


class AppriseError(RuntimeError):
    """Apprise could not deliver, or could not make sense of the URL."""


def _url(value: Any) -> str:
    if not isinstance(value, str) or "://" not in value or len(value) > 4000:
        raise vol.Invalid("must be an Apprise URL such as ntfy://ntfy.example.net/backups or tgram://BOT_TOKEN/CHAT_ID")
    import apprise

    if apprise.Apprise.instantiate(value.strip()) is None:
        raise vol.Invalid("Apprise does not understand this URL; see the Apprise wiki for the URL of each service")
    return value.strip()


SCHEMA = vol.Schema({vol.Required("url"): _url})

_NOTIFY_TYPES = {"critical": "failure", "warning": "warning", "info": "info"}


def _check_target(plugin: Any, allow_private: bool) -> None:
    host = getattr(plugin, "host", None)
    if not host:
        return  # a service whose address Apprise knows itself (a public API such as Telegram's)
    port = getattr(plugin, "port", None) or DEFAULT_PORTS["https" if getattr(plugin, "secure", False) else "http"]
    outbound.resolve_checked(str(host), int(port), allow_private=allow_private, what=f"Apprise target {host}")


async def send(settings: dict[str, Any], message: dict[str, Any]) -> None:
    import apprise

    plugin = apprise.Apprise.instantiate(settings["url"])
    if plugin is None:
        raise AppriseError("Apprise no longer understands this receiver's URL")
    await asyncio.to_thread(_check_target, plugin, bool(settings.get("allow_private", False)))
    kind = "success" if message.get("status") == "resolved" else _NOTIFY_TYPES.get(message.get("severity") or "info", "info")
    sender = apprise.Apprise()
    sender.add(plugin)
    body = message.get("body") or message.get("title") or ""
    if message.get("url"):
        body += f"\n{message['url']}"
    ok = await sender.async_notify(body=body, title=message.get("title") or "", notify_type=apprise.NotifyType(kind))
    if not ok:
        raise AppriseError(f"Apprise could not deliver to {type(plugin).__name__.removeprefix('Notify')} (its log says why)")


@hookimpl
def roost_hub_notification_receivers(ctx: HubContext) -> list[NotificationReceiver]:
    # The whole URL is secret: most services carry their token in it.
    return [NotificationReceiver(KIND, "Send each notification through an Apprise URL (ntfy, Gotify, Telegram, Discord, Pushover, Matrix, …)", SCHEMA, send, secrets=("url",))]
