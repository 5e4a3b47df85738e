"""The audit chain in the SQLite store: append-only, chained under concurrency, filters and paging, and tampering with the file found by verify and `roost audit verify`."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from roost.core import cli
from roost.core.audit import (
    GENESIS_HASH,
    KIND_DELETED,
    KIND_EDITED,
    KIND_HEAD,
    KIND_INSERTED,
    KIND_REORDERED,
    KIND_TRUNCATED,
    AuditHead,
    canonical_json,
    chain,
    entry_hash,
    head_after,
    make_record,
)
from roost.core.store import AuditFilter
from roost.core.store.sqlite import SQLiteStore
from roost.core.store.sqlite_audit import HEAD_KEY

T0 = 1_763_107_200.0


async def fill(store: SQLiteStore, n: int, *, start: float = T0) -> None:
    for i in range(n):
        await store.append_audit(
            ["login.failed", "pairing.approved", "pairing.rejected", "node.revoked"][i % 4],
            actor=f"user:u{i % 3}",
            target=f"node:n{i % 2}",
            outcome=["refused", "ok", "ok", "ok"][i % 4],
            details={"i": i},
            peer="192.0.2.7",
            now=start + i,
        )


def raw(path: Path) -> sqlite3.Connection:
    """What someone with write access to the file can do: drop the guards and change rows."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    db.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    return db


# ------------------------------------------------------------------ the basics


async def test_append_returns_the_chained_entry_and_moves_the_head(store: SQLiteStore) -> None:
    assert await store.audit_head() is None
    first = await store.append_audit("login.ok", actor="user:alice", peer="192.0.2.1", now=T0)
    second = await store.append_audit("login.failed", actor="user:bob", outcome="refused", details={"why": "bad password"}, now=T0 + 1)
    assert (first.seq, first.prev_hash) == (1, GENESIS_HASH)
    assert (second.seq, second.prev_hash) == (2, first.hash)
    assert await store.audit_head() == head_after(second)
    assert [e.seq for e in await store.list_audit()] == [2, 1]
    assert [e async for e in store.iter_audit()] == [first, second]
    assert (await store.verify_audit()).ok


async def test_append_refuses_malformed_events_without_writing(store: SQLiteStore) -> None:
    with pytest.raises(ValueError):
        await store.append_audit("not dotted", actor="system")
    with pytest.raises(ValueError):
        await store.append_audit("login.ok", actor="system", outcome="great")
    assert await store.list_audit() == [] and await store.audit_head() is None


