"""Signed destructive operations: the envelope an operator signs away from the hub, the agent's check of it, and the operator key file.

An envelope is a JSON object that names exactly one operation::

    {"v": 1, "action": "proxmox.guest.destroy", "params": {"vmid": 101},
     "node_id": "n3f9...", "target": 101, "nonce": "<32 hex>",
     "issued_at": 1767225600, "expires_at": 1767226500,
     "key": "<operator public key, base64>", "signature": "<base64>"}

The signature is Ed25519 over ``SIGNING_CONTEXT`` followed by the canonical
JSON (sorted keys, ASCII only, no spaces; roost.core.audit.canonical_json) of
every field but ``signature``. The hub makes the unsigned envelope, stores
and forwards the signed one, and is never trusted with it: only the agent
verifies (``verify_envelope``), against operator public keys from its own
config or learned once at pairing, and remembers every nonce it accepted in
a ``NonceCache`` that survives restarts. See docs/signed-operations.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import jsonparse
from .audit import canonical_json, escape
from .identity import b64, fingerprint, load_public_key, unb64

_LOGGER = logging.getLogger(__name__)

ENVELOPE_VERSION = 1
# Domain separation: these bytes are never a node's hello, a pairing payload or anything else Roost signs.
SIGNING_CONTEXT = b"roost signed operation v1\n"
UNSIGNED_FIELDS = ("v", "action", "params", "node_id", "target", "nonce", "issued_at", "expires_at")
SIGNED_FIELDS = (*UNSIGNED_FIELDS, "key", "signature")

DEFAULT_TTL = 15 * 60
MIN_TTL = 30
MAX_TTL = 24 * 3600
DEFAULT_MAX_SKEW = 120
# Nonces are kept this long after their envelope's expiry (plus skew), so a clock set back cannot revive one.
NONCE_KEEP_EXTRA = 24 * 3600
MAX_ENVELOPE_BYTES = 64 * 1024
MAX_OPERATOR_KEYS = 16

NONCE_FILE = "nonces.db"
ENV_OPERATOR_KEY = "ROOST_OPERATOR_KEY"
# scrypt in front of the PEM's own PBKDF2 (2048 rounds is all BestAvailableEncryption gives PKCS#8):
# the same cost as dashboard passwords, about 0.1 s and 32 MiB per try.
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
MAX_SCRYPT_N = 2**20
MIN_PASSPHRASE_CHARS = 8

_ACTION_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
_NODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_NONCE_RE = re.compile(r"^[0-9a-f]{32,64}$")
_HEADER_RE = re.compile(r"^#\s*([a-z-]+):\s*(.*?)\s*$")
_KEY_FILE_NOTE = "# Roost operator key: signs destructive operations. Keep it off the hub; it is encrypted with your passphrase."


class EnvelopeError(Exception):
    """An envelope that does not authorise the operation asked for; the message says why, for a person."""


class OperatorKeyError(Exception):
    """An operator key file that cannot be made or used; the message says what to do."""


# ------------------------------------------------------------------ envelope


def canonical_bytes(envelope: Mapping[str, Any]) -> bytes:
    """The exact bytes the signature covers: the context line, then canonical JSON of every field but the signature."""
    body = {name: envelope[name] for name in (*UNSIGNED_FIELDS, "key") if name in envelope}
    return SIGNING_CONTEXT + canonical_json(_numbers(body)).encode("ascii")


def _numbers(value: Any) -> Any:
    """Whole floats as integers: a browser that parses and re-serialises the envelope turns 1.0 into 1 and 1e16 into 10000000000000000."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, Mapping):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_numbers(v) for v in value]
    return value


