"""Outbound safety for connections the hub makes on a user's behalf (notification receivers): no private targets unless allowed.

A receiver's URL is typed by an admin, but where it points is decided by DNS
at the moment of connecting, so the check runs on the address each socket is
about to connect to, after resolution: a name that resolved to a public
address when it was saved and to 127.0.0.1 now (DNS rebinding) is refused
just the same. Loopback, link-local (which includes the cloud metadata
address 169.254.169.254), private, carrier-grade NAT, unique-local,
multicast, reserved and unspecified addresses are all refused unless the
receiver was saved with "allow private targets" by an admin.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable
from typing import Any

import aiohttp

# Shared address space (RFC 6598) and the IPv6 metadata address some clouds use are not is_private in the stdlib.
_EXTRA_PRIVATE = (ipaddress.ip_network("100.64.0.0/10"), ipaddress.ip_network("fd00:ec2::/32"))
METADATA_ADDRESSES = frozenset({"169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200"})
CONNECT_TIMEOUT = 10.0
REQUEST_TIMEOUT = 20.0


class OutboundRefused(OSError):
    """A connection to an address the receiver may not reach; says which address and why."""


def address_problem(address: str) -> str | None:
    """Why the hub must not connect to this IP address on a user's behalf, or None when it is a public one."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if str(ip) in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    if ip.is_loopback:
        return f"{ip} is a loopback address"
    if ip.is_link_local:
        return f"{ip} is a link-local address"
    if ip.is_unspecified:
        return f"{ip} is the unspecified address"
    if ip.is_multicast:
        return f"{ip} is a multicast address"
    if ip.is_private or any(ip in net for net in _EXTRA_PRIVATE if net.version == ip.version):
        return f"{ip} is a private address"
    if ip.is_reserved or not ip.is_global:
        return f"{ip} is a reserved address"
    return None


def check_address(address: str, *, allow_private: bool, what: str = "") -> None:
    """Raise OutboundRefused unless the address is public or private targets are allowed."""
    if allow_private:
        return
    problem = address_problem(address)
    if problem is not None:
        where = f" for {what}" if what else ""
        raise OutboundRefused(
            f"refused to connect{where}: {problem}; an admin can allow private targets for this receiver if it is meant to be on the LAN"
        )


def checked_socket_factory(allow_private: bool, what: str = "") -> Callable[[Any], socket.socket]:
    """An aiohttp ``socket_factory``: checks each address aiohttp is about to connect to (after DNS) before making its socket."""

    def factory(addr_info: Any) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        check_address(str(sockaddr[0]), allow_private=allow_private, what=what)
        return socket.socket(family=family, type=type_, proto=proto)

    return factory


def session(*, allow_private: bool, what: str = "", ssl_context: ssl.SSLContext | bool | None = None, timeout: float = REQUEST_TIMEOUT) -> aiohttp.ClientSession:
    """A client session whose every connection passes ``check_address``; it never reads proxy settings from the environment."""
    connector = aiohttp.TCPConnector(
        socket_factory=checked_socket_factory(allow_private, what),
        ssl=ssl_context if ssl_context is not None else True,
        force_close=True,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=CONNECT_TIMEOUT),
        trust_env=False,
    )


def connect(host: str, port: int, *, allow_private: bool, timeout: float = CONNECT_TIMEOUT, what: str = "") -> socket.socket:
    """Resolve and connect a blocking TCP socket, checking each address before connecting to it (for smtplib, paho)."""
    last: OSError | None = None
    for family, type_, proto, _, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        check_address(str(sockaddr[0]), allow_private=allow_private, what=what)
        sock = socket.socket(family, type_, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(sockaddr)
        except OSError as err:
            sock.close()
            last = err
            continue
        return sock
    raise last or OSError(f"{host}: no address to connect to")


def resolve_checked(host: str, port: int, *, allow_private: bool, what: str = "") -> str:
    """The first address of host, checked (for clients that take an address rather than a socket); raises OutboundRefused."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    for *_, sockaddr in infos:
        check_address(str(sockaddr[0]), allow_private=allow_private, what=what)
    if not infos:
        raise OSError(f"{host}: no address to connect to")
    return str(infos[0][4][0])


__all__ = ["OutboundRefused", "address_problem", "check_address", "checked_socket_factory", "connect", "resolve_checked", "session"]
