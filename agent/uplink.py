"""The agent's link to its hub: enrolment over HTTP, then one outbound WebSocket carrying spooled reports in order."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from roost.core import jsonparse, protocol
from roost.core.const import ENROLL_PATH, MAX_MESSAGE_BYTES, WS_PATH
from roost.core.identity import fingerprint, verify
from roost.core.pairing import new_nonce

from .trust import HubIdentityError, unreachable

if TYPE_CHECKING:
    from roost.core.identity import Identity

    from .runtime import AgentRuntime

_LOGGER = logging.getLogger(__name__)

HUB_RUNNING_MESSAGES = {
    protocol.TYPE_ACK: protocol.ACK_SCHEMA,
    protocol.TYPE_JOB: protocol.JOB_SCHEMA,
    protocol.TYPE_JOB_CANCEL: protocol.JOB_CANCEL_SCHEMA,
    protocol.TYPE_JOB_ACK: protocol.JOB_ACK_SCHEMA,
    protocol.TYPE_GRANTS: protocol.GRANTS_SCHEMA,
    protocol.TYPE_SETTINGS: protocol.SETTINGS_SCHEMA,
    protocol.TYPE_KEY_ROTATED: protocol.KEY_ROTATED_SCHEMA,
    protocol.TYPE_ERROR: protocol.ERROR_SCHEMA,
}
SEND_WINDOW = 64  # reports in flight before waiting for acks
HANDSHAKE_TIMEOUT = 10.0


class EnrollError(Exception):
    """The hub refused or could not be asked to enrol this agent."""


class AuthRejected(Exception):
    """The hub refused this node's credentials (unknown or revoked)."""


class Backoff:
    """Exponential backoff with full jitter, so a restarted hub is not hit by every agent at once."""

    def __init__(self, base: float = 1.0, cap: float = 60.0) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0

    def reset(self) -> None:
        self.attempt = 0

    def next(self) -> float:
        self.attempt += 1
        ceiling = min(self.cap, self.base * 2 ** min(self.attempt, 16))
        return random.uniform(self.base / 2, ceiling)


def ws_url(hub_url: str) -> str:
    if hub_url.startswith("https://"):
        return "wss://" + hub_url[len("https://") :] + WS_PATH
    if hub_url.startswith("http://"):
        return "ws://" + hub_url[len("http://") :] + WS_PATH
    raise ValueError(f"hub URL must start with http:// or https://, got {hub_url!r}")


def _post_json(url: str, body: dict[str, Any], timeout: float, context: ssl.SSLContext | None) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        return status, jsonparse.loads(raw)
    except ValueError:
        return status, None


async def enroll(
    hub_url: str,
    token: str,
    identity: Identity,
    *,
    hostname: str,
    name: str,
    facts: dict[str, Any],
    ssl_context: ssl.SSLContext | None = None,
    csr: str | None = None,
) -> dict[str, Any]:
    """Trade a join token for a node id bound to this agent's public key (a one-off, so plain urllib in a thread).

    The request is signed by that key (over the token, the key, the CSR, the
    time and a nonce): the hub enrols only a key whose holder asks.
    """
    timestamp, nonce = int(time.time()), new_nonce()
    body = {
        "token": token,
        "public_key": identity.public_key,
        "hostname": hostname,
        "name": name,
        "facts": facts,
        "timestamp": timestamp,
        "nonce": nonce,
        "signature": identity.sign(protocol.enroll_payload(token, identity.public_key, csr or "", timestamp, nonce)),
    }
    if csr:
        body["csr"] = csr
    try:
        status, payload = await asyncio.to_thread(_post_json, hub_url + ENROLL_PATH, body, 30, ssl_context)
    except (urllib.error.URLError, OSError) as err:
        raise unreachable(hub_url, err) from None
    if status != 200:
        reason = payload.get("error") if isinstance(payload, dict) else None
        raise EnrollError(f"hub refused enrolment (HTTP {status}): {reason or 'no reason given'}")
    if not isinstance(payload, dict) or not isinstance(payload.get("node_id"), str):
        raise EnrollError("hub answered enrolment without a node id; is that URL a Roost hub?")
    return payload


