"""How the agent trusts its hub: learn the hub's CA once (checked against a join token or a person's code comparison), then pin it."""

from __future__ import annotations

import asyncio
import http.client
import ipaddress
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from roost.core import jsonparse, protocol
from roost.core.const import HUB_IDENTITY_PATH
from roost.core.identity import fingerprint, key_digest, verify
from roost.core.pairing import new_nonce
from roost.core.tls import (
    CA_PEM_PATH,
    HubCAError,
    ca_fingerprint,
    fetch_hub_ca,
    pinned_client_context,
    verify_fingerprint,
    write_private_file,
)

if TYPE_CHECKING:
    from roost.core.identity import Identity

CA_FILE = "hub-ca.pem"
CLIENT_CERT_FILE = "client.pem"
CLIENT_KEY_FILE = "client.key"


class TrustError(Exception):
    """The hub cannot be trusted as configured; the message says what to do."""


class PairingFailed(Exception):
    """Pairing ended without approval; the message says why and what to do."""


class HubUnreachable(TrustError):
    """Nothing answers at the hub URL yet (refused, timed out, unknown name): worth trying again later."""


class HubIdentityError(TrustError):
    """The server at the hub URL could not prove it is the hub this agent enrolled with (or the join token names)."""


def unreachable(hub_url: str, err: BaseException) -> HubUnreachable:
    reason = getattr(err, "reason", None) or err
    if isinstance(reason, OSError) and reason.strerror:
        reason = reason.strerror.lower()
    return HubUnreachable(f"cannot reach the hub at {hub_url} ({reason})")


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
        try:
            ca_pem, fp = await fetch_hub_ca(host, port)
        except HubCAError as err:
            raise TrustError(f"{hub_url}: {err} — if that hub runs without TLS, use http:// (only for a hub on this host)") from None
        except OSError as err:
            raise unreachable(hub_url, err) from None
    else:
        url = hub_url.rstrip("/") + CA_PEM_PATH
        try:
            ca_pem = await asyncio.to_thread(_get_plain, url)
        except urllib.error.HTTPError as err:
            raise TrustError(f"{url} answered HTTP {err.code}: is that a Roost hub, and is the port right?") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            reason = getattr(err, "reason", err)
            if isinstance(reason, (ssl.SSLError, http.client.HTTPException)):
                raise TrustError(f"{hub_url} did not answer as a plain-HTTP Roost hub ({reason or type(reason).__name__}): if it runs with TLS, use https://") from None
            raise unreachable(hub_url, err) from None
        try:
            fp = ca_fingerprint(ca_pem)
        except Exception:
            raise TrustError(f"{url} did not send a CA certificate: is that a Roost hub, and is the port right?") from None
    if expected is not None and not verify_fingerprint(expected, fp):
        raise TrustError(
            f"the hub at {hub_url} presents a CA with fingerprint {fp}, not the one in the join token — "
            "refusing to connect (is something in the middle, or is the token from another hub?)"
        )
    return ca_pem, fp


def _get_plain(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read()


def _get_json(url: str, context: ssl.SSLContext | None) -> object:
    with urllib.request.urlopen(url, timeout=10, context=context) as resp:
        return jsonparse.loads(resp.read())


async def prove_hub_identity(hub_url: str, ssl_context: ssl.SSLContext | None, *, expected_key: str | None) -> tuple[str, str]:
    """Ask the hub to sign a fresh nonce with its identity key; (hub_id, hub_key) once it did.

    ``expected_key`` is the key fingerprint from the join token (compact or
    hex); a hub that proves another key is refused, before the token's secret
    is sent anywhere.
    """
    nonce = new_nonce()
    try:
        answer = await asyncio.to_thread(_get_json, f"{hub_url.rstrip('/')}{HUB_IDENTITY_PATH}?nonce={nonce}", ssl_context)
    except urllib.error.HTTPError as err:
        raise HubIdentityError(f"the hub at {hub_url} did not prove its identity (HTTP {err.code} from {HUB_IDENTITY_PATH}): is it a Roost hub of this version?") from None
    except (urllib.error.URLError, OSError) as err:
        raise unreachable(hub_url, err) from None
    except ValueError:
        raise HubIdentityError(f"the hub at {hub_url} answered its identity check with something other than JSON: is that a Roost hub?") from None
    if not isinstance(answer, dict) or not all(isinstance(answer.get(k), str) for k in ("hub_id", "hub_key", "signature")):
        raise HubIdentityError(f"the hub at {hub_url} answered its identity check without a hub id, key and signature")
    hub_id, hub_key = answer["hub_id"], answer["hub_key"]
    if not verify(hub_key, answer["signature"], protocol.hub_proof_payload(protocol.HUB_PROOF_IDENTITY, hub_id, "", "", nonce)):
        raise HubIdentityError(f"the hub at {hub_url} did not sign this agent's nonce with the key it names — refusing")
    if expected_key is not None and not verify_fingerprint(expected_key, key_digest(hub_key)):
        raise HubIdentityError(
            f"the server at {hub_url} proves identity key {fingerprint(hub_key)}, not the hub key in the join token — "
            "refusing to send it the token (wrong URL, something in the middle, or a token from another hub?)"
        )
    return hub_id, hub_key


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


def new_client_request(data_dir: Path, identity: Identity) -> str:
    """The CSR the hub signs for optional mTLS, for this node's own identity key (the hub issues certificates for no other).

    The key goes beside the certificate as client.key (0600), so a later key
    rotation does not strand the certificate.
    """
    from roost.core.tls import identity_csr

    write_private_file(Path(data_dir) / (CLIENT_KEY_FILE + ".new"), identity.private_pem())
    return identity_csr(identity.private_key, "roost-agent").decode()


def save_client_cert(data_dir: Path, cert_pem: str | None) -> None:
    """Install the hub-signed certificate with the key made for it."""
    pending = Path(data_dir) / (CLIENT_KEY_FILE + ".new")
    if not cert_pem or not pending.exists():
        return
    write_private_file(Path(data_dir) / CLIENT_CERT_FILE, cert_pem.encode())
    pending.replace(Path(data_dir) / CLIENT_KEY_FILE)
