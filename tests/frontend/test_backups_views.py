"""The Backups pages rendered through the aiohttp test client: verdicts worst first, a repository's snapshots, the node panel, escaping."""

from __future__ import annotations

import copy
import re
import time
from typing import Any

import pytest
from aiohttp import web
from roost import frontend
from roost.core.hub.app import HUB_KEY
from roost.core.store.sqlite import SQLiteStore

NOW = time.time()
NODE = "n0a1b2c3d4e5"  # the sample node of the frontend fixtures
EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'

BACKUP_STATUS = {"domain": "backup", "name": "Backups", "version": "0.1.0", "source": "builtin", "state": "loaded", "reason": "", "since": NOW - 600}


def repo(name: str, **extra: Any) -> dict[str, Any]:
    base = {
        "name": name, "kind": "restic", "location": "/srv/backup/" + name, "paths": ["/home"], "excludes": [],
        "snapshot_count": 2, "latest_at": NOW - 3600, "latest_size_bytes": 5 * 1024**3, "busy": False,
        "snapshots": [
            {"id": "a" * 64, "short_id": "aaaaaaaa", "time": NOW - 3600, "host": "box", "paths": ["/home"], "tags": [], "size_bytes": 5 * 1024**3, "verification": "ok"},
            {"id": "b" * 64, "short_id": "bbbbbbbb", "time": NOW - 90000, "host": "box", "paths": ["/home"], "tags": [], "size_bytes": 4 * 1024**3, "verification": "ok"},
        ],
        "backup": {"ok": True, "at": NOW - 3700, "snapshot_id": "a" * 64},
        "last_success": {"ok": True, "at": NOW - 3700},
        "verify": {"ok": True, "at": NOW - 1800, "read_data_subset": "3/10"},
        "last_verified": {"ok": True, "at": NOW - 1800},
        "restore_test": {"ok": True, "at": NOW - 1200, "files_checked": 20, "bytes_checked": 12345678, "mismatches": []},
        "last_restore_test_ok": {"ok": True, "at": NOW - 1200},
    }
    base.update(extra)
    return base


STATE = {
    "repositories": [
        repo("home"),
        repo("photos", restore_test={"ok": False, "at": NOW - 600, "error": "1 of 20 files did not restore intact " + EVIL, "files_checked": 19, "bytes_checked": 1, "mismatches": [{"path": "/x"}]}),
        repo("old", latest_at=NOW - 10 * 86400),
    ],
    "scratch_leftovers": 0,
}


ROLE = {"role": ""}


@web.middleware
async def as_role(request, handler):
    """Pages see the user the test names (the auth middleware's job in the real hub)."""
    if ROLE["role"]:
        from roost.core.hub.auth import IDENTITY_KEY, VIA_TOKEN, Identity, new_user

        request[IDENTITY_KEY] = Identity(user=new_user("op", "x", ROLE["role"]), role=ROLE["role"], via=VIA_TOKEN)
    return await handler(request)


@pytest.fixture
async def client(aiohttp_client, samples, tmp_path):
    hub = samples.FakeHub()
    detail = samples.node_detail()
    detail["node"]["integrations"].append(copy.deepcopy(BACKUP_STATUS))
    detail["state"]["backup"] = copy.deepcopy(STATE)
    hub.details = {NODE: detail}
    hub.audited = []

    async def audit(action, **fields):
        hub.audited.append((action, fields))

    hub.audit = audit
    hub.store = SQLiteStore(tmp_path / "hub.db")
    await hub.store.open()
    app = web.Application(middlewares=[as_role])
    app[HUB_KEY] = await samples.with_hub_halves(hub, tmp_path, "backup")
    frontend.setup(app)
    yield await aiohttp_client(app)
    await hub.manager.shutdown_all()  # stops the policy scheduler
    await hub.store.close()


async def fetch(client, path: str, status: int = 200) -> str:
    resp = await client.get(path)
    text = await resp.text()
    assert resp.status == status, text[:800]
    return text


async def test_the_backups_page_lists_every_repository_worst_first(client):
    html = await fetch(client, "/backups")
    rows = re.findall(r'<tr class="bk-row" data-node="[^"]+" data-name="([^"]+)" data-verdict="([^"]+)"', html)
    assert rows == [("photos", "restore_test_failed"), ("old", "stale"), ("home", "fresh")]
    assert "restore test failed" in html and "the newest snapshot is 10 days old" in html
    assert "3/10" in html and "20 files" in html
    assert 'href="/backups/n0a1b2c3d4e5/home"' in html
    assert 'href="/pings"' in html  # external scripts report through ping checks
    # Hub data is escaped, never markup.
    assert EVIL not in html and "&lt;script&gt;alert" in html


async def test_a_viewer_sees_snapshots_but_no_actions(client):
    ROLE["role"] = "viewer"
    try:
        html = await fetch(client, f"/backups/{NODE}/home")
    finally:
        ROLE["role"] = ""
    assert "aaaaaaaa" in html and "bbbbbbbb" in html
    assert "data-bk-restore" not in html and "bk-retention-form" not in html and "Back up now" not in html


async def test_the_repository_page_shows_snapshots_restore_and_retention(client):
    ROLE["role"] = "operator"
    try:
        html = await fetch(client, f"/backups/{NODE}/home")
    finally:
        ROLE["role"] = ""
    assert "aaaaaaaa" in html and "bbbbbbbb" in html and 'data-bk-restore="' + "a" * 64 + '"' in html
    assert 'id="bk-retention-form"' in html and "Dry run" in html
    assert 'name="keep_daily" value="7"' in html
    html = await fetch(client, f"/backups/{NODE}/nope", status=404)
    assert "reports no backup repository named nope" in html


async def test_the_overview_and_policy_checks(client):
    from roost.core.hub_integration import RouteError
    from roost.integrations.backup.hub import service

    backups = service(client.app[HUB_KEY].manager.integrations["backup"].context)
    data = await backups.overview()
    assert [r["verdict"] for r in data["rows"]] == ["restore_test_failed", "stale", "fresh"]
    assert data["counts"] == {"restore_test_failed": 1, "stale": 1, "fresh": 1}
    for body, message in (
        ({"name": "x", "repository": "home"}, "name the nodes"),
        ({"name": "x", "nodes": [NODE], "repository": "home", "schedule": "every night"}, "cron expression"),
        ({"name": "x", "nodes": [NODE], "repository": "home", "retention": {"keep_last": 0}}, "must keep something"),
        ({"name": "x", "nodes": [NODE], "kind": "vzdump", "guests": [101]}, "storage"),
        ({"name": "x", "nodes": [NODE], "repository": "home", "paths": ["relative/path"]}, "absolute path"),
    ):
        with pytest.raises(RouteError, match=message) as caught:
            await backups.save_policy(body, actor="user:op")
        assert caught.value.status == 400
    assert await backups.policies() == []  # nothing was kept of a bad one
    policy = await backups.save_policy({"name": "nightly", "nodes": [NODE], "repository": "home", "schedule": "30 2 * * *", "max_age_hours": 0.5}, actor="user:op")
    assert client.app[HUB_KEY].audited[-1][0] == "backup.policy.saved"
    home = next(r for r in (await backups.overview())["rows"] if r["name"] == "home")
    assert home["policy"]["id"] == policy["id"] and home["verdict"] == "stale"
    html = await fetch(client, "/backups")
    assert "nightly" in html and "30 2 * * *" in html


async def test_the_node_page_has_a_backups_panel(client):
    html = await fetch(client, f"/nodes/{NODE}")
    assert "Backups" in html and 'href="/backups/n0a1b2c3d4e5/photos"' in html and "restore test failed" in html
