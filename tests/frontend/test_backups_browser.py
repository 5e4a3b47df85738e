"""The Backups pages in real Chromium against a real `roost hub` whose own agent owns a real restic repository.

Back up now (with the job's progress on the page), the snapshot list, the
retention dry run with what it keeps and removes, the signing round trip
(the page shows the `roost sign` command, the signed line pasted back prunes
once), and a restore to a new path.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest
from frontend_support import login_states, tab_factory
from support import wait_for
from support_backup import make_repo
from support_procs import HubProc

from roost.core import signing

pytestmark = [pytest.mark.browser, pytest.mark.e2e]
PASSWORD = "a long test passphrase"
API = "/api/v1/integrations/backup"


def test_back_up_dry_run_and_a_signed_prune_in_the_browser(browser, tmp_path):
    from playwright.sync_api import expect

    repo = make_repo(tmp_path, "restic")
    key = signing.generate_operator_key()
    table = repo.table
    config = (
        f"operator_keys = [{json.dumps(signing.public_key_of(key))}]\n"
        '[agent]\ninterval = "1s"\n[agent.ceiling]\nmode = "execute"\n'
        f"[integrations.backup]\nrestore_roots = [{json.dumps(str(tmp_path / 'restores'))}]\n"
        "[[integrations.backup.repositories]]\n"
        f"name = {json.dumps(table['name'])}\nkind = \"restic\"\nrepository = {json.dumps(table['repository'])}\n"
        f"password_file = {json.dumps(table['password_file'])}\npaths = {json.dumps(table['paths'])}\nexcludes = [\"*.tmp\"]\n"
        f"env = {{ RESTIC_CACHE_DIR = {json.dumps(table['env']['RESTIC_CACHE_DIR'])} }}\n"
    )
    hub = HubProc(tmp_path, config)
    hub.start()
    try:
        token = hub.user_token("owner", "admin", "admin")

        def reported():
            status, body = hub.api("GET", f"{API}/overview", token)
            return next((r for r in body.get("rows", []) if r["name"] == repo.name), None) if status == 200 else None

        row = wait_for(reported, 60, "the local agent's repository in the overview")
        node_id = row["node"]["id"]
        status, grants = hub.api("GET", f"/api/v1/nodes/{node_id}/grants", token)
        assert status == 200, grants
        status, body = hub.api("PUT", f"/api/v1/nodes/{node_id}/grants", token, {"grants": sorted(set(grants["grants"]) | {"backup.read", "backup.run", "backup.restore"})})
        assert status == 200, body

        sessions = login_states(browser, hub.base, {"admin": "owner"}, PASSWORD)
        with tab_factory(browser, hub.base, sessions, "admin") as make_tab:
            tab = make_tab()
            page = tab.page
            for n in range(2):
                tab.goto(f"/backups/{node_id}/{repo.name}")
                page.click("[data-bk-action=run]")
                expect(page.locator("#bk-job")).to_have_text(re.compile(r"^succeeded"), timeout=90_000)


            def both_listed() -> bool:
                # The inventory is refreshed after each backup job and reaches the hub with the agent's next report.
                tab.goto(f"/backups/{node_id}/{repo.name}")
                return page.locator("#bk-snapshots tbody tr").count() == 2

            wait_for(both_listed, 60, "both snapshots on the repository page")
            for name in ("keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"):
                page.fill(f"input[name={name}]", "0")
            page.fill("input[name=keep_last]", "1")
            page.click("#bk-retention-form button[type=submit]")
            expect(page.locator("#bk-sign-command")).to_contain_text("roost sign", timeout=90_000)
            dry = page.inner_text("#bk-dry-run")
            assert "Kept (1)" in dry and "Removed (1)" in dry
            # Sign the envelope the page shows, as `roost sign` would on the operator's machine, and paste it back.
            command = page.inner_text("#bk-sign-command")
            unsigned = json.loads(shlex.split(command.split("|")[0])[2])
            assert unsigned["action"] == "backup.prune" and unsigned["params"]["retention"] == {"keep_last": 1}
            page.fill("#bk-signed", json.dumps(signing.sign_envelope(unsigned, key)))
            page.click("#bk-sign-prune")
            expect(page.locator("#bk-job")).to_have_text(re.compile(r"^succeeded"), timeout=90_000)

            def one_left():
                return (reported() or {}).get("snapshot_count") == 1

            wait_for(one_left, 60, "one snapshot left after the signed prune")
            # Restore the snapshot left to a new path on the agent's host.
            tab.goto(f"/backups/{node_id}/{repo.name}")
            page.click("[data-bk-restore]")
            target = tmp_path / "restores" / "today"
            page.fill("#bk-restore-form input[name=target]", str(target))
            page.click("#bk-restore-form button[type=submit]")
            expect(page.locator("#bk-job")).to_have_text(re.compile(r"^succeeded"), timeout=90_000)
            restored = target / str(repo.tree).lstrip("/") / "docs" / "notes.txt"
            assert restored.read_text() == (repo.tree / "docs" / "notes.txt").read_text()
            tab.goto("/backups")
            assert page.locator(f'tr.bk-row[data-name="{repo.name}"]').count() == 1
            assert re.search(r"\bfresh\b|\bunverified\b", page.inner_text(f'tr.bk-row[data-name="{repo.name}"]'))
            tab.assert_clean()
    finally:
        hub.stop()
