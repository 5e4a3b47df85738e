"""The backup integration's agent half against real restic and borg repositories: back up, list, verify, restore-test, corrupt."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from support_backup import corrupt
from support_actions import make_ctx, set_up

from roost.core.actions import ActionError, ActionRefused
from roost.integrations.backup.scratch import ScratchRefused


async def setup_backup(tmp_path: Path, *tables, **extra):
    manager, integ = await set_up("backup", {"repositories": [t.table for t in tables], **extra}, tmp_path / "agent-data")
    assert integ.state == "loaded", integ.reason
    return manager, integ


def ctx_of(integ, progress=None):
    ctx = make_ctx(integ.context.config, integ.context.data, domain="backup")
    if progress is not None:
        ctx.progress = progress
    return ctx


def action(integ, name):
    return integ.actions[name]


async def call(integ, name, params, progress=None):
    spec = action(integ, name)
    return await spec.handler(ctx_of(integ, progress), spec.schema(params))


async def collect(integ):
    return await integ.context.data["backups"].collect()


async def test_back_up_list_verify_and_restore_test(tmp_path, repo):
    _, integ = await setup_backup(tmp_path, repo)
    seen = []

    async def progress(message, percent=None):
        seen.append((message, percent))

    result = await call(integ, "backup.run", {"repository": repo.name}, progress)
    assert result["ok"] and result["snapshot_id"]
    assert result["files"] == 8  # cache.tmp excluded
    assert seen and "backing up" in seen[0][0]
    # The tool's own JSON progress (restic's status lines, borg's archive_progress) reaches the job.
    if repo.kind == "restic":
        assert any(re.match(r"^\d+/\d+ files, ", m) and isinstance(p, float) for m, p in seen[1:]), seen
    else:
        assert any(re.match(r"^\d+ files, .* read, .* new$", m) for m, _ in seen[1:]), seen

    listed = await call(integ, "backup.snapshots", {"repository": repo.name})
    assert len(listed["snapshots"]) == 1
    state = (await collect(integ))["state"]
    (entry,) = state["repositories"]
    assert entry["snapshot_count"] == 1 and entry["last_success"]["snapshot_id"] == result["snapshot_id"]
    assert entry["snapshots"][0]["size_bytes"] > 6 * 96 * 1024
    # The secret never leaves the host: not in the state, not in any result.
    assert "correct horse" not in json.dumps(state) and str(repo.secret) not in json.dumps(state)

    verified = await call(integ, "backup.verify", {"repository": repo.name})
    assert verified["ok"]
    tested = await call(integ, "backup.restore_test", {"repository": repo.name})
    assert tested["ok"] and tested["files_checked"] == 8 and tested["whole"] and not tested["mismatches"]
    assert tested["bytes_checked"] > 6 * 96 * 1024
    state = (await collect(integ))["state"]
    (entry,) = state["repositories"]
    assert entry["verify"]["ok"] and entry["restore_test"]["ok"] and entry["snapshots"][0]["verification"] == "ok"
    assert state["scratch_leftovers"] == 0
    scratch_root = tmp_path / "agent-data" / "backup" / "scratch"
    assert list(scratch_root.iterdir()) == []  # the scratch copy is gone


async def test_restore_test_samples_a_large_snapshot(tmp_path, restic_repo):
    _, integ = await setup_backup(tmp_path, restic_repo, restore_max_bytes=1000, restore_sample_files=3)
    await call(integ, "backup.run", {"repository": restic_repo.name})
    tested = await call(integ, "backup.restore_test", {"repository": restic_repo.name})
    assert tested["ok"] and not tested["whole"] and tested["files_sampled"] == 3 and tested["files_checked"] == 3


async def test_restic_check_rotates_its_data_subset(tmp_path, restic_repo):
    _, integ = await setup_backup(tmp_path, restic_repo, check_subsets=3)
    await call(integ, "backup.run", {"repository": restic_repo.name})
    subsets = [(await call(integ, "backup.verify", {"repository": restic_repo.name}))["read_data_subset"] for _ in range(4)]
    assert subsets == ["1/3", "2/3", "3/3", "1/3"]
    full = await call(integ, "backup.verify", {"repository": restic_repo.name, "read_data": True})
    assert full["read_data_subset"] == "all"


async def test_a_corrupted_repository_fails_verify_and_the_restore_test(tmp_path, repo):
    _, integ = await setup_backup(tmp_path, repo)
    await call(integ, "backup.run", {"repository": repo.name})
    corrupt(repo)
    # restic's structural check passes over a flipped pack; reading the data does not.
    with pytest.raises(ActionError, match="check"):
        await call(integ, "backup.verify", {"repository": repo.name, "read_data": True})
    with pytest.raises(ActionError, match="restore test"):
        await call(integ, "backup.restore_test", {"repository": repo.name})
    state = (await collect(integ))["state"]
    (entry,) = state["repositories"]
    assert entry["verify"]["ok"] is False and entry["restore_test"]["ok"] is False
    assert entry["restore_test"]["error"]
    assert entry["snapshots"][0]["verification"] == "failed"
    assert state["scratch_leftovers"] == 0  # a failed test removes its scratch copy too


async def test_backup_paths_stay_inside_what_the_host_allows(tmp_path, restic_repo):
    _, integ = await setup_backup(tmp_path, restic_repo)
    with pytest.raises(ActionRefused, match="outside what this host allows"):
        await call(integ, "backup.run", {"repository": restic_repo.name, "paths": ["/etc"]})
    with pytest.raises(ActionRefused, match="outside"):
        await call(integ, "backup.run", {"repository": restic_repo.name, "paths": [str(restic_repo.tree) + "-evil"]})
    ok = await call(integ, "backup.run", {"repository": restic_repo.name, "paths": [str(restic_repo.tree / "docs")]})
    assert ok["files"] == 2


async def test_a_failed_backup_is_recorded(tmp_path, restic_repo):
    restic_repo.secret.write_text("hunter2-not-the-password\n")
    _, integ = await setup_backup(tmp_path, restic_repo)
    with pytest.raises(ActionError, match="failed"):
        await call(integ, "backup.run", {"repository": restic_repo.name})
    (entry,) = (await collect(integ))["state"]["repositories"]
    assert entry["backup"]["ok"] is False and "hunter2" not in json.dumps(entry)
    assert "wrong password" in entry["backup"]["error"]  # what restic said, so the user knows what to fix
    metrics = (await collect(integ))["metrics"]
    assert metrics[f"last_run_ok[{restic_repo.name}]"] == 0


async def test_scratch_cleanup_refuses_what_the_agent_did_not_create(tmp_path, restic_repo):
    _, integ = await setup_backup(tmp_path, restic_repo)
    scratch = integ.context.data["backups"].scratch
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "only-copy.txt").write_text("irreplaceable")
    with pytest.raises(ScratchRefused):
        scratch.remove(precious)
    # A mark file copied into a real directory does not make it scratch: the token lives in the agent's ledger.
    made = scratch.create()
    (precious / ".roost-scratch").write_text((made / ".roost-scratch").read_text())
    with pytest.raises(ScratchRefused):
        scratch.remove(precious)
    # Nor does a symlink to a real directory placed where a scratch directory was.
    scratch.remove(made)
    made.symlink_to(precious)
    with pytest.raises(ScratchRefused):
        scratch.remove(made)
    assert (precious / "only-copy.txt").read_text() == "irreplaceable"
    # The hub cannot name a scratch location: the restore test takes no path.
    with pytest.raises(Exception, match="extra keys"):
        action(integ, "backup.restore_test").schema({"repository": restic_repo.name, "scratch": str(precious)})


async def test_restore_to_a_new_path_but_not_over_an_existing_one(tmp_path, borg_repo):
    roots = tmp_path / "restores"
    roots.mkdir()
    _, integ = await setup_backup(tmp_path, borg_repo, restore_roots=[str(roots)])
    made = await call(integ, "backup.run", {"repository": borg_repo.name})
    target = roots / "today"
    out = await call(integ, "backup.restore", {"repository": borg_repo.name, "snapshot": made["name"], "target": str(target)})
    assert out["files"] == 8
    assert (target / str(borg_repo.tree).lstrip("/") / "docs" / "notes.txt").read_text().startswith("the spare key")
    with pytest.raises(ActionRefused, match="overwrite"):
        await call(integ, "backup.restore", {"repository": borg_repo.name, "snapshot": made["name"], "target": str(target)})
    assert action(integ, "backup.restore.overwrite").destructive
    # Only inside the host owner's restore roots, and a symlink does not lead out of them.
    with pytest.raises(ActionRefused, match="outside the directories"):
        await call(integ, "backup.restore", {"repository": borg_repo.name, "snapshot": made["name"], "target": str(tmp_path / "elsewhere")})
    (roots / "escape").symlink_to(tmp_path)
    with pytest.raises(ActionRefused, match="outside the directories"):
        await call(integ, "backup.restore", {"repository": borg_repo.name, "snapshot": made["name"], "target": str(roots / "escape" / "x")})
    assert not (tmp_path / "x").exists() and not (tmp_path / "elsewhere").exists()


async def test_restores_are_off_until_the_host_owner_names_restore_roots(tmp_path, restic_repo):
    _, integ = await setup_backup(tmp_path, restic_repo)
    made = await call(integ, "backup.run", {"repository": restic_repo.name})
    with pytest.raises(ActionRefused, match="restore_roots"):
        await call(integ, "backup.restore", {"repository": restic_repo.name, "snapshot": made["snapshot_id"], "target": str(tmp_path / "new")})


async def test_the_config_says_what_is_wrong(tmp_path, restic_repo):
    table = {k: v for k, v in restic_repo.table.items() if k != "password_file"}
    _, integ = await set_up("backup", {"repositories": [table]}, tmp_path / "agent-data")
    assert integ.state != "loaded" and "password_file" in integ.reason
    _, integ = await set_up("backup", {}, tmp_path / "agent-data2")
    assert integ.state == "not_available" and "[[integrations.backup.repositories]]" in integ.reason
