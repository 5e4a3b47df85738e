"""The audit log through the hub: events it records, the admin-only API and page, filters, and failing closed when the log cannot be written."""

from __future__ import annotations

import logging
import sqlite3
import time

import pytest
from support_auth import seed_user
from support_hub import enrol_body

from roost.core.audit import AuditWriteError
from roost.core.const import ENROLL_PATH
from roost.core.hub.app import HUB_KEY, create_join_token

FORGED = "box\n#2 2026-01-01T00:00:00.000000Z pairing.approved outcome=ok actor=user:admin"


def hub_of(client):
    return client.app[HUB_KEY]


async def entries(client, **query) -> list[dict]:
    resp = await client.get("/api/v1/audit", params={k: str(v) for k, v in query.items()})
    assert resp.status == 200, await resp.text()
    return (await resp.json())["entries"]


async def token_for(client, name: str, role: str) -> dict[str, str]:
    token = await seed_user(hub_of(client).config, name, role)
    return {"Authorization": f"Bearer {token}"}


# ---------------------------------------------------------------- who reads


async def test_only_admins_read_the_audit_log(client, anon_client) -> None:
    await hub_of(client).audit("login.failed", actor="user:eve", outcome="refused", peer="192.0.2.9")
    for path in ("/api/v1/audit", "/api/v1/audit/head", "/api/v1/audit/verify"):
        assert (await client.get(path)).status == 200
        assert (await anon_client.get(path)).status == 401
        for role in ("viewer", "operator"):
            resp = await client.get(path, headers=await token_for(client, f"{role}1", role))
            assert resp.status == 403, (path, role)
            assert "admin" in (await resp.json())["error"]
    page = await client.get("/audit")
    assert page.status == 200 and "user:eve" in await page.text()
    viewer_page = await client.get("/audit", headers=await token_for(client, "viewer2", "viewer"))
    assert viewer_page.status == 403 and "user:eve" not in await viewer_page.text()
    anon_page = await anon_client.get("/audit", allow_redirects=False)
    assert anon_page.status in (302, 303) and "user:eve" not in await anon_page.text()
    # The nav shows the page to those who may open it.
    assert 'href="/audit"' in await (await client.get("/")).text()
    assert 'href="/audit"' not in await (await client.get("/", headers=await token_for(client, "viewer3", "viewer"))).text()


# -------------------------------------------------------------- filters, paging


async def seed(client, n: int = 12) -> None:
    hub = hub_of(client)
    for i in range(n):
        await hub.audit(
            ["login.failed", "pairing.approved", "pairing.rejected", "node.revoked"][i % 4],
            actor=f"user:u{i % 3}",
            target=f"node:n{i % 2}",
            outcome=["refused", "ok", "ok", "ok"][i % 4],
            details={"i": i},
            peer="192.0.2.7",
        )


def mine(rows: list[dict]) -> list[dict]:
    """The seeded entries, without what the hub itself recorded (logins of the test users, token creation)."""
    return [r for r in rows if r["actor"].startswith("user:u")]


async def test_the_api_filters_like_the_store(client) -> None:
    await seed(client)
    assert {r["action"] for r in mine(await entries(client, action="pairing"))} == {"pairing.approved", "pairing.rejected"}
    assert {r["actor"] for r in await entries(client, actor="user:u1")} == {"user:u1"}
    assert {r["target"] for r in mine(await entries(client, target="node:n1"))} == {"node:n1"}
    refused = mine(await entries(client, outcome="refused"))
    assert [r["details"]["i"] for r in refused] == [8, 4, 0]
    every = mine(await entries(client, limit=1000))
    middle = every[5]["ts"]
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(0))
    assert mine(await entries(client, since=middle)) == every[: 6]
    assert mine(await entries(client, until=middle)) == every[6:]
    assert len(mine(await entries(client, since=iso + "Z"))) == 12
    assert mine(await entries(client, since="2999-01-01")) == []


async def test_the_api_pages_newest_first_without_gaps(client) -> None:
    await seed(client, 23)
    seen: list[int] = []
    before = None
    while True:
        query = {"limit": 5, **({"before": before} if before else {})}
        resp = await client.get("/api/v1/audit", params={k: str(v) for k, v in query.items()})
        body = await resp.json()
        seen += [r["seq"] for r in body["entries"]]
        before = body["next_before"]
        if before is None:
            break
    assert seen == sorted(seen, reverse=True) and seen == list(range(seen[0], 0, -1))
    assert body["head"]["count"] == seen[0]


@pytest.mark.parametrize(
    "query",
    [
        {"outcome": "maybe"},
        {"limit": "0"},
        {"limit": "100000"},
        {"limit": "ten"},
        {"before": "-3"},
        {"since": "last tuesday"},
        {"since": "2024-05-02", "until": "2024-05-01"},
        {"action": "x" * 100},
        {"unknown": "1"},
    ],
)
async def test_bad_queries_are_refused_with_a_reason(client, query: dict) -> None:
    resp = await client.get("/api/v1/audit", params=query)
    assert resp.status == 400
    assert "invalid query" in (await resp.json())["error"]


# ----------------------------------------------------- what the hub records


async def test_enrolment_is_audited_with_token_and_peer(client, fake_agent) -> None:
    agent = fake_agent()
    await agent.enroll(name="rack1")
    (enrolled,) = await entries(client, action="node.enrolled")
    assert enrolled["target"] == f"node:{agent.node_id}"
    assert enrolled["actor"].startswith("token:") and enrolled["peer"] == "127.0.0.1"
    assert enrolled["outcome"] == "ok"
    token_id = enrolled["actor"].split(":", 1)[1]
    (created,) = await entries(client, action="join_token.created", target=f"token:{token_id}")
    assert created["actor"] == "system"