def make_envelope(
    action: str,
    params: Mapping[str, Any],
    node_id: str,
    target: Any,
    ttl: float = DEFAULT_TTL,
    *,
    now: float | None = None,
) -> dict[str, Any]:
    """An unsigned envelope for one run of ``action`` with ``params`` on ``node_id`` against ``target``, valid for ``ttl`` seconds."""
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise EnvelopeError(f"ttl must be between {MIN_TTL} s and {MAX_TTL // 3600} h (got {ttl:g} s)")
    issued = int(time.time() if now is None else now)
    envelope = {
        "v": ENVELOPE_VERSION,
        "action": action,
        "params": dict(params),
        "node_id": node_id,
        "target": target,
        "nonce": secrets.token_hex(16),
        "issued_at": issued,
        "expires_at": issued + int(ttl),
    }
    check_shape(envelope, signed=False)
    return envelope


def sign_envelope(envelope: Mapping[str, Any], private_key: Ed25519PrivateKey) -> dict[str, Any]:
    """The envelope with ``key`` and ``signature`` added; any earlier signature is replaced."""
    unsigned = {name: envelope[name] for name in UNSIGNED_FIELDS if name in envelope}
    extra = sorted(set(envelope) - set(SIGNED_FIELDS))
    if extra:
        raise EnvelopeError(f"the envelope has field(s) Roost does not know: {', '.join(map(_show, extra))}")
    check_shape(unsigned, signed=False)
    signed = {**unsigned, "key": public_key_of(private_key)}
    signed["signature"] = b64(private_key.sign(canonical_bytes(signed)))
    return signed


def check_shape(envelope: Any, *, signed: bool = True) -> dict[str, Any]:
    """Every field present with the right type, nothing else; says what is wrong. Checks no signature and no clock.

    The hub calls this to refuse a malformed envelope early; it proves nothing.
    """
    if not isinstance(envelope, Mapping):
        raise EnvelopeError("the envelope must be a JSON object (the output of `roost sign`)")
    if envelope.get("v") != ENVELOPE_VERSION:
        version = envelope.get("v")
        if isinstance(version, int) and not isinstance(version, bool) and version > ENVELOPE_VERSION:
            raise EnvelopeError(f"envelope version {version} is newer than this Roost understands (version {ENVELOPE_VERSION}); upgrade it")
        raise EnvelopeError(f"not a Roost signed-operation envelope (field v must be {ENVELOPE_VERSION})")
    fields = SIGNED_FIELDS if signed else UNSIGNED_FIELDS
    allowed = SIGNED_FIELDS  # an unsigned envelope may already carry an old key and signature
    missing = [name for name in fields if name not in envelope]
    if missing:
        hint = " — it is not signed yet; run it through `roost sign`" if signed and set(missing) <= {"key", "signature"} else ""
        raise EnvelopeError(f"the envelope lacks {', '.join(missing)}{hint}")
    extra = sorted(set(envelope) - set(allowed))
    if extra:
        raise EnvelopeError(f"the envelope has field(s) Roost does not know: {', '.join(map(_show, extra))}")
    if not isinstance(envelope["action"], str) or not _ACTION_RE.match(envelope["action"]) or len(envelope["action"]) > 200:
        raise EnvelopeError("the envelope's action is not a dotted action name")
    if not isinstance(envelope["params"], Mapping):
        raise EnvelopeError("the envelope's params must be a JSON object")
    if not isinstance(envelope["node_id"], str) or not _NODE_RE.match(envelope["node_id"]):
        raise EnvelopeError("the envelope's node_id is not a node id")
    target = envelope["target"]
    if isinstance(target, bool) or not isinstance(target, (str, int, type(None))) or (isinstance(target, str) and len(target) > 200):
        raise EnvelopeError("the envelope's target must be a string, an integer or null")
    if not isinstance(envelope["nonce"], str) or not _NONCE_RE.match(envelope["nonce"]):
        raise EnvelopeError("the envelope's nonce must be 32 to 64 lower-case hex digits")
    for name in ("issued_at", "expires_at"):
        value = envelope[name]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**40:
            raise EnvelopeError(f"the envelope's {name} must be whole seconds since 1970")
    if envelope["expires_at"] <= envelope["issued_at"]:
        raise EnvelopeError("the envelope expires before it was issued")
    if envelope["expires_at"] - envelope["issued_at"] > MAX_TTL:
        raise EnvelopeError(f"the envelope is valid for more than {MAX_TTL // 3600} h; ask for one with a shorter ttl")
    if signed:
        for name in ("key", "signature"):
            if not isinstance(envelope[name], str) or len(envelope[name]) > 200:
                raise EnvelopeError(f"the envelope's {name} must be base64 text")
    try:
        size = len(canonical_json(dict(envelope)))
    except (TypeError, ValueError):
        raise EnvelopeError("the envelope's params must be plain JSON (no NaN or infinity)") from None
    if size > MAX_ENVELOPE_BYTES:
        raise EnvelopeError(f"the envelope is larger than {MAX_ENVELOPE_BYTES // 1024} KiB")
    return dict(envelope)


