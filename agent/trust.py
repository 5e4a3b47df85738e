"""How the agent trusts its hub: learn the hub's CA once (checked against a join token or a person's code comparison), then pin it."""

from __future__ import annotations

import ipaddress
import ssl
import urllib.parse
import urllib.request
from pathlib import Path

from roost.core.tls import (
    CA_PEM_PATH,
    ca_fingerprint,
    fetch_hub_ca,
    pinned_client_context,
    verify_fingerprint,
    write_private_file,
)

CA_FILE = "hub-ca.pem"
CLIENT_CERT_FILE = "client.pem"
CLIENT_KEY_FILE = "client.key"


class TrustError(Exception):
    """The hub cannot be trusted as configured; the message says what to do."""


class PairingFailed(Exception):
    """Pairing ended without approval; the message says why and what to do."""


def _host_port(hub_url: str) -> tuple[str, int, str]:
    parsed = urllib.parse.urlsplit(hub_url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise TrustError(f"hub URL must look like https://hub.lan:8765, got {hub_url!r}")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return parsed.hostname, port, parsed.scheme


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(hub_url: str) -> str:
    """Plain http:// only to this very host; everything else goes over TLS."""
    host, _, scheme = _host_port(hub_url)
    if scheme == "http" and not is_loopback(host):
        raise TrustError(f"the agent channel is always TLS: use https:// for {host} (plain http:// is only for a hub on this host)")
    return scheme


async def learn_hub_ca(hub_url: str, *, expected: str | None = None) -> tuple[bytes, str]:
    """Fetch the hub's CA (checking that it signed the certificate the hub presents) and, when given, match its fingerprint."""
    host, port, scheme = _host_port(hub_url)
    if check_url(hub_url) == "https":
        ca_pem, fp = await fetch_hub_ca(host, port)
    else:
        import asyncio

        ca_pem = await asyncio.to_thread(_get_plain, hub_url.rstrip("/") + CA_PEM_PATH)
        fp = ca_fingerprint(ca_pem)
    if expected is not None and not verify_fingerprint(expected, fp):
        raise TrustError(
            f"the hub at {hub_url} presents a CA with fingerprint {fp}, not the one in the join token — "
            "refusing to connect (is something in the middle, or is the token from another hub?)"
        )
    return ca_pem, fp


def _get_plain(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read()


def save_ca(data_dir: Path, ca_pem: bytes) -> None:
    write_private_file(Path(data_dir) / CA_FILE, ca_pem)


def pinned_context(hub_url: str, data_dir: Path) -> ssl.SSLContext | None:
    """The TLS context for every connection to the hub: only the pinned CA is trusted; None for a loopback http:// hub."""
    if check_url(hub_url) == "http":
        return None
    path = Path(data_dir) / CA_FILE
    try:
        ca_pem = path.read_bytes()
    except FileNotFoundError:
        raise TrustError(f"no pinned hub CA at {path}: pair this agent again (delete agent.json and start it)") from None
    cert, key = Path(data_dir) / CLIENT_CERT_FILE, Path(data_dir) / CLIENT_KEY_FILE
    client = (cert, key) if cert.exists() and key.exists() else None
    return pinned_client_context(ca_pem, client_cert=client)


def new_client_request(data_dir: Path) -> str:
    """A client key kept here (0600) and the CSR the hub signs for optional mTLS."""
    from roost.core.tls import client_key_and_csr

    key_pem, csr_pem = client_key_and_csr("roost-agent")
    write_private_file(Path(data_dir) / (CLIENT_KEY_FILE + ".new"), key_pem)
    return csr_pem.decode()


def save_client_cert(data_dir: Path, cert_pem: str | None) -> None:
    """Install the hub-signed certificate with the key made for it."""
    pending = Path(data_dir) / (CLIENT_KEY_FILE + ".new")
    if not cert_pem or not pending.exists():
        return
    write_private_file(Path(data_dir) / CLIENT_CERT_FILE, cert_pem.encode())
    pending.replace(Path(data_dir) / CLIENT_KEY_FILE)