async def test_refused_enrolments_are_audited_without_secrets(client) -> None:
    hub = hub_of(client)
    token, record = await create_join_token(hub.store, ttl=3600, uses=1)
    bad = token.rsplit("_", 1)[0] + "_wrongsecret"
    for attempt in (bad, "not-a-token\nforged line"):
        resp = await client.post(ENROLL_PATH, json={"token": attempt, "public_key": "A" * 43 + "=", "hostname": FORGED})
        assert resp.status in (400, 403)
    refused = await entries(client, action="node.enrolment_refused")
    assert refused, "refusals must be recorded"
    assert {r["outcome"] for r in refused} == {"refused"}
    assert all(r["peer"] == "127.0.0.1" for r in refused)
    assert {r["actor"] for r in refused} <= {f"token:{record.token_id}", "anonymous"}
    assert "wrongsecret" not in repr(refused) and token.split("_")[2] not in repr(refused)


async def test_revocation_and_failed_agent_auth_are_audited(client, fake_agent) -> None:
    from roost.core.identity import Identity

    agent = fake_agent()
    await agent.enroll()
    answer = await agent.connect(sign_as=Identity.generate())  # the wrong key
    assert answer["type"] == "error"
    (failed,) = await entries(client, action="agent.auth_failed")
    assert (failed["actor"], failed["outcome"], failed["peer"]) == (f"node:{agent.node_id}", "refused", "127.0.0.1")
    assert await hub_of(client).revoke_node(agent.node_id, actor="user:admin")
    (revoked,) = await entries(client, action="node.revoked")
    assert (revoked["actor"], revoked["target"]) == ("user:admin", f"node:{agent.node_id}")
    assert (await (await client.get("/api/v1/audit/verify")).json())["ok"]


# ------------------------------------------------------------- failing closed


async def test_an_entry_that_cannot_be_written_fails_the_action(client, caplog: pytest.LogCaptureFixture) -> None:
    hub = hub_of(client)
    token, _ = await create_join_token(hub.store, ttl=3600, uses=1)
    with sqlite3.connect(hub.config.store_path) as db:  # a full disk, a broken file: here, a trigger
        db.execute("CREATE TRIGGER audit_full BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    caplog.set_level(logging.ERROR)
    with pytest.raises(AuditWriteError, match="disk full"):
        await hub.audit("grants.changed", actor="user:admin", target="node:x")
    assert "audit log: cannot record grants.changed" in caplog.text
    from roost.core.identity import Identity

    resp = await client.post(ENROLL_PATH, json=enrol_body(token, Identity.generate(), hostname="box"))
    assert resp.status >= 500  # the agent gets no node id it could use
    with pytest.raises(AuditWriteError):
        await create_join_token(hub.store, ttl=3600, uses=1, actor="user:admin")
    # No join token that nobody saw being made is left usable.
    assert all(t.revoked or t.uses_left == 0 for t in await hub.store.list_join_tokens())


# -------------------------------------------------------- control characters


async def test_control_characters_stay_data_in_json_and_visible_on_the_page(client) -> None:
    hub = hub_of(client)
    await hub.audit(
        "node.enrolled",
        actor="token:ab12",
        target=FORGED,
        peer="10.0.0.1",
        details={"hostname": "<script>alert(1)</script>\u202eexe.txt", "name": "a\x1b[2Jb"},
    )
    (row,) = await entries(client, action="node.enrolled")
    assert row["target"] == FORGED  # JSON carries the exact string; its escaping is JSON's
    assert row["details"]["hostname"] == "<script>alert(1)</script>\u202eexe.txt"
    page = await client.get("/audit", params={"action": "node.enrolled"})
    html = await page.text()
    assert page.status == 200
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert "\u202e" not in html and "\\u202e" in html
    assert "\x1b" not in html
    assert "box\\n#2 2026-01-01" in html  # the newline is shown, not obeyed
    assert "box\n#2" not in html


async def test_tampering_shows_in_the_verify_api_and_on_the_page(client) -> None:
    await seed(client, 6)
    hub = hub_of(client)
    before = await (await client.get("/api/v1/audit/verify")).json()
    assert before["ok"] and before["problem"] is None
    head = await (await client.get("/api/v1/audit/head")).json()
    assert head["text"] == f"{head['count']}:{head['hash']}"
    target = (await entries(client, actor="user:u1"))[-1]["seq"]
    with sqlite3.connect(hub.config.store_path) as db:
        db.execute("DROP TRIGGER audit_log_no_update")
        db.execute("UPDATE audit_log SET actor = 'user:nobody' WHERE seq = ?", (target,))
    after = await (await client.get("/api/v1/audit/verify")).json()
    assert not after["ok"]
    assert (after["problem"]["kind"], after["problem"]["seq"]) == ("edited", target)
    page = await client.get("/audit", params={"verify": "1"})
    assert f"Chain broken at entry {target}: edited" in await page.text()
    intact_page = await client.get("/audit")
    assert "Verify the chain" in await intact_page.text()


async def test_the_page_keeps_its_filters_and_pages_back(client) -> None:
    await seed(client, 30)
    html = await (await client.get("/audit", params={"action": "pairing", "limit": "5"})).text()
    assert 'value="pairing"' in html
    assert "before=" in html and "action=pairing" in html  # the "older" link keeps the filter
    assert html.count('data-seq="') == 5
    bad = await client.get("/audit", params={"outcome": "maybe"})
    assert bad.status == 400 and "invalid query" in await bad.text()