async def test_the_log_is_append_only_for_any_sql_that_comes_through_the_store(store: SQLiteStore) -> None:
    await fill(store, 3)
    for sql in ("UPDATE audit_log SET actor = 'user:mallory' WHERE seq = 2", "DELETE FROM audit_log WHERE seq = 3", "DELETE FROM audit_log"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            async with store._transaction() as db:
                await db.execute(sql)
    assert len(await store.list_audit()) == 3
    assert (await store.verify_audit()).ok


async def test_names_with_control_characters_are_stored_as_given_and_still_verify(store: SQLiteStore) -> None:
    nasty = "box\n[x] pairing.approved\x00\x1b[2J\u202e\r"
    entry = await store.append_audit("node.enrolled", actor=f"token:{nasty}", target=nasty, details={"hostname": nasty}, peer=nasty)
    (back,) = await store.list_audit()
    assert back == entry
    assert (back.actor, back.target, back.peer, back.details["hostname"]) == (f"token:{nasty}", nasty, nasty, nasty)
    assert (await store.verify_audit()).ok


async def test_time_never_goes_backwards_even_when_the_clock_does(store: SQLiteStore) -> None:
    await store.append_audit("login.ok", actor="user:a", now=T0)
    second = await store.append_audit("login.ok", actor="user:a", now=T0 - 600)
    assert second.ts == T0
    assert (await store.verify_audit()).ok


async def test_concurrent_appends_from_tasks_and_another_process_chain_in_order(store: SQLiteStore, db_path: Path) -> None:
    other = SQLiteStore(db_path)  # the CLI opens the same file while the hub runs
    await other.open()
    try:
        await asyncio.gather(
            *(store.append_audit("login.failed", actor=f"user:t{i}", outcome="refused") for i in range(40)),
            *(other.append_audit("join_token.created", actor=f"cli:c{i}", target=f"token:{i}") for i in range(40)),
        )
    finally:
        await other.close()
    entries = [e async for e in store.iter_audit()]
    assert [e.seq for e in entries] == list(range(1, 81))
    assert all(b.prev_hash == a.hash for a, b in zip(entries, entries[1:]))
    result = await store.verify_audit()
    assert result.ok and result.count == 80


async def test_verify_while_entries_are_being_appended_does_not_cry_truncation(store: SQLiteStore) -> None:
    await fill(store, 600)  # more than one page of iter_audit

    async def writer() -> None:
        for i in range(60):
            await store.append_audit("login.ok", actor=f"user:w{i}")

    result, _ = await asyncio.gather(store.verify_audit(), writer())
    assert result.ok, result.problem
    assert result.count >= 600


# ------------------------------------------------------------ filters, paging


async def test_action_filter_is_a_dotted_prefix(store: SQLiteStore) -> None:
    for action in ("pairing.approved", "pairing.rejected", "pairings.odd", "login.failed", "pairing.x.y", "pairingx.odd"):
        await store.append_audit(action, actor="system")
    got = sorted(e.action for e in await store.list_audit(AuditFilter(action="pairing")))
    assert got == ["pairing.approved", "pairing.rejected", "pairing.x.y"]
    assert [e.action for e in await store.list_audit(AuditFilter(action="pairing.approved"))] == ["pairing.approved"]
    assert [e.action for e in await store.list_audit(AuditFilter(action="pairing."))] == ["pairing.x.y", "pairing.rejected", "pairing.approved"]
    assert await store.list_audit(AuditFilter(action="pair")) == []


async def test_actor_target_outcome_and_time_filters(store: SQLiteStore) -> None:
    await fill(store, 12)
    assert {e.actor for e in await store.list_audit(AuditFilter(actor="user:u1"))} == {"user:u1"}
    assert len(await store.list_audit(AuditFilter(actor="user:u1"))) == 4
    assert {e.target for e in await store.list_audit(AuditFilter(target="node:n0"))} == {"node:n0"}
    refused = await store.list_audit(AuditFilter(outcome="refused"))
    assert [e.seq for e in refused] == [9, 5, 1] and {e.action for e in refused} == {"login.failed"}
    window = await store.list_audit(AuditFilter(since=T0 + 3, until=T0 + 6))
    assert [e.seq for e in window] == [6, 5, 4]
    both = await store.list_audit(AuditFilter(action="login", actor="user:u0", since=T0 + 1))
    assert [e.seq for e in both] == []
    assert [e.seq for e in await store.list_audit(AuditFilter(action="login", actor="user:u2"))] == [9]
    # Filter values are data, not SQL.
    assert await store.list_audit(AuditFilter(actor="x' OR '1'='1")) == []


async def test_paging_with_before_reads_everything_once_newest_first(store: SQLiteStore) -> None:
    await fill(store, 23)
    seen: list[int] = []
    before = None
    while True:
        page = await store.list_audit(limit=5, before_seq=before)
        seen += [e.seq for e in page]
        if len(page) < 5:
            break
        before = page[-1].seq
    assert seen == list(range(23, 0, -1))
    assert len(await store.list_audit(limit=10_000)) == 23  # capped, not refused
    filtered = await store.list_audit(AuditFilter(action="pairing"), limit=3, before_seq=12)
    assert [e.seq for e in filtered] == [11, 10, 7]


# ----------------------------------------------------- tampering with the file


async def tampered(db_path: Path, n: int, *statements: str) -> SQLiteStore:
    store = SQLiteStore(db_path)
    await store.open()
    await fill(store, n)
    await store.close()
    db = raw(db_path)
    for sql in statements:
        db.execute(sql)
    db.close()
    store = SQLiteStore(db_path)
    await store.open()
    return store


CASES = {
    "edited actor": (["UPDATE audit_log SET actor = 'user:admin' WHERE seq = 4"], KIND_EDITED, 4),
    "edited outcome": (["UPDATE audit_log SET outcome = 'ok' WHERE seq = 5"], KIND_EDITED, 5),
    "edited details": (["""UPDATE audit_log SET details = '{"i":99}' WHERE seq = 2"""], KIND_EDITED, 2),
    "edited time": (["UPDATE audit_log SET ts = ts + 1 WHERE seq = 6"], KIND_EDITED, 6),
    "deleted": (["DELETE FROM audit_log WHERE seq = 3"], KIND_DELETED, 3),
    "deleted first": (["DELETE FROM audit_log WHERE seq = 1"], KIND_DELETED, 1),
    "deleted and renumbered": (
        ["DELETE FROM audit_log WHERE seq = 3", "UPDATE audit_log SET seq = seq - 1 WHERE seq > 3"],
        KIND_DELETED,
        3,
    ),
    "tail cut off": (["DELETE FROM audit_log WHERE seq > 6"], KIND_TRUNCATED, 7),
    "swapped": (
        [
            "UPDATE audit_log SET seq = -1 WHERE seq = 4",
            "UPDATE audit_log SET seq = 4 WHERE seq = 5",
            "UPDATE audit_log SET seq = 5 WHERE seq = -1",
        ],
        KIND_REORDERED,
        4,
    ),
    "copied over": (
        ["INSERT OR REPLACE INTO audit_log SELECT 9, ts, action, actor, target, outcome, peer, details, prev_hash, hash FROM audit_log WHERE seq = 2"],
        KIND_EDITED,
        9,
    ),
    "head removed": ([f"DELETE FROM meta WHERE key = '{HEAD_KEY}'"], KIND_HEAD, None),
    "head garbled": ([f"UPDATE meta SET value = '{{not json' WHERE key = '{HEAD_KEY}'"], KIND_HEAD, None),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_tampering_with_the_file_is_found(case: str, db_path: Path) -> None:
    statements, kind, seq = CASES[case]
    store = await tampered(db_path, 10, *statements)
    try:
        result = await store.verify_audit()
    finally:
        await store.close()
    assert not result.ok
    if kind is not None:
        assert result.problem.kind == kind, result.problem
    assert result.problem.seq == seq, result.problem


async def test_an_entry_inserted_with_a_proper_link_is_found(db_path: Path) -> None:
    store = await tampered(db_path, 6)
    await store.close()
    rows = raw(db_path).execute("SELECT seq, hash, ts FROM audit_log WHERE seq = 3").fetchone()
    fake = chain(make_record("pairing.approved", actor="user:admin", target="node:evil"), head=AuditHead(count=3, hash=rows[1], ts=rows[2]), now=rows[2])
    db = raw(db_path)
    for seq in range(6, 3, -1):
        db.execute("UPDATE audit_log SET seq = seq + 1 WHERE seq = ?", (seq,))
    db.execute(
        "INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (fake.seq, fake.ts, fake.action, fake.actor, fake.target, fake.outcome, fake.peer, canonical_json(fake.details), fake.prev_hash, fake.hash),
    )
    db.close()
    store = SQLiteStore(db_path)
    await store.open()
    try:
        result = await store.verify_audit()
    finally:
        await store.close()
    assert (result.problem.kind, result.problem.seq) == (KIND_INSERTED, 4)


async def test_appending_after_a_cut_keeps_the_gap_visible(db_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = await tampered(db_path, 8, "DELETE FROM audit_log WHERE seq > 5")
    try:
        entry = await store.append_audit("login.ok", actor="user:alice")
        result = await store.verify_audit()
    finally:
        await store.close()
    assert entry.seq == 9  # from the head, not from the cut tail
    assert (result.problem.kind, result.problem.seq) == (KIND_DELETED, 6)
    assert "changed outside Roost" in caplog.text


async def test_a_removed_head_does_not_fork_a_second_chain(db_path: Path) -> None:
    store = await tampered(db_path, 4, f"DELETE FROM meta WHERE key = '{HEAD_KEY}'")
    try:
        entry = await store.append_audit("login.ok", actor="user:alice")
    finally:
        await store.close()
    assert entry.seq == 5


async def test_a_full_rewrite_is_caught_only_by_a_head_noted_earlier(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    await store.open()
    await fill(store, 6)
    noted = await store.audit_head()
    await store.close()
    db = raw(db_path)
    db.execute("UPDATE audit_log SET actor = 'user:nobody' WHERE seq = 2")
    prev = GENESIS_HASH
    for row in db.execute("SELECT seq, ts, action, actor, target, outcome, peer, details FROM audit_log ORDER BY seq").fetchall():
        fields = dict(zip(("seq", "ts", "action", "actor", "target", "outcome", "peer"), row[:7]), details=json.loads(row[7]))
        digest = entry_hash(prev, **fields)
        db.execute("UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, row[0]))
        prev = digest
    db.execute("UPDATE meta SET value = ? WHERE key = ?", (AuditHead(count=6, hash=prev, ts=T0 + 5).to_json(), HEAD_KEY))
    db.close()
    store = SQLiteStore(db_path)
    await store.open()
    try:
        assert (await store.verify_audit()).ok  # the documented limit
        result = await store.verify_audit(anchors=[noted])
    finally:
        await store.close()
    assert (result.problem.kind, result.problem.seq) == (KIND_EDITED, 6)


# ---------------------------------------------------------------- the command


def hub_dir_with_log(tmp_path: Path, n: int = 5, **extra: str) -> Path:
    data = tmp_path / "hubdata"

    async def make() -> None:
        store = SQLiteStore(data / "roost.db")
        await store.open()
        await fill(store, n)
        for action, target in extra.items():
            await store.append_audit(action.replace("_", ".", 1), actor="token:ab12", target=target)
        await store.close()

    asyncio.run(make())
    return data


def test_roost_audit_verify_exits_0_when_intact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = hub_dir_with_log(tmp_path)
    assert cli.main(["audit", "verify", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "intact: 5 entries" in out


@pytest.mark.parametrize(
    "sql,words",
    [
        ("UPDATE audit_log SET actor = 'user:admin' WHERE seq = 2", "entry 2: edited"),
        ("DELETE FROM audit_log WHERE seq = 3", "entry 3: deleted"),
        ("DELETE FROM audit_log WHERE seq = 5", "entry 5: truncated"),
    ],
)
def test_roost_audit_verify_exits_1_and_names_the_first_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str], sql: str, words: str) -> None:
    data = hub_dir_with_log(tmp_path)
    raw(data / "roost.db").execute(sql)
    assert cli.main(["audit", "verify", "--data-dir", str(data)]) == 1
    assert words in capsys.readouterr().out


def test_roost_audit_verify_prints_forged_lines_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    forged = "box\n#7 2026-01-01T00:00:00.000000Z pairing.approved outcome=ok actor=user:admin\x1b[1A"
    data = hub_dir_with_log(tmp_path, node_enrolled=forged)
    raw(data / "roost.db").execute("UPDATE audit_log SET outcome = 'failed' WHERE seq = 6")
    assert cli.main(["audit", "verify", "--data-dir", str(data)]) == 1
    out = capsys.readouterr().out
    assert "entry 6: edited" in out
    assert not any(line.startswith("#7") for line in out.splitlines())
    assert "\\n#7 2026" in out and "\x1b" not in out and "\\x1b[1A" in out
    assert cli.main(["audit", "list", "--data-dir", str(data)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 6 and all(line.startswith(f"#{i} ") for i, line in enumerate(listed, start=1))


def test_roost_audit_head_prints_a_head_that_verify_accepts_later(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = hub_dir_with_log(tmp_path)
    assert cli.main(["audit", "head", "--data-dir", str(data)]) == 0
    head = capsys.readouterr().out.strip()
    count, digest = head.split(":")
    assert count == "5" and len(digest) == 64
    assert cli.main(["audit", "verify", "--data-dir", str(data), "--head", f"5:{digest[:16]}"]) == 0
    capsys.readouterr()
    db = raw(data / "roost.db")
    db.execute("DELETE FROM audit_log WHERE seq > 3")
    db.execute("UPDATE meta SET value = (SELECT json_object('count', 3, 'hash', hash, 'ts', ts) FROM audit_log WHERE seq = 3) WHERE key = ?", (HEAD_KEY,))
    assert cli.main(["audit", "verify", "--data-dir", str(data)]) == 0  # a consistent cut...
    capsys.readouterr()
    assert cli.main(["audit", "verify", "--data-dir", str(data), "--head", head]) == 1  # ...that the noted head exposes
    assert "truncated" in capsys.readouterr().out
    assert cli.main(["audit", "verify", "--data-dir", str(data), "--head", "five:abc"]) == 2


def test_roost_audit_verify_without_a_database_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["audit", "verify", "--data-dir", str(tmp_path / "nothing")]) == 1
    assert "no hub database" in capsys.readouterr().err
    assert not (tmp_path / "nothing").exists()


def test_join_tokens_made_and_revoked_on_the_command_line_are_audited(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "hubdata"
    assert cli.main(["join-token", "create", "--data-dir", str(data), "--note", "rack\nshelf"]) == 0
    token = capsys.readouterr().out.strip()
    token_id = token.split("_")[1]
    assert cli.main(["join-token", "revoke", "--data-dir", str(data), token_id]) == 0

    async def read() -> list:
        store = SQLiteStore(data / "roost.db")
        await store.open()
        try:
            return await store.list_audit()
        finally:
            await store.close()

    revoked, created = asyncio.run(read())
    assert (created.action, created.target, created.details["note"]) == ("join_token.created", f"token:{token_id}", "rack\nshelf")
    assert created.actor.startswith("cli:")
    assert (revoked.action, revoked.target) == ("join_token.revoked", f"token:{token_id}")
    secret = token.split("_")[2].split(".")[0]
    assert secret not in repr((created, revoked))
