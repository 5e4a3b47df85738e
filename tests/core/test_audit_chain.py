"""The audit chain on its own: canonical encoding, hashing, and a verifier that every kind of tampering must fail."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace

import pytest

from roost.core import audit
from roost.core.audit import (
    EMPTY_HEAD,
    GENESIS_HASH,
    KIND_DELETED,
    KIND_EDITED,
    KIND_HEAD,
    KIND_INSERTED,
    KIND_MALFORMED,
    KIND_REORDERED,
    KIND_TRUNCATED,
    REDACTED,
    AuditEntry,
    AuditHead,
    canonical,
    canonical_json,
    chain,
    entry_from_row,
    entry_hash,
    escape,
    format_entry,
    head_after,
    make_record,
    resume_head,
    verify,
)

T0 = 1_763_107_200.0


def build(n: int, *, start: float = T0) -> tuple[list[AuditEntry], AuditHead]:
    """A sound chain of n entries and its head."""
    entries: list[AuditEntry] = []
    head = EMPTY_HEAD
    for i in range(n):
        record = make_record(
            "pairing.approved" if i % 2 else "login.failed",
            actor=f"user:u{i}",
            target=f"node:n{i}",
            outcome="ok" if i % 2 else "refused",
            details={"i": i},
            peer="192.0.2.7",
        )
        entry = chain(record, head=head, now=start + i)
        entries.append(entry)
        head = head_after(entry)
    return entries, head


def rechain(entries: list[AuditEntry]) -> tuple[list[AuditEntry], AuditHead]:
    """What an attacker with the code does: recompute every link so each entry and link checks out."""
    out: list[AuditEntry] = []
    prev = GENESIS_HASH
    for entry in entries:
        fields = {k: getattr(entry, k) for k in ("seq", "ts", "action", "actor", "target", "outcome", "peer", "details")}
        fixed = replace(entry, prev_hash=prev, hash=entry_hash(prev, **fields))
        out.append(fixed)
        prev = fixed.hash
    return out, AuditHead(count=out[-1].seq if out else 0, hash=prev)


def rehash(entry: AuditEntry) -> AuditEntry:
    fields = {k: getattr(entry, k) for k in ("seq", "ts", "action", "actor", "target", "outcome", "peer", "details")}
    return replace(entry, hash=entry_hash(entry.prev_hash, **fields))


def renumber(entries: list[AuditEntry]) -> list[AuditEntry]:
    """Give entries contiguous seqs again (what hides a gap), without fixing hashes."""
    return [replace(e, seq=i) for i, e in enumerate(entries, start=1)]


# ------------------------------------------------------------------ encoding


def test_hash_is_sha256_of_prev_hash_then_canonical_json_with_seq_and_ts() -> None:
    entries, _ = build(2)
    second = entries[1]
    body = {
        "action": second.action,
        "actor": second.actor,
        "details": second.details,
        "outcome": second.outcome,
        "peer": second.peer,
        "seq": 2,
        "target": second.target,
        "ts": second.ts,
    }
    expected = hashlib.sha256(
        entries[0].hash.encode() + json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    ).hexdigest()
    assert second.prev_hash == entries[0].hash
    assert second.hash == expected
    assert entries[0].prev_hash == GENESIS_HASH


def test_canonical_encoding_is_sorted_ascii_and_refuses_nan() -> None:
    raw = canonical(
        seq=1, ts=T0, action="login.ok", actor="user:zoë\n", target="", outcome="ok", peer="", details={"b": 1, "a": "é"}
    )
    text = raw.decode("ascii")  # ASCII only, or this raises
    assert "\n" not in text and all(32 <= ord(c) < 127 for c in text)
    assert text.index('"a"') < text.index('"b"')
    assert text.index('"action"') < text.index('"actor"') < text.index('"details"') < text.index('"seq"')
    with pytest.raises(ValueError):
        canonical_json({"x": math.nan})
    with pytest.raises(ValueError):
        canonical_json({"x": math.inf})


def test_seq_and_ts_are_part_of_the_hash() -> None:
    (entry,), _ = build(1)
    fields = {k: getattr(entry, k) for k in ("seq", "ts", "action", "actor", "target", "outcome", "peer", "details")}
    assert entry_hash(entry.prev_hash, **{**fields, "seq": 2}) != entry.hash
    assert entry_hash(entry.prev_hash, **{**fields, "ts": entry.ts + 0.000001}) != entry.hash
    # An int ts and the same float are one time: storage may hand back either.
    assert entry_hash(entry.prev_hash, **{**fields, "ts": int(T0)}) == entry_hash(entry.prev_hash, **{**fields, "ts": float(int(T0))})


def test_details_read_back_from_storage_hash_the_same() -> None:
    record = make_record(
        "grants.changed",
        actor="user:alice",
        details={"after": ("a", "b"), 3: {"nested": [1.5, None, True]}, "set": {"y", "x"}, "nan": math.nan},
    )
    entry = chain(record, head=EMPTY_HEAD, now=T0)
    assert entry.details == {"after": ["a", "b"], "3": {"nested": [1.5, None, True]}, "set": ["x", "y"], "nan": "nan"}
    row = (*(getattr(entry, f) for f in audit.ENTRY_FIELDS[:7]), canonical_json(entry.details), entry.prev_hash, entry.hash)
    assert verify([entry_from_row(row)], head_after(entry)).ok


def test_make_record_refuses_bad_actions_and_outcomes() -> None:
    for action in ("", "login", "Login.OK", "login.ok\n", "a." + "x" * 70, "login..ok", "login.ok "):
        with pytest.raises(ValueError):
            make_record(action, actor="system")
    with pytest.raises(ValueError):
        make_record("login.ok", actor="system", outcome="maybe")
    with pytest.raises(ValueError):
        make_record("login.ok", actor="")


def test_secrets_never_reach_the_log() -> None:
    record = make_record(
        "user.created",
        actor="user:admin",
        details={"password": "hunter22", "token_secret": "s3", "nested": {"Passphrase": "p", "API_SECRET": "q", "ok": "shown"}},
    )
    assert record.details["password"] == REDACTED
    assert record.details["token_secret"] == REDACTED
    assert record.details["nested"] == {"Passphrase": REDACTED, "API_SECRET": REDACTED, "ok": "shown"}
    assert "hunter22" not in canonical_json(record.details)


def test_entries_stay_small() -> None:
    record = make_record("login.failed", actor="user:" + "a" * 5000, details={"k": "v" * 10_000, "many": list(range(5000))})
    assert len(record.actor) <= audit.MAX_NAME_CHARS
    assert len(canonical_json(record.details)) <= audit.MAX_DETAILS_BYTES
    assert record.details.get("truncated") is True


def test_lone_surrogates_become_replacement_characters() -> None:
    record = make_record("login.failed", actor="user:\ud800x", details={"\udfff": "\ud83d"})
    record.actor.encode("utf-8")
    canonical_json(record.details).encode("utf-8")
    assert record.actor == "user:\ufffdx"


# ---------------------------------------------------------------- verifying


def test_a_sound_chain_verifies() -> None:
    entries, head = build(25)
    result = verify(entries, head)
    assert result.ok and result.problem is None
    assert (result.count, result.last_seq, result.last_hash) == (25, 25, head.hash)


def test_an_empty_log_verifies_with_or_without_an_empty_head() -> None:
    assert verify([], None).ok
    assert verify([], EMPTY_HEAD).ok


@pytest.mark.parametrize("field,value", [("actor", "user:mallory"), ("outcome", "ok"), ("details", {"i": 99}), ("ts", T0 + 0.5), ("target", "")])
def test_an_edited_entry_is_found(field: str, value: object) -> None:
    entries, head = build(6)
    entries[2] = replace(entries[2], **{field: value})
    result = verify(entries, head)
    assert not result.ok
    assert (result.problem.kind, result.problem.seq) == (KIND_EDITED, 3)


def test_an_edited_entry_with_its_own_hash_recomputed_is_found() -> None:
    entries, head = build(6)
    entries[2] = rehash(replace(entries[2], actor="user:mallory"))
    result = verify(entries, head)
    assert (result.problem.kind, result.problem.seq) == (KIND_EDITED, 3)


def test_the_last_entry_edited_and_rehashed_is_found_by_the_head() -> None:
    entries, head = build(6)
    entries[-1] = rehash(replace(entries[-1], outcome="failed"))
    result = verify(entries, head)
    assert result.problem.kind == KIND_EDITED


def test_a_rewrite_of_everything_after_an_edit_is_found_by_the_head() -> None:
    entries, head = build(6)
    entries[1] = replace(entries[1], actor="user:mallory")
    forged, _forged_head = rechain(entries)
    result = verify(forged, head)
    assert result.problem.kind == KIND_EDITED and "rewritten" in result.problem.message


def test_a_rewrite_of_chain_and_head_passes_unless_a_head_was_noted_down() -> None:
    entries, noted = build(6)
    more, _ = build(8)
    entries[1] = replace(entries[1], actor="user:mallory")
    forged, forged_head = rechain(entries + more[6:])
    # Documented limit: with write access to both, the log alone cannot tell.
    assert verify(forged, forged_head).ok
    result = verify(forged, forged_head, anchors=[AuditHead.parse(f"{noted.count}:{noted.hash[:16]}")])
    assert (result.problem.kind, result.problem.seq) == (KIND_EDITED, 6)


@pytest.mark.parametrize("gone", [1, 3, 6])
def test_a_deleted_entry_is_found(gone: int) -> None:
    entries, head = build(8)
    del entries[gone - 1]
    result = verify(entries, head)
    assert (result.problem.kind, result.problem.seq) == (KIND_DELETED, gone)


@pytest.mark.parametrize("gone", [1, 4])
def test_a_deleted_entry_with_the_rest_renumbered_is_found(gone: int) -> None:
    entries, head = build(8)
    del entries[gone - 1]
    result = verify(renumber(entries), head)
    assert (result.problem.kind, result.problem.seq) == (KIND_DELETED, gone)


def test_a_cut_off_tail_is_found_by_the_head() -> None:
    entries, head = build(8)
    result = verify(entries[:5], head)
    assert (result.problem.kind, result.problem.seq) == (KIND_TRUNCATED, 6)


def test_a_cut_off_tail_with_a_forged_head_is_found_by_a_noted_head() -> None:
    entries, noted = build(8)
    kept = entries[:5]
    assert verify(kept, head_after(kept[-1])).ok
    result = verify(kept, head_after(kept[-1]), anchors=[noted])
    assert (result.problem.kind, result.problem.seq) == (KIND_TRUNCATED, 6)


def test_an_entry_inserted_in_the_middle_is_found() -> None:
    entries, head = build(6)
    fake = chain(make_record("pairing.approved", actor="user:admin", target="node:evil"), head=head_after(entries[2]), now=T0 + 2.5)
    forged = renumber(entries[:3] + [fake] + entries[3:])
    result = verify(forged, head)
    assert (result.problem.kind, result.problem.seq) == (KIND_INSERTED, 4)


def test_an_inserted_entry_with_a_made_up_link_is_found() -> None:
    entries, head = build(6)
    fake = chain(make_record("pairing.approved", actor="user:admin"), head=AuditHead(count=3, hash="ab" * 32), now=T0 + 2.5)
    forged = renumber(entries[:3] + [fake] + entries[3:])
    result = verify(forged, head)
    assert (result.problem.kind, result.problem.seq) == (KIND_INSERTED, 4)


def test_an_entry_appended_behind_the_heads_back_is_found() -> None:
    entries, head = build(6)
    fake = chain(make_record("pairing.approved", actor="user:admin"), head=head, now=T0 + 10)
    result = verify(entries + [fake], head)
    assert (result.problem.kind, result.problem.seq) == (KIND_INSERTED, 7)


@pytest.mark.parametrize("a,b", [(2, 3), (2, 6), (1, 2)])
def test_swapped_entries_are_found(a: int, b: int) -> None:
    entries, head = build(8)
    swapped = list(entries)
    swapped[a - 1], swapped[b - 1] = swapped[b - 1], swapped[a - 1]
    result = verify(renumber(swapped), head)
    assert (result.problem.kind, result.problem.seq) == (KIND_REORDERED, a)


def test_entries_read_out_of_seq_order_are_found() -> None:
    entries, head = build(5)
    result = verify([entries[0], entries[2], entries[1], entries[3], entries[4]], head)
    # Seq 3 right after 1 reads as 2 missing; 2 after 3 would read as going backwards.
    assert result.problem.kind in (KIND_DELETED, KIND_REORDERED)
    result = verify([entries[0], entries[1], entries[1]], head)
    assert (result.problem.kind, result.problem.seq) == (KIND_REORDERED, 2)


def test_a_reordering_with_every_hash_recomputed_shows_in_the_times() -> None:
    entries, _ = build(5)
    swapped = list(entries)
    swapped[1], swapped[2] = replace(swapped[2], seq=2), replace(swapped[1], seq=3)
    forged, forged_head = rechain(swapped)
    result = verify(forged, forged_head)
    assert (result.problem.kind, result.problem.seq) == (KIND_REORDERED, 3)


def test_appends_never_go_back_in_time() -> None:
    head = EMPTY_HEAD
    first = chain(make_record("login.ok", actor="user:a"), head=head, now=T0)
    second = chain(make_record("login.ok", actor="user:b"), head=head_after(first), now=T0 - 3600)  # clock stepped back
    assert second.ts == first.ts
    assert verify([first, second], head_after(second)).ok


@pytest.mark.parametrize(
    "change",
    [
        {"hash": "not-a-hash"},
        {"prev_hash": "ZZ" * 32},
        {"details": "{not json"},
        {"seq": "3"},
        {"ts": "yesterday"},
        {"actor": 5},
    ],
)
def test_malformed_entries_are_reported_not_crashed_on(change: dict) -> None:
    entries, head = build(4)
    entries[2] = replace(entries[2], **change)
    result = verify(entries, head)
    assert not result.ok
    assert result.problem.kind in (KIND_MALFORMED, KIND_EDITED)
    assert result.problem.seq in (3, None)


def test_a_missing_head_with_entries_is_reported() -> None:
    entries, _ = build(3)
    result = verify(entries, None)
    assert result.problem.kind == KIND_HEAD


def test_resume_head_chains_from_the_head_not_the_tail() -> None:
    entries, head = build(5)
    tail = (entries[2].seq, entries[2].hash, entries[2].ts)  # the last two rows were deleted
    resumed, why = resume_head(head.to_json(), tail)
    assert resumed == head and "head records 5" in why
    resumed, why = resume_head(None, tail)  # the head itself deleted: no second chain from seq 1
    assert resumed.count == 3 and why
    resumed, why = resume_head("{garbage", None)
    assert resumed == EMPTY_HEAD and why == ""


def test_head_text_round_trips_and_junk_is_refused() -> None:
    _, head = build(3)
    assert AuditHead.parse(str(head)) == AuditHead(count=3, hash=head.hash)
    assert AuditHead.parse(f" 3:{head.hash[:12].upper()} ").hash == head.hash[:12]
    for junk in ("", "3", ":abc", "x:" + head.hash, "3:" + "g" * 64, "3:abc"):
        with pytest.raises(ValueError):
            AuditHead.parse(junk)


# ------------------------------------------------------------ control chars


FORGED_LINE = "box\n#2 2026-01-01T00:00:00.000000Z pairing.approved outcome=ok actor=user:admin"


def test_a_name_with_a_newline_cannot_forge_a_line() -> None:
    record = make_record("node.enrolled", actor="token:ab12", target=FORGED_LINE, details={"hostname": FORGED_LINE}, peer="\r\n")
    entry = chain(record, head=EMPTY_HEAD, now=T0)
    assert entry.target == FORGED_LINE  # stored as data, as given
    line = format_entry(entry)
    assert "\n" not in line and "\r" not in line
    assert line.splitlines() == [line] and line.startswith("#1 ")
    assert '\\n#2 2026' in line
    assert verify([entry], head_after(entry)).ok


def test_terminal_escapes_bidi_and_quotes_are_made_visible() -> None:
    nasty = 'a\x1b[2J\x00\x7f\u202e\u2028"b\\n'
    assert escape(nasty) == 'a\\x1b[2J\\x00\\x7f\\u202e\\u2028\\"b\\\\n'
    entry = chain(make_record("login.failed", actor="user:" + nasty, details={"k": nasty}), head=EMPTY_HEAD, now=T0)
    line = format_entry(entry)
    assert all(ch.isprintable() for ch in line), repr(line)
    # A quote in a name cannot close the field and start a fake one.
    fake = chain(make_record("login.failed", actor='user:x" outcome=ok actor="user:admin'), head=EMPTY_HEAD, now=T0)
    assert 'actor="user:x\\" outcome=ok actor=\\"user:admin"' in format_entry(fake)


def test_problem_messages_show_names_escaped() -> None:
    entries, head = build(3)
    entries[1] = replace(entries[1], actor=FORGED_LINE)
    result = verify(entries, head)
    assert "\n" not in format_entry(result.problem.entry)
    assert "\n" not in str(result.problem)
