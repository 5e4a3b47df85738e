"""The agent <-> hub wire protocol: versioned JSON messages, their schemas and size limits.

Every message is a JSON object ``{"v": 1, "type": ..., ...}``. The hub opens
with ``challenge``; the agent answers ``hello`` signed with its node key; the
hub replies ``welcome`` (or ``error`` and closes). Then the agent sends
``report`` messages, each acknowledged by an ``ack`` once it is persisted, and
``heartbeat`` when it has nothing else to say.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import voluptuous as vol

from .const import MAX_MESSAGE_BYTES, PROTOCOL_VERSION
from .integration import humanize_invalid
from .jsonparse import JSONTooDeep, loads

TYPE_CHALLENGE = "challenge"
TYPE_HELLO = "hello"
TYPE_WELCOME = "welcome"
TYPE_REPORT = "report"
TYPE_ACK = "ack"
TYPE_HEARTBEAT = "heartbeat"
TYPE_ERROR = "error"
TYPE_PAIR = "pair"
TYPE_PAIR_PENDING = "pair_pending"
TYPE_PAIR_APPROVED = "pair_approved"
TYPE_PAIR_REJECTED = "pair_rejected"
TYPE_GRANTS = "grants"
# Hub-side settings of one integration for this node (a storage manifest), validated by that integration on the agent.
TYPE_SETTINGS = "settings"
TYPE_ROTATE_KEY = "rotate_key"
TYPE_KEY_ROTATED = "key_rotated"
TYPE_JOB = "job"
TYPE_JOB_CANCEL = "job_cancel"
TYPE_JOB_ACK = "job_ack"
TYPE_JOB_STARTED = "job_started"
TYPE_JOB_PROGRESS = "job_progress"
TYPE_JOB_RESULT = "job_result"
JOB_STATUSES = ("succeeded", "failed", "timed_out", "cancelled", "refused")

# Error codes sent to the peer in an ``error`` message.
ERR_BAD_JSON = "bad_json"
ERR_BAD_MESSAGE = "bad_message"
ERR_TOO_LARGE = "too_large"
ERR_UNKNOWN_TYPE = "unknown_type"
ERR_VERSION = "unsupported_version"
ERR_AUTH = "auth_failed"
ERR_WRONG_NODE = "wrong_node"
ERR_INTERNAL = "internal"
ERR_RATE_LIMITED = "rate_limited"
ERR_PAIRING = "pairing_refused"
# Part of a report was over the hub's series limits and left out; the rest was stored.
ERR_LIMIT = "limit_exceeded"

MAX_METRICS_PER_REPORT = 5000
MAX_NAME = 200
NODE_ID_RE = r"^[A-Za-z0-9_.-]{1,64}$"


class ProtocolError(Exception):
    """A message that breaks the protocol; ``code`` goes back to the peer."""

    def __init__(self, code: str, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.fatal = fatal


def _finite_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise vol.Invalid("expected a finite number")
    return float(value)


_TIMESTAMP = vol.All(vol.Coerce(float), vol.Range(min=0, max=2**33))
_STATUS = vol.Schema(
    {
        vol.Required("domain"): str,
        vol.Required("state"): str,
        vol.Optional("reason", default=""): str,
    },
    extra=vol.ALLOW_EXTRA,
)

_CEILING = vol.Schema(
    {
        vol.Required("mode"): vol.In(["read-only", "execute"]),
        vol.Required("allow"): vol.All([vol.All(str, vol.Length(max=100))], vol.Length(max=200)),
        vol.Required("deny"): vol.All([vol.All(str, vol.Length(max=100))], vol.Length(max=200)),
    }
)
_CAPABILITIES = vol.All([vol.All(str, vol.Length(max=MAX_NAME))], vol.Length(max=500))
_NONCE = vol.All(str, vol.Length(min=16, max=128))
_B64KEY = vol.All(str, vol.Length(min=40, max=60))

PAIR_SCHEMA = vol.Schema(
    {
        vol.Required("v"): int,
        vol.Required("type"): TYPE_PAIR,
        vol.Required("public_key"): _B64KEY,
        vol.Required("signature"): vol.All(str, vol.Length(max=200)),
        vol.Required("agent_nonce"): _NONCE,
        vol.Required("agent_version"): vol.All(str, vol.Length(max=50)),
        vol.Required("hostname"): vol.All(str, vol.Length(min=1, max=255)),
        # The agent's --name: two agents on one host are told apart by it (docs/security.md).
        vol.Optional("name", default=""): vol.All(str, vol.Length(max=100)),
        vol.Optional("facts", default=dict): vol.All(dict, vol.Length(max=200)),
        vol.Optional("capabilities", default=list): _CAPABILITIES,
        vol.Optional("ceiling", default=lambda: {"mode": "read-only", "allow": ["*"], "deny": []}): _CEILING,
        # For optional mTLS: the hub signs it when it approves; the key never leaves the agent.
        vol.Optional("csr"): vol.All(str, vol.Length(max=4096)),
    }
)
ROTATE_KEY_SCHEMA = vol.Schema(
    {
        vol.Required("v"): int,
        vol.Required("type"): TYPE_ROTATE_KEY,
        vol.Required("new_public_key"): _B64KEY,
        vol.Required("signature"): vol.All(str, vol.Length(max=200)),
    }
)

_JOB_ID = vol.All(str, vol.Match(r"^[A-Za-z0-9_-]{1,64}$"))
_ATTEMPT = vol.All(int, vol.Range(min=1, max=100))
MAX_JOB_TEXT = 64 * 1024

JOB_SCHEMA = vol.Schema(
    {
        vol.Required("v"): int,
        vol.Required("type"): TYPE_JOB,
        vol.Required("job_id"): _JOB_ID,
        vol.Required("attempt"): _ATTEMPT,
        vol.Required("action"): vol.All(str, vol.Length(min=3, max=MAX_NAME)),
        vol.Required("params"): dict,
        vol.Required("timeout"): vol.All(vol.Coerce(float), vol.Range(min=0.1, max=86400)),
        vol.Optional("envelope"): vol.Any(None, dict),
    },
    extra=vol.ALLOW_EXTRA,
)
JOB_CANCEL_SCHEMA = vol.Schema({vol.Required("v"): int, vol.Required("type"): TYPE_JOB_CANCEL, vol.Required("job_id"): _JOB_ID}, extra=vol.ALLOW_EXTRA)
JOB_ACK_SCHEMA = vol.Schema(
    {vol.Required("v"): int, vol.Required("type"): TYPE_JOB_ACK, vol.Required("job_id"): _JOB_ID, vol.Required("attempt"): _ATTEMPT}, extra=vol.ALLOW_EXTRA
)
JOB_STARTED_SCHEMA = vol.Schema({vol.Required("v"): int, vol.Required("type"): TYPE_JOB_STARTED, vol.Required("job_id"): _JOB_ID, vol.Required("attempt"): _ATTEMPT})
JOB_PROGRESS_SCHEMA = vol.Schema(
    {
        vol.Required("v"): int,
        vol.Required("type"): TYPE_JOB_PROGRESS,
        vol.Required("job_id"): _JOB_ID,
        vol.Required("attempt"): _ATTEMPT,
        vol.Optional("message", default=""): vol.All(str, vol.Length(max=2000)),
        vol.Optional("percent"): vol.Any(None, vol.All(vol.Coerce(float), vol.Range(min=0, max=100))),
        vol.Optional("output", default=""): vol.All(str, vol.Length(max=MAX_JOB_TEXT)),
    }
)
JOB_RESULT_SCHEMA = vol.Schema(
    {
        vol.Required("v"): int,
        vol.Required("type"): TYPE_JOB_RESULT,
        vol.Required("job_id"): _JOB_ID,
        vol.Required("attempt"): _ATTEMPT,
        vol.Required("status"): vol.In(JOB_STATUSES),
        vol.Optional("result"): object,
        vol.Optional("error", default=""): vol.All(str, vol.Length(max=4000)),
        vol.Optional("output", default=""): vol.All(str, vol.Length(max=MAX_JOB_TEXT * 4)),
    }
)

HELLO_SCHEMA = vol.Schema(
    {
        vol.Required("v"): int,
        vol.Required("type"): TYPE_HELLO,
        vol.Required("node_id"): vol.Match(NODE_ID_RE),
        vol.Required("signature"): vol.All(str, vol.Length(max=200)),
        vol.Required("agent_version"): vol.All(str, vol.Length(max=50)),
        vol.Required("epoch"): vol.All(str, vol.Length(min=1, max=64)),
        # Fresh per connection: the hub signs it in its welcome to prove which hub it is.
        vol.Optional("agent_nonce", default=""): vol.Any("", _NONCE),
        vol.Optional("hostname", default=""): vol.All(str, vol.Length(max=255)),
        vol.Optional("facts", default=dict): dict,
        vol.Optional("integrations", default=list): [_STATUS],
        vol.Optional("fields", default=dict): {str: {str: str}},
        vol.Optional("capabilities", default=list): _CAPABILITIES,
        vol.Optional("ceiling", default=lambda: {"mode": "read-only", "allow": ["*"], "deny": []}): _CEILING,
        vol.Optional("actions", default=list): vol.All([dict], vol.Length(max=500)),
        # The agent config's [agent] labels; the hub keeps the well-formed ones (docs/alerts.md, "Node labels").
        vol.Optional("labels", default=dict): dict,
    }
)

REPORT_SCHEMA = vol.Schema(
    {
        vol.Required("v"): int,
        vol.Required("type"): TYPE_REPORT,
        vol.Required("node_id"): vol.Match(NODE_ID_RE),
        vol.Required("seq"): vol.All(int, vol.Range(min=1)),
        vol.Required("collected_at"): _TIMESTAMP,
        vol.Optional("interval"): vol.All(vol.Coerce(float), vol.Range(min=0.1, max=86400)),
        vol.Optional("spool_dropped", default=0): vol.All(int, vol.Range(min=0)),
        vol.Optional("integrations", default=list): [_STATUS],
        vol.Optional("data", default=dict): {vol.Match(r"^[a-z][a-z0-9_]{0,63}$"): object},
        vol.Optional("metrics", default=dict): vol.All(
            {vol.All(str, vol.Length(min=1, max=MAX_NAME)): _finite_number},
            vol.Length(max=MAX_METRICS_PER_REPORT),
        ),
    }
)

HEARTBEAT_SCHEMA = vol.Schema({vol.Required("v"): int, vol.Required("type"): TYPE_HEARTBEAT, vol.Optional("sent_at"): _TIMESTAMP})

CHALLENGE_SCHEMA = vol.Schema(
    {
        vol.Required("v"): int,
        vol.Required("type"): TYPE_CHALLENGE,
        vol.Required("nonce"): _NONCE,
        vol.Required("hub_id"): vol.All(str, vol.Length(min=1, max=64)),
        vol.Optional("commitment"): vol.All(str, vol.Length(min=64, max=64)),
        # The hub's identity key: a pairing agent mixes it into the code and pins it once approved.
        vol.Optional("hub_key"): _B64KEY,
    },
    extra=vol.ALLOW_EXTRA,
)
PAIR_PENDING_SCHEMA = vol.Schema(
    {vol.Required("v"): int, vol.Required("type"): TYPE_PAIR_PENDING, vol.Required("request_id"): str, vol.Required("hub_nonce"): _NONCE, vol.Required("expires_at"): _TIMESTAMP},
    extra=vol.ALLOW_EXTRA,
)
PAIR_APPROVED_SCHEMA = vol.Schema(
    {
        vol.Required("v"): int,
        vol.Required("type"): TYPE_PAIR_APPROVED,
        vol.Required("node_id"): vol.Match(NODE_ID_RE),
        vol.Required("hub_id"): str,
        vol.Optional("grants", default=list): _CAPABILITIES,
        vol.Optional("client_cert"): vol.All(str, vol.Length(max=8192)),
        # Operator public keys that may sign destructive operations on this node (learned once, here).
        vol.Optional("operator_keys", default=list): vol.All([_B64KEY], vol.Length(max=16)),
        # The hub's identity key and its signature over hub_proof_payload("pair", ...): what the agent pins.
        vol.Optional("hub_key"): _B64KEY,
        vol.Optional("hub_signature"): vol.All(str, vol.Length(max=200)),
    },
    extra=vol.ALLOW_EXTRA,
)
PAIR_REJECTED_SCHEMA = vol.Schema({vol.Required("v"): int, vol.Required("type"): TYPE_PAIR_REJECTED, vol.Required("reason"): str}, extra=vol.ALLOW_EXTRA)
GRANTS_SCHEMA = vol.Schema({vol.Required("v"): int, vol.Required("type"): TYPE_GRANTS, vol.Required("grants"): _CAPABILITIES}, extra=vol.ALLOW_EXTRA)
# An integration's settings for this node: a JSON object (the message size limit bounds it), checked
# against that integration's SETTINGS_SCHEMA on the agent before anything uses it.
SETTINGS_SCHEMA = vol.Schema(
    {vol.Required("v"): int, vol.Required("type"): TYPE_SETTINGS, vol.Required("domain"): vol.Match(r"^[a-z][a-z0-9_]{0,63}$"), vol.Required("settings"): dict},
    extra=vol.ALLOW_EXTRA,
)
KEY_ROTATED_SCHEMA = vol.Schema({vol.Required("v"): int, vol.Required("type"): TYPE_KEY_ROTATED, vol.Required("public_key"): _B64KEY}, extra=vol.ALLOW_EXTRA)
WELCOME_SCHEMA = vol.Schema(
    {
        vol.Required("v"): int,
        vol.Required("type"): TYPE_WELCOME,
        vol.Required("node_id"): vol.Match(NODE_ID_RE),
        vol.Required("epoch"): str,
        vol.Required("last_seq"): vol.All(int, vol.Range(min=0)),
        # The hub proves on every connect that it holds the identity key the agent pinned.
        vol.Optional("hub_key"): _B64KEY,
        vol.Optional("hub_signature"): vol.All(str, vol.Length(max=200)),
    },
    extra=vol.ALLOW_EXTRA,
)
ACK_SCHEMA = vol.Schema({vol.Required("v"): int, vol.Required("type"): TYPE_ACK, vol.Required("seq"): vol.All(int, vol.Range(min=1))}, extra=vol.ALLOW_EXTRA)
ERROR_SCHEMA = vol.Schema(
    {vol.Required("v"): int, vol.Required("type"): TYPE_ERROR, vol.Required("code"): str, vol.Required("message"): str},
    extra=vol.ALLOW_EXTRA,
)

# What the hub may send; the agent is as strict with the hub as the hub is with it.
HUB_MESSAGES = {TYPE_CHALLENGE: CHALLENGE_SCHEMA, TYPE_WELCOME: WELCOME_SCHEMA, TYPE_ACK: ACK_SCHEMA, TYPE_ERROR: ERROR_SCHEMA}

# What the agent may send after the handshake.
AGENT_MESSAGES = {
    TYPE_REPORT: REPORT_SCHEMA,
    TYPE_HEARTBEAT: HEARTBEAT_SCHEMA,
    TYPE_ROTATE_KEY: ROTATE_KEY_SCHEMA,
    TYPE_JOB_STARTED: JOB_STARTED_SCHEMA,
    TYPE_JOB_PROGRESS: JOB_PROGRESS_SCHEMA,
    TYPE_JOB_RESULT: JOB_RESULT_SCHEMA,
}
# What the agent may open with.
AGENT_OPENERS = {TYPE_HELLO: HELLO_SCHEMA, TYPE_PAIR: PAIR_SCHEMA}


def encode(type_: str, **fields: Any) -> str:
    return json.dumps({"v": PROTOCOL_VERSION, "type": type_, **fields}, separators=(",", ":"))


def error(code: str, message: str) -> str:
    return encode(TYPE_ERROR, code=code, message=message)


def parse(text: str | bytes, schemas: dict[str, vol.Schema], *, max_bytes: int = MAX_MESSAGE_BYTES) -> dict[str, Any]:
    """Decode and validate one message; raise ProtocolError saying what was wrong."""
    if len(text) > max_bytes:
        raise ProtocolError(ERR_TOO_LARGE, f"message of {len(text)} bytes exceeds the {max_bytes}-byte limit", fatal=True)
    try:
        raw = loads(text)
    except JSONTooDeep as err:
        raise ProtocolError(ERR_BAD_JSON, f"message refused: {err}") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise ProtocolError(ERR_BAD_JSON, f"message is not valid JSON: {err}") from None
    if not isinstance(raw, dict):
        raise ProtocolError(ERR_BAD_MESSAGE, "message must be a JSON object")
    version = raw.get("v")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            ERR_VERSION,
            f"protocol version {version!r} is not supported; this hub speaks {PROTOCOL_VERSION} — upgrade the agent or hub so they match",
            fatal=True,
        )
    type_ = raw.get("type")
    schema = schemas.get(type_) if isinstance(type_, str) else None
    if schema is None:
        allowed = ", ".join(sorted(schemas))
        raise ProtocolError(ERR_UNKNOWN_TYPE, f"unknown message type {type_!r}; expected one of: {allowed}")
    if schema is REPORT_SCHEMA:
        fast = fast_report(raw)
        if fast is not None:
            return fast
    try:
        return schema(raw)
    except vol.Invalid as err:
        raise ProtocolError(ERR_BAD_MESSAGE, f"invalid {type_} message: {humanize_invalid(err)}") from None


_REPORT_KEYS = frozenset({"v", "type", "node_id", "seq", "collected_at", "interval", "spool_dropped", "integrations", "data", "metrics"})
_NODE_ID = re.compile(NODE_ID_RE)
_DOMAIN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_NUMBER = (int, float)


def fast_report(raw: dict[str, Any]) -> dict[str, Any] | None:
    """REPORT_SCHEMA's rules for the common, valid report, without voluptuous.

    Reports are the hub's hot path: validating one with voluptuous costs about
    20 times this. Anything unusual returns None and goes through the schema,
    which also words the error, so both paths accept and refuse the same
    messages (tests/core/test_protocol.py checks that they agree).
    """
    if not raw.keys() <= _REPORT_KEYS:
        return None
    node_id, seq, collected = raw.get("node_id"), raw.get("seq"), raw.get("collected_at")
    if type(node_id) is not str or not _NODE_ID.match(node_id) or type(seq) is not int or seq < 1:
        return None
    if type(collected) not in _NUMBER or not 0 <= collected <= 2**33:
        return None
    out: dict[str, Any] = {"v": raw["v"], "type": TYPE_REPORT, "node_id": node_id, "seq": seq, "collected_at": float(collected)}
    if "interval" in raw:
        interval = raw["interval"]
        if type(interval) not in _NUMBER or not 0.1 <= interval <= 86400:
            return None
        out["interval"] = float(interval)
    dropped = raw.get("spool_dropped", 0)
    if type(dropped) is not int or dropped < 0:
        return None
    out["spool_dropped"] = dropped
    statuses = raw.get("integrations", [])
    if type(statuses) is not list:
        return None
    clean_statuses = []
    for status in statuses:
        if type(status) is not dict or type(status.get("domain")) is not str or type(status.get("state")) is not str:
            return None
        reason = status.get("reason", "")
        if type(reason) is not str:
            return None
        clean_statuses.append({**status, "reason": reason})
    out["integrations"] = clean_statuses
    data = raw.get("data", {})
    if type(data) is not dict or not all(type(k) is str and _DOMAIN.match(k) for k in data):
        return None
    out["data"] = data
    metrics = raw.get("metrics", {})
    if type(metrics) is not dict or len(metrics) > MAX_METRICS_PER_REPORT:
        return None
    clean: dict[str, float] = {}
    for name, value in metrics.items():
        if type(name) is not str or not 1 <= len(name) <= MAX_NAME or type(value) not in _NUMBER or not math.isfinite(value):
            return None
        clean[name] = float(value)
    out["metrics"] = clean
    return out


def rotate_payload(hub_id: str, node_id: str, new_public_key: str, nonce: str) -> bytes:
    """What the NEW key signs to take over a node: bound to this hub, node and connection."""
    return f"roost-rotate-v{PROTOCOL_VERSION}\n{hub_id}\n{node_id}\n{new_public_key}\n{nonce}".encode()


def auth_payload(hub_id: str, node_id: str, nonce: str) -> bytes:
    """The bytes an agent signs to prove its key; binding the hub id stops relaying to another hub."""
    return f"roost-auth-v{PROTOCOL_VERSION}\n{hub_id}\n{node_id}\n{nonce}".encode()


HUB_PROOF_CONNECT = "connect"
HUB_PROOF_PAIR = "pair"
HUB_PROOF_IDENTITY = "identity"


def hub_proof_payload(context: str, hub_id: str, node_id: str, nonce: str, agent_nonce: str) -> bytes:
    """What the hub's identity key signs to prove which hub it is.

    ``context`` keeps a proof made for one step (connect, pair, identity)
    from being replayed as another; the agent's fresh nonce keeps it from
    being replayed at all, and the node id and the hub's own nonce bind it
    to this node and this connection.
    """
    return f"roost-hub-proof-v{PROTOCOL_VERSION}\n{context}\n{hub_id}\n{node_id}\n{nonce}\n{agent_nonce}".encode()


def enroll_payload(token: str, public_key: str, csr: str, timestamp: int, nonce: str) -> bytes:
    """What an enrolling agent signs with the key it enrols: proves it holds that key, for this token and this CSR, now."""
    return f"roost-enroll-v{PROTOCOL_VERSION}\n{token}\n{public_key}\n{csr}\n{int(timestamp)}\n{nonce}".encode()
