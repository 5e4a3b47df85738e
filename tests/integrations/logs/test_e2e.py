"""logs.journal, logs.file and logs.list through a real hub and agent, with refusals by the agent and above its ceiling."""

from __future__ import annotations

from support_actions import ActionRig

from roost.core.capabilities import Ceiling


async def test_logs_end_to_end(tmp_path, fake_journalctl):
    root = tmp_path / "log"
    root.mkdir()
    (root / "app.log").write_text("started\nERROR boom\nstopped\n")
    config = {"logs": {"roots": {"var": str(root)}, "directory": "/", "units": ["nginx.service"]}}
    rig = await ActionRig(tmp_path, config, grants=["logs.read"]).start()
    try:
        assert {rig.actions()[a]["capability"] for a in ("logs.journal", "logs.file", "logs.list")} == {"logs.read"}
        journal = await rig.run("logs.journal", {"unit": "nginx", "lines": 2})
        assert journal.state == "succeeded" and journal.result["count"] == 2 and journal.output.endswith("worker process 4242 exited with code 0")
        tail = await rig.run("logs.file", {"root": "var", "path": "app.log", "lines": 5, "match": "error"})
        assert tail.state == "succeeded" and tail.result["lines"] == ["ERROR boom"]
        listing = await rig.run("logs.list", {"root": "var"})
        assert listing.state == "succeeded" and [e["name"] for e in listing.result["entries"]] == ["app.log"]
        other = await rig.run("logs.journal", {"unit": "ssh", "lines": 2})
        assert other.state == "refused" and "not readable here" in other.error
        injected = await rig.run("logs.journal", {"unit": "nginx.service --directory=/", "lines": 2})
        assert injected.state == "refused" and "invalid parameters" in injected.error
        assert all(call[call.index("-u") + 1] == "nginx.service" for call in fake_journalctl.calls())
        rig.rt.settings.ceiling = Ceiling(mode="read-only", deny=["logs.*"])
        above = await rig.run("logs.file", {"root": "var", "path": "app.log"})
        assert above.state == "refused" and "above this host's ceiling" in above.error
    finally:
        await rig.close()