def verify_envelope(
    envelope: Any,
    *,
    action: str,
    params: Mapping[str, Any],
    node_id: str,
    target: Any,
    operator_keys: Iterable[str],
    seen: NonceCache | None,
    now: float | None = None,
    max_skew: float = DEFAULT_MAX_SKEW,
    schema: Callable[[Any], Any] | None = None,
) -> dict[str, Any]:
    """Check that ``envelope`` authorises exactly this run here and now, and use up its nonce; raise EnvelopeError if not.

    ``params`` are the parameters about to be run (after the action's
    schema); pass ``schema`` and the signed parameters go through it too, so
    defaults filled in on this host do not count as a difference. The nonce
    is recorded in ``seen`` only when every other check passed, so a refused
    envelope can be fixed and sent again, and an accepted one never runs twice.
    Returns the verified envelope.
    """
    if envelope is None:
        raise EnvelopeError("this job carries no signed envelope; sign the operation with `roost sign` and submit the result")
    env = check_shape(envelope, signed=True)
    trusted = _trusted_keys(operator_keys)
    if not trusted:
        raise EnvelopeError(
            "this host trusts no operator key: add the public key printed by `roost operator keygen` to "
            "[agent] operator_keys in the agent config (or pair with a hub that has [hub] operator_keys)"
        )
    if env["key"] not in trusted:
        raise EnvelopeError(
            f"it is signed with operator key {_fp(env['key'])}, which this host does not trust "
            f"(it trusts {', '.join(_fp(k) for k in trusted)})"
        )
    try:
        trusted[env["key"]].verify(unb64(env["signature"]), canonical_bytes(env))
    except (ValueError, InvalidSignature):
        raise EnvelopeError("the signature does not match the envelope: it was changed after it was signed") from None
    # From here on the envelope says what the operator signed.
    if env["action"] != action:
        raise EnvelopeError(f"it is signed for action {_show(env['action'])}, not {_show(action)}")
    if env["node_id"] != node_id:
        raise EnvelopeError(f"it is signed for node {_show(env['node_id'])}, not this node ({_show(node_id)})")
    if not _same_target(env["target"], target):
        raise EnvelopeError(f"it is signed for target {_show(env['target'])}, not {_show(target)}")
    signed_params: Any = env["params"]
    if schema is not None:
        try:
            signed_params = schema(dict(signed_params))
        except Exception:
            raise EnvelopeError("the signed parameters are not valid for this action on this host") from None
    if not _same(signed_params, params):
        differing = sorted(str(k) for k in set(signed_params) | set(params) if not _same(signed_params.get(k), params.get(k)))
        raise EnvelopeError(f"the parameters differ from the signed ones ({', '.join(map(_show, differing))}); sign the operation again")
    clock = time.time() if now is None else now
    ahead = env["issued_at"] - clock
    if ahead > max_skew:
        raise EnvelopeError(
            f"it was issued {ahead:.0f} s in the future by this host's clock (at most {max_skew:g} s of clock difference is allowed); "
            "check the clocks of the hub, the signing machine and this host"
        )
    late = clock - env["expires_at"]
    if late > max_skew:
        raise EnvelopeError(f"it expired at {_iso(env['expires_at'])} ({_ago(late)} ago); sign a new one")
    if seen is None:
        raise EnvelopeError("this agent's replay cache is not open, so no signed operation can be accepted")
    if not seen.claim(env["nonce"], keep_until=env["expires_at"] + max_skew + NONCE_KEEP_EXTRA, now=clock):
        raise EnvelopeError(f"it was already used on this host (nonce {env['nonce'][:12]}…): a signed operation runs once; sign a new one")
    return env


