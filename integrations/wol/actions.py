"""The Wake-on-LAN integration's action, wol.send: one magic packet for one MAC, on this agent's LAN segment."""

from __future__ import annotations

from typing import Any

import voluptuous as vol

from roost.core.actions import ActionContext, ActionError, ActionRefused, ActionSpec
from roost.integrations.fields import CheckedText, whole_number

from .const import (
    ACTION_SEND,
    ACTION_TIMEOUT_SECONDS,
    CAP_WOL_SEND,
    CONF_ALLOWED_BROADCASTS,
    CONF_ALLOWED_PORTS,
    CONF_BROADCAST,
    CONF_INTERFACE,
    CONF_PORT,
    CONF_RATE_LIMIT,
    MAGIC_PACKET_BYTES,
)
from .magic import ip_literal, mac_address, normalize_mac, send
from .policy import Destinations

SEND_SCHEMA = vol.Schema(
    {
        vol.Required("mac", description="MAC address of the machine to wake"): CheckedText(mac_address, r"^[0-9A-Fa-f:.-]{12,17}$"),
        vol.Optional("broadcast", description="where to send it: a broadcast address of this agent's networks or one it allows (default: its configured broadcast)"): CheckedText(ip_literal, r"^[0-9A-Fa-f:.]+$"),
        vol.Optional("port", description="UDP port: 7, 9 or one this agent allows (default: the configured one, usually 9)"): whole_number(min=1, max=65535, msg="must be a port number between 1 and 65535"),
    }
)


def action_specs(config: dict[str, Any]) -> list[ActionSpec]:
    return [
        ActionSpec(
            name=ACTION_SEND,
            capability=CAP_WOL_SEND,
            handler=send_packet,
            schema=SEND_SCHEMA,
            description="Send a Wake-on-LAN magic packet from this node.",
            idempotent=True,
            timeout=ACTION_TIMEOUT_SECONDS,
            rate_limit_per_minute=config[CONF_RATE_LIMIT] or None,
        )
    ]


def send_packet(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    mac = normalize_mac(params["mac"])
    host = params.get("broadcast") or ctx.config[CONF_BROADCAST]
    port = params.get("port") or ctx.config[CONF_PORT]
    why = destinations(ctx.config).refusal(host, port)
    if why:
        raise ActionRefused(why)
    try:
        send([mac], host=host, port=port, interface=ctx.config.get(CONF_INTERFACE) or None)
    except OSError as err:
        raise ActionError(f"cannot send the magic packet to {host}:{port}: {err.strerror or err}") from None
    return {"mac": mac, "broadcast": host, "port": port, "bytes": MAGIC_PACKET_BYTES, "output": f"sent a magic packet for {mac} to {host}:{port}"}


def destinations(config: dict[str, Any]) -> Destinations:
    """What this agent's owner allows: its own networks' broadcasts, the configured broadcast and port, and the allowed lists."""
    return Destinations.of(
        [config[CONF_BROADCAST], *config.get(CONF_ALLOWED_BROADCASTS, ())],
        [config[CONF_PORT], *config.get(CONF_ALLOWED_PORTS, ())],
        sender="this agent",
        broadcasts_setting="[integrations.wol] broadcast and allowed_broadcasts",
        ports_setting="[integrations.wol] port and allowed_ports",
    )
