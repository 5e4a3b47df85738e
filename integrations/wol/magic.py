"""Magic packets: MAC and address checks, and sending through the wakeonlan package (hub and agent alike)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import voluptuous as vol

_MAC_RE = re.compile(
    r"^(?:[0-9a-f]{2}([:-])[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}|[0-9a-f]{12}|[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4})$",
    re.IGNORECASE,
)


def normalize_mac(value: Any) -> str:
    """'AA-BB-CC-DD-EE-FF', 'aabb.ccdd.eeff' or 'aabbccddeeff' -> 'aa:bb:cc:dd:ee:ff'; ValueError for anything else.

    All-zero, broadcast and multicast addresses name no machine and are refused.
    """
    if not isinstance(value, str) or not _MAC_RE.match(value.strip()):
        raise ValueError("must be a MAC address such as aa:bb:cc:dd:ee:ff")
    digits = re.sub(r"[^0-9a-f]", "", value.strip().lower())
    octets = [digits[i : i + 2] for i in range(0, 12, 2)]
    first = int(octets[0], 16)
    if digits == "0" * 12 or first & 0x01:
        raise ValueError("must be the MAC address of one machine (not zero, broadcast or multicast)")
    return ":".join(octets)


def is_universal(mac: str) -> bool:
    """A vendor-assigned (burned-in) address, not a locally administered one (bridges, veths, containers, random MACs)."""
    return not int(mac[:2], 16) & 0x02


def mac_address(value: Any) -> str:
    try:
        return normalize_mac(value)
    except ValueError as err:
        raise vol.Invalid(str(err)) from None


def ip_literal(value: Any) -> str:
    """voluptuous validator: an IP address written out (never a name to look up)."""
    try:
        return str(ipaddress.ip_address(value.strip() if isinstance(value, str) else value))
    except ValueError:
        raise vol.Invalid("must be an IP address such as 192.168.1.255 (the LAN's broadcast address) or 255.255.255.255") from None


def port_number(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise vol.Invalid("must be a port number between 1 and 65535")
    return value


PORT = port_number


def magic_packet(mac: str) -> bytes:
    """The 102-byte packet: six 0xff bytes, then the MAC sixteen times."""
    import wakeonlan

    return wakeonlan.create_magic_packet(normalize_mac(mac))


def send(macs: list[str], *, host: str, port: int, interface: str | None = None) -> None:
    """Send one magic packet per MAC to host:port (blocking; call it in a thread from async code)."""
    import wakeonlan

    wakeonlan.wake(*[normalize_mac(m) for m in macs], host=host, port=port, interface=interface)
