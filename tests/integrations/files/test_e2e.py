"""files.list and files.read through a real hub and agent: run, refused by the agent's checks, refused above its ceiling."""

from __future__ import annotations

import os

from support_actions import ActionRig

from roost.core.capabilities import Ceiling


async def test_files_end_to_end(tmp_path):
    root = tmp_path / "share"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "readme.txt").write_text("served by roost\n")
    os.symlink("/etc", root / "etc")
    rig = await ActionRig(tmp_path, {"files": {"roots": {"share": str(root)}}}, grants=["filesystem.read.scoped"]).start()
    try:
        assert rig.actions()["files.read"]["capability"] == "filesystem.read.scoped"
        listed = await rig.run("files.list", {"root": "share", "path": "docs"})
        assert listed.state == "succeeded" and [e["name"] for e in listed.result["entries"]] == ["readme.txt"]
        read = await rig.run("files.read", {"root": "share", "path": "docs/readme.txt"})
        assert read.state == "succeeded" and read.output == "served by roost\n" and read.result["eof"]
        # The agent's own checks, whatever the hub passed on.
        traversal = await rig.run("files.read", {"root": "share", "path": "../../etc/passwd"})
        assert traversal.state == "refused" and "'..'" in traversal.error
        absolute = await rig.raw("files.read", {"root": "share", "path": "/etc/passwd"})
        assert absolute.state == "refused" and "absolute" in absolute.error
        escape = await rig.run("files.read", {"root": "share", "path": "etc/passwd"})
        assert escape.state == "refused" and "symlink" in escape.error
        # The host owner lowers the ceiling: the hub still believes the old one, the agent refuses.
        rig.rt.settings.ceiling = Ceiling(mode="read-only", deny=["filesystem.*"])
        above = await rig.run("files.read", {"root": "share", "path": "docs/readme.txt"})
        assert above.state == "refused" and "above this host's ceiling" in above.error
        audit = [(e.action, e.outcome) for e in await rig.hub.store.list_audit(limit=100)]
        assert ("job.finished", "refused") in audit and ("job.finished", "ok") in audit
    finally:
        await rig.close()
