"""services.* through a real hub and agent: status and restart run; restart refused above a read-only ceiling while status still runs."""

from __future__ import annotations

from support_actions import ActionRig

from roost.core.capabilities import Ceiling


async def test_services_end_to_end(tmp_path, fake_systemctl):
    config = {"services": {"run_root": str(fake_systemctl.run_root), "deny": ["ssh.service"]}}
    rig = await ActionRig(tmp_path, config, grants=["services.read", "services.manage"]).start()
    try:
        status = await rig.run("services.status", {"unit": "nginx"})
        assert status.state == "succeeded" and status.result["status"]["sub"] == "running"
        restarted = await rig.run("services.restart", {"unit": "nginx"})
        assert restarted.state == "succeeded" and restarted.result["verb"] == "restart" and "active (running)" in restarted.output
        assert ["restart", "--no-ask-password", "--", "nginx.service"] in fake_systemctl.calls()
        denied = await rig.run("services.stop", {"unit": "ssh"})
        assert denied.state == "refused" and "integrations.services.allow / deny" in denied.error
        injected = await rig.run("services.stop", {"unit": "nginx; reboot"})
        assert injected.state == "refused" and "invalid parameters" in injected.error
        failed = await rig.run("services.restart", {"unit": "broken"})  # not idempotent: no retries
        assert failed.state == "failed" and "control process exited with error code" in failed.error
        # A read-only ceiling: managing is above it, reading the state is not.
        rig.rt.settings.ceiling = Ceiling(mode="read-only")
        above = await rig.run("services.restart", {"unit": "nginx"})
        assert above.state == "refused" and "services.manage is above this host's ceiling" in above.error
        assert (await rig.run("services.status", {"unit": "nginx"})).state == "succeeded"
    finally:
        await rig.close()
