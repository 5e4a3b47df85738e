"""The agent's side of pairing: find a hub, ask to pair, show the code, wait for a person to approve."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import connect

from roost.core import protocol
from roost.core.capabilities import Ceiling
from roost.core.const import MAX_MESSAGE_BYTES, __version__
from roost.core.discovery import HUB_SERVICE, Found, browse
from roost.core.identity import Identity, verify
from roost.core.pairing import check_commitment, new_nonce, pair_payload, short_code

from .trust import PairingFailed
from .uplink import HANDSHAKE_TIMEOUT, ws_url

_LOGGER = logging.getLogger(__name__)

DISCOVERY_SECONDS = 3.0


@dataclass(frozen=True)
class Paired:
    node_id: str
    hub_id: str
    grants: list[str]
    client_cert: str | None = None
    operator_keys: list[str] = field(default_factory=list)
    hub_key: str = ""  # the hub's identity key, proven in the approval: pinned from now on


async def find_hub(*, interfaces: list[str] | None, timeout: float = DISCOVERY_SECONDS) -> Found:
    """The one hub announcing itself; several or none is an error that says what to do."""
    found = await browse(HUB_SERVICE, interfaces=interfaces, timeout=timeout)
    found = [f for f in found if f.addresses and f.port]
    if not found:
        raise PairingFailed("no Roost hub announced itself on this network — pass --hub https://HUB:8765")
    if len(found) > 1:
        listing = "\n".join(f"  {f.url}  (hub {f.properties.get('id', '?')})" for f in found)
        raise PairingFailed(f"several Roost hubs answered; choose one with --hub:\n{listing}")
    return found[0]


async def pair(
    hub_url: str,
    identity: Identity,
    *,
    hostname: str,
    facts: dict[str, Any],
    capabilities: list[str],
    name: str = "",
    ceiling: Ceiling,
    ca_fingerprint: str,
    ssl_context: ssl.SSLContext | None,
    show_code: Callable[[str, str, float], None],
    csr: str | None = None,
) -> Paired:
    """Ask the hub to pair and wait for the decision.

    ``ca_fingerprint`` is the fingerprint of the CA this connection is pinned
    to; it goes into the code, so a hub in the middle shows a different one.
    """
    async with connect(
        ws_url(hub_url),
        ssl=ssl_context,
        max_size=MAX_MESSAGE_BYTES,
        open_timeout=HANDSHAKE_TIMEOUT,
        ping_interval=30,
        ping_timeout=30,
        compression=None,
    ) as ws:
        challenge = protocol.parse(await asyncio.wait_for(ws.recv(), HANDSHAKE_TIMEOUT), {protocol.TYPE_CHALLENGE: protocol.CHALLENGE_SCHEMA})
        commit, hub_key = challenge.get("commitment"), challenge.get("hub_key")
        if not commit or not hub_key:
            raise PairingFailed("the hub did not commit to a pairing nonce and name its identity key; is it a Roost hub of the same version?")
        agent_nonce = new_nonce()
        await ws.send(
            protocol.encode(
                protocol.TYPE_PAIR,
                public_key=identity.public_key,
                signature=identity.sign(pair_payload(challenge["hub_id"], identity.public_key, challenge["nonce"], agent_nonce)),
                agent_nonce=agent_nonce,
                agent_version=__version__,
                hostname=hostname,
                name=name,
                facts=facts,
                capabilities=capabilities,
                ceiling=ceiling.as_dict(),
                **({"csr": csr} if csr else {}),
            )
        )
        schemas = {
            protocol.TYPE_PAIR_PENDING: protocol.PAIR_PENDING_SCHEMA,
            protocol.TYPE_PAIR_APPROVED: protocol.PAIR_APPROVED_SCHEMA,
            protocol.TYPE_PAIR_REJECTED: protocol.PAIR_REJECTED_SCHEMA,
            protocol.TYPE_ERROR: protocol.ERROR_SCHEMA,
        }
        async for raw in ws:
            if not isinstance(raw, str):
                continue
            message = protocol.parse(raw, schemas)
            kind = message["type"]
            if kind == protocol.TYPE_PAIR_PENDING:
                if not check_commitment(commit, message["hub_nonce"]):
                    raise PairingFailed("the hub's pairing nonce does not match its commitment — something is in the middle; do not approve")
                code = short_code(
                    agent_public_key=identity.public_key, ca_fingerprint=ca_fingerprint, hub_key=hub_key, agent_nonce=agent_nonce, hub_nonce=message["hub_nonce"]
                )
                show_code(code, message["request_id"], message["expires_at"])
            elif kind == protocol.TYPE_PAIR_APPROVED:
                if message["hub_id"] != challenge["hub_id"]:
                    raise PairingFailed("approval came from a different hub id")
                proof = protocol.hub_proof_payload(protocol.HUB_PROOF_PAIR, message["hub_id"], message["node_id"], challenge["nonce"], agent_nonce)
                # The key the code was made with, and no other, is the one pinned.
                if message.get("hub_key") != hub_key or not verify(hub_key, message.get("hub_signature") or "", proof):
                    raise PairingFailed("the approval is not signed by the hub identity key the pairing code was made with — refusing it")
                return Paired(
                    node_id=message["node_id"],
                    hub_id=message["hub_id"],
                    grants=message["grants"],
                    client_cert=message.get("client_cert"),
                    operator_keys=message["operator_keys"],
                    hub_key=hub_key,
                )
            elif kind == protocol.TYPE_PAIR_REJECTED:
                raise PairingFailed(f"the hub refused to pair: {message['reason']}")
            else:
                raise PairingFailed(f"the hub refused to pair ({message['code']}): {message['message']}")
    raise PairingFailed("the hub closed the connection before deciding; start the agent again")
