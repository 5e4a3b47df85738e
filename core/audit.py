"""The audit chain: canonical encoding, hashing and verification of audit entries, shared by the hub and the agent.

Every entry carries the hash of the entry before it, so an edit, a deletion,
an insertion or a reordering anywhere breaks a link that ``verify`` finds.

    hash = sha256(prev_hash || canonical(seq, ts, action, actor, target, outcome, peer, details))

``canonical`` is JSON with sorted keys, ASCII only (every control character
and every non-ASCII character becomes a ``\\uXXXX`` escape), no NaN or
infinity, no spaces. The first entry's ``prev_hash`` is ``GENESIS_HASH``.

A chain alone cannot show that its newest entries were cut off, so every
append also records the *head* (entry count and last hash) next to the
chain; ``verify`` compares the two. Someone with write access to the
database can rewrite chain and head together; the defence against that is a
head kept elsewhere — noted down from ``roost audit head`` or forwarded —
and checked with ``roost audit verify --head COUNT:HASH``. See docs/audit.md.

Nothing here touches a database: the hub's store and the agent's local log
both build on these functions.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from collections import OrderedDict
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

GENESIS_HASH = "0" * 64

OUTCOME_OK = "ok"
OUTCOME_REFUSED = "refused"
OUTCOME_FAILED = "failed"
OUTCOMES = (OUTCOME_OK, OUTCOME_REFUSED, OUTCOME_FAILED)

# Events the core records itself; integrations and later features add their own
# dotted names (``login.failed``, ``pairing.approved``, ``job.started``...).
ACTION_NODE_ENROLLED = "node.enrolled"
ACTION_NODE_ENROLMENT_REFUSED = "node.enrolment_refused"
ACTION_JOIN_TOKEN_CREATED = "join_token.created"
ACTION_JOIN_TOKEN_REVOKED = "join_token.revoked"
ACTION_AGENT_STARTED = "agent.started"
ACTION_AGENT_STOPPED = "agent.stopped"
ACTION_AGENT_ENROLLED = "agent.enrolled"
ACTION_AGENT_ENROLMENT_REFUSED = "agent.enrolment_refused"
ACTION_AGENT_CONNECTED = "agent.connected"
ACTION_AGENT_REJECTED = "agent.rejected"

# Entries stay small: long names are cut, oversized details are replaced.
MAX_ACTION_CHARS = 64
MAX_NAME_CHARS = 200
MAX_DETAIL_STRING_CHARS = 500
MAX_DETAILS_BYTES = 4096
MAX_DETAILS_DEPTH = 4
REDACTED = "[redacted]"
# Keys whose values must never reach the log, whatever a caller passes.
_SECRET_KEY = re.compile(r"pass(word|phrase)?|secret|private|credential|session|cookie|csrf|authorization", re.I)
_ACTION = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)+")
_HASH = re.compile(r"[0-9a-f]{64}")

# How far verify looks back and ahead to tell an insertion from a deletion or a
# reordering once a link is broken; beyond that it still finds the break.
CLASSIFY_WINDOW = 4096

KIND_EDITED = "edited"
KIND_DELETED = "deleted"
KIND_INSERTED = "inserted"
KIND_REORDERED = "reordered"
KIND_TRUNCATED = "truncated"
KIND_MALFORMED = "malformed"
KIND_HEAD = "head"

ENTRY_FIELDS = ("seq", "ts", "action", "actor", "target", "outcome", "peer", "details", "prev_hash", "hash")


# --------------------------------------------------------------------- entries


class AuditWriteError(RuntimeError):
    """An audit entry could not be written; the action that wanted it must not go ahead as if it had been."""



@dataclass(frozen=True)
class AuditRecord:
    """What happened, checked and normalized, before it gets its place in a chain."""

    action: str
    actor: str
    target: str = ""
    outcome: str = OUTCOME_OK
    peer: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditEntry:
    """One link of the chain, as stored."""

    seq: int
    ts: float
    action: str
    actor: str
    target: str
    outcome: str
    peer: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ENTRY_FIELDS}


@dataclass(frozen=True)
class AuditHead:
    """How many entries the chain has and the hash of the last one."""

    count: int
    hash: str
    ts: float = 0.0  # the last entry's ts; appends never go below it

    def to_json(self) -> str:
        return json.dumps({"count": self.count, "hash": self.hash, "ts": self.ts}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AuditHead:
        data = json.loads(text)
        return cls(count=int(data["count"]), hash=str(data["hash"]), ts=float(data.get("ts", 0.0)))

    def __str__(self) -> str:
        return f"{self.count}:{self.hash}"

    @classmethod
    def parse(cls, text: str) -> AuditHead:
        """Read a head written as ``COUNT:HASH`` (the hash may be shortened to 12 or more hex digits)."""
        count, sep, digest = text.strip().partition(":")
        digest = digest.strip().lower()
        if not sep or not count.strip().isdigit() or not 12 <= len(digest) <= 64 or not re.fullmatch(r"[0-9a-f]+", digest):
            raise ValueError(f"{text!r} is not an audit head; it looks like COUNT:HASH, as `roost audit head` prints it")
        return cls(count=int(count), hash=digest)


EMPTY_HEAD = AuditHead(count=0, hash=GENESIS_HASH)


def _clean_text(value: str) -> str:
    """A string that survives UTF-8 storage: lone surrogates become U+FFFD."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(char) <= 0xDFFF else char for char in value)
    return value