def describe_envelope(envelope: Mapping[str, Any], *, now: float | None = None) -> str:
    """What signing this envelope authorises, for a person, one item a line; every value escaped for a terminal."""
    clock = time.time() if now is None else now
    # ASCII-only JSON escapes every control character but DEL.
    params = _json_line(envelope.get("params")).replace("\x7f", "\\u007f")
    expires = envelope.get("expires_at")
    left = ""
    if isinstance(expires, int) and not isinstance(expires, bool):
        left = f" (in {_ago(expires - clock)})" if expires > clock else f" (EXPIRED {_ago(clock - expires)} ago)"
    lines = [
        "Signing authorises exactly one run of:",
        f"  action:   {_show(envelope.get('action'))}",
        f"  node:     {_show(envelope.get('node_id'))}",
        f"  target:   {_show(envelope.get('target'))}",
        f"  params:   {params}",
        f"  issued:   {_iso(envelope.get('issued_at'))}",
        f"  expires:  {_iso(expires)}{left}",
        f"  nonce:    {_show(envelope.get('nonce'))}",
    ]
    return "\n".join(lines)


def check_before_signing(envelope: Any, *, now: float | None = None, max_skew: float = DEFAULT_MAX_SKEW) -> dict[str, Any]:
    """What `roost sign` refuses to sign: a malformed envelope, one already expired, one issued in the future by this clock."""
    env = check_shape(envelope, signed=False)
    clock = time.time() if now is None else now
    if env["expires_at"] + max_skew < clock:
        raise EnvelopeError(f"it expired at {_iso(env['expires_at'])}; ask the dashboard for a new one")
    if env["issued_at"] - clock > max_skew:
        raise EnvelopeError(f"it was issued {env['issued_at'] - clock:.0f} s in the future by this machine's clock; check the clocks")
    return env


