"""The self-update integration: the hub's "update" for an installed agent (agent.update), carried out by roost.agent.update."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from roost.core import hookimpl
from roost.core.actions import ActionContext, ActionError, ActionSpec
from roost.core.integration import IntegrationContext, NotAvailable

from .const import ACTION_TIMEOUT_SECONDS, ACTION_UPDATE, CAP_AGENT_UPDATE, CAP_AGENT_UPDATE_READ, READS, RESTART_DELAY_SECONDS


@hookimpl
def roost_setup(ctx: IntegrationContext) -> None:
    from roost.agent.update import running_layout

    if running_layout(ctx.data_dir) is None:
        raise NotAvailable("this roost is not installed as /opt/roost/<version>/roost with a current link (install.sh does that); update it the way it was installed")


@hookimpl
def roost_collect(ctx: IntegrationContext) -> dict[str, Any]:
    """The last rolled-back update while this host backs off from it (version, reason, when it may retry), as a fact for the hub."""
    from roost.agent.update import last_failure_fact

    failed = last_failure_fact(ctx.data_dir)
    return {"state": {"facts": {"update_failed": failed}}} if failed else {}


@hookimpl
def roost_capabilities(ctx: IntegrationContext) -> list[str]:
    return [CAP_AGENT_UPDATE, CAP_AGENT_UPDATE_READ]


@hookimpl
def roost_actions(ctx: IntegrationContext) -> list[ActionSpec]:
    async def update(action: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
        from roost.agent.update import UpdateRefused, update_from_hub
        from roost.core.const import __version__

        await action.progress("checking the hub's signed release", None)
        try:
            version = await update_from_hub(ctx.data_dir, restart=False)
        except UpdateRefused as err:
            raise ActionError(str(err)) from None
        # Exit once the result is on its way; systemd (Restart=always) starts the new version,
        # after the supervisor step.
        asyncio.get_running_loop().call_later(RESTART_DELAY_SECONDS, os.kill, os.getpid(), signal.SIGTERM)
        return {"from": __version__, "to": version,
                "output": f"switched from roost {__version__} to {version}; restarting. It commits itself after its health window or is rolled back."}

    return [
        ActionSpec(
            name=ACTION_UPDATE,
            capability=CAP_AGENT_UPDATE,
            handler=update,
            description="Update this agent to the newest release signed with the operator key that its hub holds (no downgrade; rolled back if unhealthy).",
            timeout=ACTION_TIMEOUT_SECONDS,
            rate_limit_per_minute=2,
        )
    ]