def _cut(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _name(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"audit {what} must be a string, not {type(value).__name__}")
    return _cut(_clean_text(value), MAX_NAME_CHARS)


def _plain(value: Any, depth: int) -> Any:
    """JSON-safe copy of a details value: strings cut, secrets redacted, non-finite numbers as strings."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return _cut(_clean_text(value), MAX_DETAIL_STRING_CHARS)
    if depth >= MAX_DETAILS_DEPTH:
        return _cut(_clean_text(str(value)), MAX_DETAIL_STRING_CHARS)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            key = _cut(_clean_text(str(key)), MAX_NAME_CHARS)
            out[key] = REDACTED if _SECRET_KEY.search(key) else _plain(item, depth + 1)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [_plain(item, depth + 1) for item in items]
    return _cut(_clean_text(str(value)), MAX_DETAIL_STRING_CHARS)


def normalize_details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    """The details as they will read back from storage, so the hash stays the same after a round trip."""
    if not details:
        return {}
    plain = _plain(dict(details), 0)
    encoded = _json(plain)
    if len(encoded) > MAX_DETAILS_BYTES:
        return {"truncated": True, "bytes": len(encoded), "keys": sorted(plain)[:20]}
    return json.loads(encoded)


def make_record(
    action: str,
    *,
    actor: str,
    target: str = "",
    outcome: str = OUTCOME_OK,
    details: Mapping[str, Any] | None = None,
    peer: str = "",
) -> AuditRecord:
    """Check and normalize one event. Raises ValueError for a malformed action or an unknown outcome.

    Names and details are data: control characters are kept as they are and
    become escapes in the canonical encoding and on every screen.
    """
    if not isinstance(action, str) or len(action) > MAX_ACTION_CHARS or not _ACTION.fullmatch(action):
        raise ValueError(f"audit action {action!r} must be dotted lower-case words such as 'login.failed'")
    if outcome not in OUTCOMES:
        raise ValueError(f"audit outcome {outcome!r} must be one of {', '.join(OUTCOMES)}")
    actor = _name(actor, "actor")
    if not actor:
        raise ValueError("an audit entry needs an actor ('system' when nobody in particular)")
    return AuditRecord(
        action=action,
        actor=actor,
        target=_name(target, "target"),
        outcome=outcome,
        peer=_name(peer, "peer"),
        details=normalize_details(details),
    )


# ------------------------------------------------------------------- hashing


def canonical_json(value: Any) -> str:
    """JSON with sorted keys, ASCII only, no NaN, no spaces: how details are hashed and stored."""
    return json.dumps(value, sort_keys=True, ensure_ascii=True, allow_nan=False, separators=(",", ":"))


_json = canonical_json


def canonical(
    *, seq: int, ts: float, action: str, actor: str, target: str, outcome: str, peer: str, details: Mapping[str, Any]
) -> bytes:
    """The exact bytes an entry's hash covers (all but prev_hash, which is prefixed, and hash itself)."""
    body = {
        "seq": int(seq),
        "ts": float(ts),
        "action": action,
        "actor": actor,
        "target": target,
        "outcome": outcome,
        "peer": peer,
        "details": details,
    }
    return _json(body).encode("ascii")


def entry_hash(prev_hash: str, **fields: Any) -> str:
    """sha256(prev_hash || canonical entry) as lower-case hex."""
    digest = hashlib.sha256(prev_hash.encode("ascii", "replace"))
    digest.update(canonical(**fields))
    return digest.hexdigest()


def _hash_of(entry: AuditEntry) -> str:
    return entry_hash(
        entry.prev_hash,
        seq=entry.seq,
        ts=entry.ts,
        action=entry.action,
        actor=entry.actor,
        target=entry.target,
        outcome=entry.outcome,
        peer=entry.peer,
        details=entry.details,
    )


def chain(record: AuditRecord, *, head: AuditHead, now: float) -> AuditEntry:
    """The entry that follows ``head``: next seq, its prev_hash, and a ts that never goes backwards.

    Wall clocks do step back (NTP, a wrong RTC at boot); clamping keeps ts
    ordered so that a reordering shows, at the cost of a too-late ts for
    entries written while the clock was behind.
    """
    seq = head.count + 1
    ts = max(round(float(now), 6), head.ts)
    fields = {
        "seq": seq,
        "ts": ts,
        "action": record.action,
        "actor": record.actor,
        "target": record.target,
        "outcome": record.outcome,
        "peer": record.peer,
        "details": record.details,
    }
    return AuditEntry(**fields, prev_hash=head.hash, hash=entry_hash(head.hash, **fields))


def head_after(entry: AuditEntry) -> AuditHead:
    return AuditHead(count=entry.seq, hash=entry.hash, ts=entry.ts)


def resume_head(recorded: str | None, tail: Sequence[Any] | None) -> tuple[AuditHead, str]:
    """The head the next append chains from, given the stored head (JSON) and the last row (seq, hash, ts).

    Appends chain from the recorded head, not from the last row, so that a
    cut-off tail stays visible as a gap instead of being papered over. Only
    when the head itself is gone (or unreadable) does the last row stand in,
    rather than forking a second chain at seq 1. The second value says what
    looks tampered with ('' when nothing does).
    """
    head = parse_head(recorded) if recorded is not None else None
    if head is None:
        if tail:
            return AuditHead(count=int(tail[0]), hash=str(tail[1]), ts=float(tail[2])), f"its head is missing; continuing after entry {tail[0]}"
        return EMPTY_HEAD, ""
    if tail is None or tail[0] != head.count or tail[1] != head.hash:
        return head, f"the last entry is {tail[0] if tail else 'none'} but the head records {head.count}"
    return head, ""


def parse_head(text: Any) -> AuditHead | None:
    """A stored head, or None when it is unreadable (verify reports that; appends go on)."""
    try:
        return AuditHead.from_json(text)
    except (ValueError, KeyError, TypeError):
        return None


def entry_from_row(row: Mapping[str, Any] | Any) -> AuditEntry:
    """An entry from a stored row (a mapping or a sequence in ENTRY_FIELDS order, details as JSON text or a dict).

    Undecodable details stay a string, which no longer hashes the same: verify
    then reports the entry as edited instead of this function failing.
    """
    values = dict(row) if isinstance(row, Mapping) else dict(zip(ENTRY_FIELDS, row))
    details = values.get("details")
    if isinstance(details, str | bytes):
        try:
            details = json.loads(details)
        except ValueError:
            pass
    values["details"] = details
    return AuditEntry(**{name: values.get(name) for name in ENTRY_FIELDS})


# -------------------------------------------------------------------- output


_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\", '"': '\\"'}


def escape(text: str, *, quotes: bool = True) -> str:
    """Text safe for one terminal or log line: control, format and separator characters become escapes.

    Backslash is escaped too, so an escape sequence typed into a name never
    looks like one that was produced here; so is the double quote, unless
    ``quotes`` is False (the process log, which never quotes a value itself).
    """
    out = []
    for char in text:
        if char == '"' and not quotes:
            out.append(char)
        elif char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp", "Co", "Cn"):
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(char)
    return "".join(out)


def _field(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if text and re.fullmatch(r"[A-Za-z0-9_.:@/+-]+", text):
        return text
    return f'"{escape(text)}"'


def iso(ts: float) -> str:
    try:
        return datetime.fromtimestamp(float(ts), timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except (TypeError, ValueError, OverflowError, OSError):
        return escape(repr(ts))


def format_entry(entry: AuditEntry) -> str:
    """One line per entry; nothing in a name or detail can start a new line or pass for another field."""
    parts = [f"#{entry.seq}", iso(entry.ts), _field(entry.action), f"outcome={_field(entry.outcome)}", f"actor={_field(entry.actor)}"]
    if entry.target:
        parts.append(f"target={_field(entry.target)}")
    if entry.peer:
        parts.append(f"peer={_field(entry.peer)}")
    if entry.details:
        try:
            # ASCII-only JSON escapes every control character but DEL.
            details = _json(entry.details).replace("\x7f", "\\u007f")
        except (TypeError, ValueError):
            details = escape(repr(entry.details))
        parts.append(f"details={details}")
    return " ".join(parts)


# -------------------------------------------------------------- verification


@dataclass(frozen=True)
class Problem:
    """The first thing wrong with a chain."""

    kind: str  # edited, deleted, inserted, reordered, truncated, malformed, head
    seq: int | None  # the first entry (by seq) that is wrong or missing
    message: str
    entry: AuditEntry | None = None  # the entry where it showed, for display

    def __str__(self) -> str:
        where = f"entry {self.seq}" if self.seq is not None else "the log"
        return f"{where}: {self.kind} — {self.message}"


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    count: int  # entries read
    last_seq: int
    last_hash: str
    problem: Problem | None = None
    head: AuditHead | None = None

    def to_dict(self) -> dict[str, Any]:
        problem = None
        if self.problem is not None:
            problem = {
                "kind": self.problem.kind,
                "seq": self.problem.seq,
                "message": self.problem.message,
                "entry": self.problem.entry.to_dict() if self.problem.entry else None,
            }
        return {
            "ok": self.ok,
            "count": self.count,
            "last_seq": self.last_seq,
            "last_hash": self.last_hash,
            "head": {"count": self.head.count, "hash": self.head.hash} if self.head else None,
            "problem": problem,
        }


def _malformed(entry: Any) -> str:
    if not isinstance(entry, AuditEntry):
        return f"not an audit entry ({type(entry).__name__})"
    if type(entry.seq) is not int or entry.seq < 1:
        return f"seq {entry.seq!r} is not a positive integer"
    if isinstance(entry.ts, bool) or not isinstance(entry.ts, int | float) or not math.isfinite(entry.ts):
        return f"ts {entry.ts!r} is not a time"
    for name in ("action", "actor", "target", "outcome", "peer"):
        if not isinstance(getattr(entry, name), str):
            return f"{name} is not text"
    for name in ("prev_hash", "hash"):
        value = getattr(entry, name)
        if not isinstance(value, str) or not _HASH.fullmatch(value):
            return f"{name} is not a sha256 hex digest"
    if not isinstance(entry.details, dict):
        return "details are not a JSON object"
    return ""


def _self_ok(entry: AuditEntry) -> bool:
    try:
        return _hash_of(entry) == entry.hash
    except (TypeError, ValueError):
        return False


class Verifier:
    """Checks a chain fed to it oldest first, one entry at a time, in bounded memory.

    It stops at the first problem. To say what kind of problem a broken link
    is, it remembers the hashes of the last CLASSIFY_WINDOW entries and, once a
    link breaks, reads up to CLASSIFY_WINDOW entries further before deciding.
    ``anchors`` are heads noted earlier (``COUNT:HASH``): entry COUNT must
    still have that hash, which catches a rewrite of chain and head together.
    """

    def __init__(self, anchors: Iterable[AuditHead] = ()) -> None:
        self.count = 0
        self._prev: AuditEntry | None = None
        self._recent: OrderedDict[str, int] = OrderedDict()  # hash -> seq of recent good entries
        self._anchors = {a.count: a.hash for a in anchors if a.count > 0}
        self._anchors_seen: set[int] = set()
        self.problem: Problem | None = None
        # Set while reading ahead after a broken link.
        self._broken: AuditEntry | None = None
        self._ahead: list[AuditEntry] = []

    @property
    def done(self) -> bool:
        return self.problem is not None

    def feed(self, entry: AuditEntry) -> bool:
        """Take the next entry; returns False once a problem is known and more entries would not change it."""
        if self.problem is not None:
            return False
        if self._broken is not None:
            self._ahead.append(entry)
            if len(self._ahead) >= CLASSIFY_WINDOW:
                self._classify_break()
            return self.problem is None
        self.count += 1
        why = _malformed(entry)
        if why:
            seq = entry.seq if isinstance(entry, AuditEntry) and type(entry.seq) is int else None
            self._fail(KIND_MALFORMED, seq, why, entry if isinstance(entry, AuditEntry) else None)
            return False
        prev = self._prev
        expected = prev.seq + 1 if prev else 1
        if entry.seq < expected:
            self._fail(KIND_REORDERED, entry.seq, f"seq {entry.seq} comes after seq {expected - 1}; entries are out of order", entry)
            return False
        if entry.seq > expected:
            missing = f"{expected}" if entry.seq == expected + 1 else f"{expected}–{entry.seq - 1}"
            self._fail(KIND_DELETED, expected, f"entry {missing} is missing (the log jumps from {expected - 1} to {entry.seq})", entry)
            return False
        want_prev = prev.hash if prev else GENESIS_HASH
        if entry.prev_hash != want_prev:
            self._broken = entry
            return True
        if not _self_ok(entry):
            self._fail(KIND_EDITED, entry.seq, "its contents no longer match its hash", entry)
            return False
        if prev is not None and entry.ts < prev.ts:
            self._fail(KIND_REORDERED, entry.seq, f"its time is earlier than entry {prev.seq}'s; entries were moved", entry)
            return False
        anchor = self._anchors.get(entry.seq)
        if anchor is not None:
            self._anchors_seen.add(entry.seq)
            if not entry.hash.startswith(anchor):
                self._fail(
                    KIND_EDITED,
                    entry.seq,
                    f"its hash {entry.hash[:16]}… is not the {anchor[:16]}… noted down for it; the log was rewritten up to here",
                    entry,
                )
                return False
        self._prev = entry
        self._recent[entry.hash] = entry.seq
        if len(self._recent) > CLASSIFY_WINDOW:
            self._recent.popitem(last=False)
        return True

    def _fail(self, kind: str, seq: int | None, message: str, entry: AuditEntry | None = None) -> None:
        if self.problem is None:
            self.problem = Problem(kind=kind, seq=seq, message=message, entry=entry)

    def _classify_break(self) -> None:
        """``entry.prev_hash`` is not the previous entry's hash: say why, using what came before and after."""
        entry, ahead = self._broken, self._ahead
        assert entry is not None
        self._broken, self._ahead = None, []
        prev = self._prev
        later = [e for e in ahead if isinstance(e, AuditEntry) and not _malformed(e)]
        # A copy of an earlier entry written over this one (a replay).
        if entry.hash in self._recent:
            self._fail(KIND_EDITED, entry.seq, f"it was overwritten with a copy of entry {self._recent[entry.hash]}", entry)
            return
        # An earlier entry this one links to: everything in between was slipped in.
        if entry.prev_hash in self._recent and prev is not None and entry.prev_hash != prev.hash:
            first = self._recent[entry.prev_hash] + 1
            self._fail(
                KIND_INSERTED,
                first,
                f"entry {entry.seq} links to entry {first - 1}, so entries {first}–{entry.seq - 1} were inserted",
                entry,
            )
            return
        # A later entry this one links to: entries were moved.
        for other in later:
            if other.hash == entry.prev_hash:
                self._fail(KIND_REORDERED, entry.seq, f"it links to an entry that now comes later (at seq {other.seq})", entry)
                return
        # The previous entry's hash is what a later entry links to: this one was slipped in.
        if prev is not None:
            for other in later:
                if other.prev_hash == prev.hash:
                    self._fail(
                        KIND_INSERTED,
                        entry.seq,
                        f"entry {other.seq} links to entry {prev.seq}, so entries {entry.seq}–{other.seq - 1} were inserted",
                        entry,
                    )
                    return
        if not _self_ok(entry):
            # Renumbered after the entry it links to was removed.
            self._fail(KIND_DELETED, entry.seq, "the entry it links to is gone and the ones after it were renumbered", entry)
            return
        if prev is None:
            self._fail(KIND_DELETED, 1, "the first entry does not start the chain; earlier entries were removed", entry)
            return
        self._fail(
            KIND_EDITED,
            prev.seq,
            f"entry {entry.seq} recorded a different hash for it; it was changed and its hash recomputed",
            prev,
        )

    def finish(self, head: AuditHead | None) -> VerifyResult:
        """End of the chain: compare it with the recorded head and the anchors."""
        if self._broken is not None:
            self._classify_break()
        last = self._prev
        last_seq, last_hash = (last.seq, last.hash) if last else (0, GENESIS_HASH)
        if self.problem is None:
            self._check_head(head, last)
        if self.problem is None:
            for count in sorted(set(self._anchors) - self._anchors_seen):
                if count > last_seq:
                    self._fail(KIND_TRUNCATED, last_seq + 1, f"a head noted earlier says the log had {count} entries; it now ends at {last_seq}")
                    break
        return VerifyResult(
            ok=self.problem is None, count=self.count, last_seq=last_seq, last_hash=last_hash, problem=self.problem, head=head
        )

    def _check_head(self, head: AuditHead | None, last: AuditEntry | None) -> None:
        last_seq = last.seq if last else 0
        if head is None:
            if last is not None:
                self._fail(KIND_HEAD, None, f"the recorded head is missing but the log has {last_seq} entries; it was removed")
            return
        if head.count > last_seq:
            self._fail(
                KIND_TRUNCATED,
                last_seq + 1,
                f"the log ends at entry {last_seq} but its head records {head.count}; the newest entries were deleted",
            )
        elif head.count < last_seq:
            self._fail(
                KIND_INSERTED,
                head.count + 1,
                f"the head records {head.count} entries but the log goes on to {last_seq}; entries were added without the hub",
                last,
            )
        elif last is not None and head.hash != last.hash:
            self._fail(KIND_EDITED, None, "the last entry's hash is not the recorded head's; the log was rewritten", last)


def verify(entries: Iterable[AuditEntry], head: AuditHead | None = None, *, anchors: Iterable[AuditHead] = ()) -> VerifyResult:
    """Check a whole chain, oldest first, against its head (None: no head recorded)."""
    verifier = Verifier(anchors)
    for entry in entries:
        if not verifier.feed(entry):
            break
    return verifier.finish(head)


async def verify_live(
    entries_after: Callable[[int], AsyncIterable[AuditEntry]],
    read_head: Callable[[], Awaitable[AuditHead | None]],
    *,
    anchors: Iterable[AuditHead] = (),
) -> VerifyResult:
    """Verify a chain that may be growing while it is read.

    The head is read after the entries; entries appended meanwhile are read
    in another round, so a busy log does not look truncated, and every entry
    read is covered by the head compared with it.
    """
    verifier = Verifier(anchors)
    last = 0
    while True:
        progressed = False
        async for entry in entries_after(last):
            progressed = True
            if isinstance(entry.seq, int) and entry.seq > last:
                last = entry.seq
            if not verifier.feed(entry):
                return verifier.finish(await read_head())
        head = await read_head()
        if head is None or head.count <= last or not progressed:
            return verifier.finish(head)


HEAD_KEY = "audit_head"
_ROW_COLUMNS = "seq, ts, action, actor, target, outcome, peer, details, prev_hash, hash"


async def append_in_transaction(db: Any, record: Any, *, now: float) -> tuple[AuditEntry, str | None]:
    """Chain one record onto the log in ``db`` (an aiosqlite connection inside an open write transaction).

    Shared by the hub's store and the agent's local log, which keep the same
    ``audit_log`` and ``meta`` tables. Returns the entry and, when the stored
    head and the table's tail disagree, what looks tampered.
    """
    rows = await db.execute_fetchall("SELECT value FROM meta WHERE key = ?", (HEAD_KEY,))
    tail = await db.execute_fetchall("SELECT seq, hash, ts FROM audit_log ORDER BY seq DESC LIMIT 1")
    head, tampered = resume_head(next(iter(rows), (None,))[0], next(iter(tail), None))
    entry = chain(record, head=head, now=now)
    await db.execute(
        f"INSERT INTO audit_log ({_ROW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (entry.seq, entry.ts, entry.action, entry.actor, entry.target, entry.outcome, entry.peer, canonical_json(entry.details), entry.prev_hash, entry.hash),
    )
    await db.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (HEAD_KEY, head_after(entry).to_json()),
    )
    return entry, tampered
