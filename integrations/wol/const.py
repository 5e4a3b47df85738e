"""Constants of the Wake-on-LAN integration (shared with the hub's own wake endpoint)."""

from __future__ import annotations

from typing import Final

from roost.core.reads import Reads

DOMAIN: Final = "wol"
# Reports nothing on its own (only its actions answer, each under its own capability).
READS: Final = Reads()
CAP_WOL_SEND: Final = "network.wol.send"
ACTION_SEND: Final = "wol.send"

CONF_BROADCAST: Final = "broadcast"
CONF_PORT: Final = "port"
CONF_INTERFACE: Final = "interface"
CONF_RATE_LIMIT: Final = "rate_limit_per_minute"
CONF_ALLOWED_BROADCASTS: Final = "allowed_broadcasts"
CONF_ALLOWED_PORTS: Final = "allowed_ports"

DEFAULT_BROADCAST: Final = "255.255.255.255"
DEFAULT_PORT: Final = 9
DEFAULT_RATE_LIMIT: Final = 60
MAGIC_PACKET_BYTES: Final = 102
ACTION_TIMEOUT_SECONDS: Final = 10.0