def envelope_from_text(text: str) -> dict[str, Any]:
    """Parse an envelope handed in as JSON text; EnvelopeError when it is not JSON or too large."""
    if len(text) > MAX_ENVELOPE_BYTES:
        raise EnvelopeError(f"the envelope is larger than {MAX_ENVELOPE_BYTES // 1024} KiB")
    try:
        value = jsonparse.loads(text, parse_constant=_no_constant)
    except ValueError as err:
        raise EnvelopeError(f"the envelope is not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise EnvelopeError("the envelope must be a JSON object (the output of `roost sign`)")
    return value


def encode_envelope(envelope: Mapping[str, Any]) -> str:
    """One line of canonical JSON: what the dashboard shows and `roost sign` prints."""
    return canonical_json(dict(envelope))


def _json_line(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=True, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return escape(repr(value))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def same_params(a: Any, b: Any) -> bool:
    """Equal as JSON values: true is not 1 and "1" is not 1, but 1.0 is 1 (see _numbers)."""
    try:
        return canonical_json(_numbers(a)) == canonical_json(_numbers(b))
    except (TypeError, ValueError):
        return a == b and type(a) is type(b)


_same = same_params


def _same_target(signed: Any, actual: Any) -> bool:
    # A guest id may be a number in one place and a string in another; both name the same guest.
    if isinstance(signed, bool) or isinstance(actual, bool):
        return False
    if signed is None or actual is None:
        return signed is None and actual is None
    return str(signed) == str(actual)


def _trusted_keys(keys: Iterable[str]) -> dict[str, Any]:
    trusted = {}
    for text in keys or ():
        try:
            trusted[text] = load_public_key(text)
        except (ValueError, TypeError):
            _LOGGER.warning("ignoring operator key %r: it is not a base64 Ed25519 public key", escape(str(text))[:80])
    return trusted


def valid_operator_key(text: Any) -> str:
    """A base64 Ed25519 public key, stripped; ValueError with what to paste otherwise."""
    if not isinstance(text, str):
        raise ValueError("an operator key is a base64 Ed25519 public key (the line `roost operator keygen` prints)")
    text = text.strip()
    try:
        load_public_key(text)
    except ValueError:
        raise ValueError("not an operator public key: paste the base64 line that `roost operator keygen` or `roost operator pubkey` prints") from None
    return text


def accepted_operator_keys(keys: Any) -> list[str]:
    """The valid, distinct keys from a list a hub sent (pairing, enrolment); anything else is dropped with a warning."""
    out: list[str] = []
    for key in keys if isinstance(keys, list) else []:
        try:
            key = valid_operator_key(key)
        except ValueError:
            _LOGGER.warning("the hub sent an operator key that is not one; ignoring it")
            continue
        if key not in out:
            out.append(key)
    return out[:MAX_OPERATOR_KEYS]


def _fp(key: str) -> str:
    try:
        return fingerprint(key)
    except ValueError:
        return _show(key)


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=True) if _jsonable(value) else repr(value)
    text = escape(text)
    return text if len(text) <= 120 else text[:117] + "…"


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _iso(ts: Any) -> str:
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        return "?"
    try:
        return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return "?"


def _ago(seconds: float) -> str:
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


# -------------------------------------------------------------- nonce cache


class NonceCache:
    """Every nonce this agent accepted, in a small SQLite file, kept until its envelope could no longer be valid.

    Plain sqlite3: each claim is one short write, made durable (synchronous =
    FULL) before the operation runs, so a crash right after cannot forget it.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = path
        db = sqlite3.connect(str(path), isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout = 5000")
            if str(path) != ":memory:":
                db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.execute("CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, keep_until REAL NOT NULL, used_at REAL NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS nonces_keep_until ON nonces (keep_until)")
        except BaseException:
            db.close()
            raise
        self._db: sqlite3.Connection | None = db
        self.prune()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"{self.path}: the nonce cache is closed")
        return self._db

    def claim(self, nonce: str, *, keep_until: float, now: float | None = None) -> bool:
        """Record ``nonce`` as used; False when it was used before (nothing changes then)."""
        clock = time.time() if now is None else now
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM nonces WHERE keep_until < ?", (clock,))
            inserted = db.execute("INSERT OR IGNORE INTO nonces (nonce, keep_until, used_at) VALUES (?, ?, ?)", (nonce, keep_until, clock)).rowcount
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return inserted == 1

    def __contains__(self, nonce: object) -> bool:
        return self._conn().execute("SELECT 1 FROM nonces WHERE nonce = ?", (nonce,)).fetchone() is not None

    def __len__(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM nonces").fetchone()[0]

    def prune(self, now: float | None = None) -> int:
        """Forget nonces whose envelopes are long past their expiry; returns how many."""
        return self._conn().execute("DELETE FROM nonces WHERE keep_until < ?", (time.time() if now is None else now,)).rowcount

    def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            db.close()


# ------------------------------------------------------------- operator key


def default_operator_key_path() -> Path:
    """$ROOST_OPERATOR_KEY, else $XDG_CONFIG_HOME/roost/operator-key.pem (~/.config/...)."""
    env = os.environ.get(ENV_OPERATOR_KEY)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "roost" / "operator-key.pem"


def public_key_of(private_key: Ed25519PrivateKey) -> str:
    return b64(private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def generate_operator_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def _stretch(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    key = hashlib.scrypt(passphrase.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=2 * 128 * r * n + (1 << 20), dklen=32)
    return base64.b64encode(key)


def save_operator_key(path: Path, private_key: Ed25519PrivateKey, passphrase: str, *, scrypt_n: int = SCRYPT_N) -> str:
    """Write the key encrypted with the passphrase to a new 0600 file (never over an existing one); returns the public key."""
    path = Path(path)
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise OperatorKeyError(f"the passphrase must have at least {MIN_PASSPHRASE_CHARS} characters; a long sentence is best")
    salt = secrets.token_bytes(16)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(_stretch(passphrase, salt, scrypt_n, SCRYPT_R, SCRYPT_P)),
    )
    public = public_key_of(private_key)
    text = (
        f"{_KEY_FILE_NOTE}\n"
        f"# public-key: {public}\n"
        f"# kdf: scrypt n={scrypt_n} r={SCRYPT_R} p={SCRYPT_P} salt={b64(salt)}\n"
    ).encode("ascii") + pem
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise OperatorKeyError(f"{path} already exists; choose another --out, or move the old key away first") from None
    except OSError as err:
        raise OperatorKeyError(f"cannot create {path}: {err.strerror}") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(text)
    return public


def _read_key_file(path: Path) -> tuple[dict[str, str], bytes]:
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise OperatorKeyError(f"no operator key at {path}; make one with `roost operator keygen` or pass --key") from None
    except OSError as err:
        raise OperatorKeyError(f"cannot read {path}: {err.strerror}") from None
    start = raw.find(b"-----BEGIN ")
    if start < 0:
        raise OperatorKeyError(f"{path} is not an operator key file (no PEM block)")
    headers = {}
    for line in raw[:start].decode("utf-8", "replace").splitlines():
        match = _HEADER_RE.match(line)
        if match:
            headers[match.group(1)] = match.group(2)
    return headers, raw[start:]


def read_operator_public_key(path: Path) -> str:
    """The public key noted in a key file made by `roost operator keygen`, without the passphrase."""
    headers, _ = _read_key_file(path)
    public = headers.get("public-key", "")
    try:
        return valid_operator_key(public)
    except ValueError:
        raise OperatorKeyError(f"{path} does not note its public key; `roost sign` with it still works, and prints the key it signed with") from None


def load_operator_key(path: Path, passphrase: str) -> Ed25519PrivateKey:
    """The private key from an encrypted key file; OperatorKeyError for a wrong passphrase or a file that is not one."""
    path = Path(path)
    headers, pem = _read_key_file(path)
    password = passphrase.encode("utf-8")
    kdf = headers.get("kdf")
    if kdf:
        params = dict(part.split("=", 1) for part in kdf.split()[1:] if "=" in part)
        try:
            if not kdf.startswith("scrypt "):
                raise ValueError
            n, r, p = int(params["n"]), int(params["r"]), int(params["p"])
            salt = unb64(params["salt"])
            if not (2 <= n <= MAX_SCRYPT_N and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
                raise ValueError
        except (KeyError, ValueError):
            raise OperatorKeyError(f"{path}: the kdf line is damaged; restore the file from your backup") from None
        password = _stretch(passphrase, salt, n, r, p)
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except TypeError:
        raise OperatorKeyError(f"{path} is not encrypted; make a passphrase-protected key with `roost operator keygen`") from None
    except ValueError:
        raise OperatorKeyError(f"wrong passphrase for {path} (or the file is damaged)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise OperatorKeyError(f"{path} holds a key that is not Ed25519")
    noted = headers.get("public-key")
    if noted and noted != public_key_of(key):
        raise OperatorKeyError(f"{path}: the public key noted in the file is not this key's; the file was edited — do not use it")
    return key


def read_passphrase_file(path: Path) -> str:
    """The first line of a file, without its line ending."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise OperatorKeyError(f"cannot read passphrase file {path}: {err.strerror}") from None
    return text.splitlines()[0] if text else ""


__all__ = [
    "DEFAULT_MAX_SKEW",
    "DEFAULT_TTL",
    "ENVELOPE_VERSION",
    "EnvelopeError",
    "NonceCache",
    "OperatorKeyError",
    "accepted_operator_keys",
    "canonical_bytes",
    "check_before_signing",
    "check_shape",
    "describe_envelope",
    "encode_envelope",
    "envelope_from_text",
    "load_operator_key",
    "make_envelope",
    "read_operator_public_key",
    "save_operator_key",
    "sign_envelope",
    "valid_operator_key",
    "verify_envelope",
]
