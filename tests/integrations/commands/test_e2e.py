"""commands.run through a real hub and agent: an allowed command runs, slips are refused by the agent, rate limit, ceiling."""

from __future__ import annotations

import json

import pytest
from support_actions import ActionRig

from roost.core.capabilities import Ceiling
from roost.core.hub.jobs import JobError


def integration(programs, **extra):
    return {
        "commands": {
            "allow": [{"name": "report", "argv": [programs["reporter"], "{text}"], "args": {"text": {"type": "string", "pattern": "^[a-z ;|&$()`<>=-]+$"}}}],
            **extra,
        }
    }


async def test_commands_end_to_end(programs, tmp_path):
    rig = await ActionRig(tmp_path, integration(programs, rate_limit_per_minute=2), grants=["process.execute.limited"]).start()
    try:
        assert rig.actions()["commands.run"]["capability"] == "process.execute.limited"
        done = await rig.run("commands.run", {"command": "report", "args": {"text": "a; b | c"}})
        assert done.state == "succeeded" and json.loads(done.output)["argv"] == ["a; b | c"] and done.result["exit_code"] == 0
        for params, why in (
            ({"command": "report", "args": {"text": "-oproxycommand=x"}}, "may not start with '-'"),
            ({"command": "sh", "args": {}}, "allowlist"),
        ):
            refused = await rig.run("commands.run", params)
            assert refused.state == "refused" and why in refused.error, refused.error
        # Two runs a minute: refused requests did not count, the third run does not happen.
        assert (await rig.run("commands.run", {"command": "report", "args": {"text": "ok"}})).state == "succeeded"
        limited = await rig.run("commands.run", {"command": "report", "args": {"text": "ok"}})
        assert limited.state == "refused" and "at most 2 times a minute" in limited.error
    finally:
        await rig.close()


async def test_commands_above_a_read_only_ceiling_are_refused_by_hub_and_agent(programs, tmp_path):
    rig = await ActionRig(tmp_path, integration(programs), grants=["process.execute.limited"], ceiling=Ceiling(mode="read-only")).start()
    try:
        with pytest.raises(JobError, match="process.execute.limited"):
            await rig.hub.jobs.create(rig.node_id, "commands.run", {"command": "report", "args": {"text": "x"}}, actor="user:test")
        refused = await rig.raw("commands.run", {"command": "report", "args": {"text": "x"}})
        assert refused.state == "refused" and "above this host's ceiling" in refused.error
    finally:
        await rig.close()