class WebSocketUplink:
    """Keeps one WebSocket to the hub open, reconnecting with jittered backoff, and drains the spool through it."""

    def __init__(
        self,
        hub_url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        backoff: Backoff | None = None,
        hub_id: str = "",
        hub_key: str = "",
    ) -> None:
        self.hub_url = hub_url
        self.ssl_context = ssl_context
        # Who the hub must prove to be on every connect: pinned at enrolment or pairing (see _check_hub).
        self.expected_hub_id = hub_id
        self.hub_key = hub_key
        self.url = ws_url(hub_url)
        self.backoff = backoff or Backoff()
        self.connected = asyncio.Event()
        self._failing = False
        self.nonce = ""
        self.hub_id = ""

    async def run(self, rt: AgentRuntime) -> None:
        await rt.first_cycle.wait()
        while True:
            try:
                await self._connection(rt)
                reason = "connection closed by the hub"
            except HubIdentityError as err:
                reason = f"{err}; no grants or jobs are taken from it"
            except AuthRejected as err:
                reason = f"hub rejected this node: {err}"
                if rt.next_identity is not None:
                    # The hub took the new key but the agent stopped before it knew: finish the rotation.
                    _LOGGER.info("trying the new key from an unfinished rotation")
                    rt.key_rotated(rt.next_identity.public_key)
                await rt.on_rejected(self.hub_url, str(err))
            except protocol.ProtocolError as err:
                reason = f"protocol error ({err.code}): {err}"
            except ConnectionClosed as err:
                reason = f"connection to the hub closed ({err.rcvd.code if err.rcvd else 'no close frame'}{': ' + err.rcvd.reason if err.rcvd and err.rcvd.reason else ''})"
            except (OSError, asyncio.TimeoutError, InvalidHandshake, InvalidURI) as err:
                reason = f"cannot reach the hub at {self.hub_url}: {err or type(err).__name__}"
            finally:
                self.connected.clear()
            delay = self.backoff.next()
            # A repeating connection error is logged once at error level, then at debug.
            if not self._failing:
                _LOGGER.error("%s; spooling reports and retrying", reason)
                self._failing = True
            else:
                _LOGGER.debug("%s; retrying in %.1f s", reason, delay)
            await asyncio.sleep(delay)

    async def _receive(self, ws: ClientConnection, schemas: dict[str, Any]) -> dict[str, Any]:
        raw = await asyncio.wait_for(ws.recv(), HANDSHAKE_TIMEOUT)
        if not isinstance(raw, str):
            raise protocol.ProtocolError(protocol.ERR_BAD_MESSAGE, "hub sent a binary frame")
        data = protocol.parse(raw, schemas)
        if data["type"] == protocol.TYPE_ERROR:
            if data["code"] == protocol.ERR_AUTH:
                raise AuthRejected(data["message"])
            raise protocol.ProtocolError(data["code"], data["message"])
        return data

    async def _connection(self, rt: AgentRuntime) -> None:
        async with connect(
            self.url,
            ssl=self.ssl_context,
            max_size=MAX_MESSAGE_BYTES * 2,
            open_timeout=HANDSHAKE_TIMEOUT,
            ping_interval=30,
            ping_timeout=30,
            compression=None,
        ) as ws:
            challenge = await self._receive(ws, {protocol.TYPE_CHALLENGE: protocol.CHALLENGE_SCHEMA, protocol.TYPE_ERROR: protocol.ERROR_SCHEMA})
            if self.expected_hub_id and challenge["hub_id"] != self.expected_hub_id:
                raise HubIdentityError(
                    f"the server at {self.hub_url} says it is hub {challenge['hub_id']!r}, but this agent is enrolled with hub "
                    f"{self.expected_hub_id!r} — refusing it (wrong --hub URL, or something else answers on that port)"
                )
            hello = rt.hello()
            hello["agent_nonce"] = agent_nonce = new_nonce()
            hello["signature"] = rt.identity.sign(protocol.auth_payload(challenge["hub_id"], rt.node_id, challenge["nonce"]))
            await ws.send(protocol.encode(protocol.TYPE_HELLO, **hello))
            welcome = await self._receive(ws, {protocol.TYPE_WELCOME: protocol.WELCOME_SCHEMA, protocol.TYPE_ERROR: protocol.ERROR_SCHEMA})
            if welcome["node_id"] != rt.node_id:
                raise protocol.ProtocolError(protocol.ERR_WRONG_NODE, "hub welcomed a different node id")
            # Nothing from this hub (grants, jobs) is taken before it proved who it is.
            hub_key = self._check_hub(challenge, welcome, rt.node_id, agent_nonce)
            await rt.hub_proven(self.hub_url, challenge["hub_id"], hub_key)
            self.nonce = challenge["nonce"]
            self.hub_id = challenge["hub_id"]
            acked = welcome["last_seq"] if welcome["epoch"] == rt.spool.epoch else 0
            if acked:
                await rt.spool.delete_upto(acked)
            if self._failing:
                _LOGGER.info("connected to the hub at %s again; sending %d spooled reports", self.hub_url, len(rt.spool))
            else:
                _LOGGER.info("connected to the hub at %s", self.hub_url)
            self._failing = False
            self.backoff.reset()
            self.connected.set()
            await rt.on_connected(self.hub_url)
            await self._pump(ws, rt, acked)

    def _check_hub(self, challenge: dict[str, Any], welcome: dict[str, Any], node_id: str, agent_nonce: str) -> str:
        """The hub's identity key, once it signed this connection's nonces with the key pinned here; HubIdentityError otherwise."""
        hub_id = challenge["hub_id"]
        key, signature = welcome.get("hub_key"), welcome.get("hub_signature")
        if not key or not signature:
            raise HubIdentityError(f"the server at {self.hub_url} did not prove it is hub {hub_id!r} (no identity signature; a Roost hub older than this agent?) — refusing it")
        if self.hub_key and key != self.hub_key:
            raise HubIdentityError(
                f"the server at {self.hub_url} proves hub key {fingerprint(key)}, but this agent pinned hub key {fingerprint(self.hub_key)} "
                f"when it enrolled — refusing it (if you rebuilt the hub on purpose, delete agent.json in this agent's data dir and enrol it again)"
            )
        proof = protocol.hub_proof_payload(protocol.HUB_PROOF_CONNECT, hub_id, node_id, challenge["nonce"], agent_nonce)
        if not verify(key, signature, proof):
            raise HubIdentityError(f"the server at {self.hub_url} did not sign this connection with the hub key it names — refusing it")
        if not self.hub_key:
            # Enrolled before hubs had identity keys: pin on this first proven connect (docs/security.md, "Upgrading").
            _LOGGER.warning(
                "pinning hub %s's identity key %s on this first connect%s",
                hub_id, fingerprint(key), " (authenticated by the pinned hub CA)" if self.ssl_context is not None else " (plain http: trusted on first use)",
            )
            self.hub_key = key
        self.expected_hub_id = hub_id
        return key

    async def _pump(self, ws: ClientConnection, rt: AgentRuntime, acked: int) -> None:
        state: dict[str, Any] = {"acked": acked}
        ack_event = asyncio.Event()

        async def receiver() -> None:
            async for msg in ws:
                if not isinstance(msg, str):
                    _LOGGER.warning("ignoring a binary frame from the hub")
                    continue
                try:
                    data = protocol.parse(msg, HUB_RUNNING_MESSAGES)
                except protocol.ProtocolError as err:
                    _LOGGER.warning("ignoring a bad message from the hub: %s", err)
                    continue
                if data["type"] == protocol.TYPE_ACK:
                    if data["seq"] > state["acked"]:
                        state["acked"] = data["seq"]
                        await rt.spool.delete_upto(data["seq"])
                        ack_event.set()
                elif data["type"] == protocol.TYPE_GRANTS:
                    rt.set_grants(data["grants"])
                elif data["type"] == protocol.TYPE_SETTINGS:
                    rt.set_integration_settings(data["domain"], data["settings"])
                elif data["type"] in (protocol.TYPE_JOB, protocol.TYPE_JOB_CANCEL, protocol.TYPE_JOB_ACK):
                    await rt.executor.handle(data)
                elif data["type"] == protocol.TYPE_KEY_ROTATED:
                    rt.key_rotated(data["public_key"])
                elif data["code"] == protocol.ERR_LIMIT:
                    # Part of a report was over the hub's series limits; it says so with every report, the log once.
                    # Without "report N" and the example names, which change every time.
                    why = data["message"].partition(": ")[2].split(" (e.g. ")[0]
                    log = _LOGGER.warning if state.get("limit") != why else _LOGGER.debug
                    state["limit"] = why
                    log("the hub stored this report without some metrics: %s", data["message"])
                else:
                    _LOGGER.error("hub reported an error (%s): %s", data["code"], data["message"])

        async def sender() -> None:
            sent = state["acked"]
            while True:
                room = SEND_WINDOW - (sent - state["acked"])
                if room <= 0:
                    ack_event.clear()
                    await ack_event.wait()
                    continue
                rows = await rt.spool.after(sent, room)
                if not rows:
                    rt.spooled.clear()
                    rows = await rt.spool.after(sent, room)
                if not rows:
                    try:
                        await asyncio.wait_for(rt.spooled.wait(), rt.settings.heartbeat)
                    except asyncio.TimeoutError:
                        await ws.send(protocol.encode(protocol.TYPE_HEARTBEAT))
                    continue
                for row in rows:
                    await ws.send(rt.report_message(row))
                    sent = row.seq

        recv_task = asyncio.create_task(receiver())
        send_task = asyncio.create_task(sender())
        await rt.executor.connected(ws.send)
        if rt.next_identity is not None:
            # The new key proves itself over this authenticated connection.
            new = rt.next_identity
            signature = new.sign(protocol.rotate_payload(self.hub_id, rt.node_id, new.public_key, self.nonce))
            await ws.send(protocol.encode(protocol.TYPE_ROTATE_KEY, new_public_key=new.public_key, signature=signature))
        try:
            done, _ = await asyncio.wait({recv_task, send_task}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # surface the error that ended the connection
        finally:
            rt.executor.disconnected()
            for task in (recv_task, send_task):
                task.cancel()
            await asyncio.gather(recv_task, send_task, return_exceptions=True)
