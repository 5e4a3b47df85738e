"""TCP probe: is each configured service reachable, and how fast does it accept a connection?"""

from __future__ import annotations

from typing import Any

import voluptuous as vol

from roost.core import hookimpl
from roost.core.integration import IntegrationContext

from .const import (
    READS,
    CAPABILITY_PROBE,
    CONF_HOST,
    CONF_NAME,
    CONF_PORT,
    CONF_TARGETS,
    CONF_TIMEOUT,
    DEFAULT_TIMEOUT,
    MAX_TIMEOUT,
    METRIC_LATENCY,
    METRIC_TARGETS_UP,
    METRIC_UP,
)
from .probe import probe_all

TARGET_EXAMPLE = 'targets = [{name = "nas-smb", host = "192.168.1.10", port = 445}]'


def _unique_names(targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    for target in targets:
        if target[CONF_NAME] in seen:
            raise vol.Invalid(f"target name {target[CONF_NAME]!r} is used twice; names label the metrics, make them unique")
        seen.add(target[CONF_NAME])
    return targets


TARGET_SCHEMA = vol.Schema(
    {
        # The name labels the metrics (tcp_probe.up[nas-smb]), so no brackets.
        vol.Required(CONF_NAME): vol.All(
            str, vol.Match(r"^[\w .:-]{1,64}$", msg="use 1-64 letters, digits, spaces or . _ : -")
        ),
        vol.Required(CONF_HOST): vol.All(str, vol.Length(min=1, max=253, msg="give a host name or IP address")),
        vol.Required(CONF_PORT): vol.All(
            int, vol.Range(min=1, max=65535, msg="port must be between 1 and 65535")
        ),
        vol.Optional(CONF_TIMEOUT, default=DEFAULT_TIMEOUT): vol.All(
            vol.Coerce(float),
            vol.Range(min=0.01, max=MAX_TIMEOUT, msg=f"timeout must be between 0.01 and {MAX_TIMEOUT:g} seconds"),
        ),
    }
)

CONFIG_SCHEMA = vol.Schema(
    {
        vol.Required(CONF_TARGETS, msg=f"add at least one target, e.g. {TARGET_EXAMPLE}"): vol.All(
            [TARGET_SCHEMA],
            vol.Length(min=1, msg=f"add at least one target, e.g. {TARGET_EXAMPLE}"),
            _unique_names,
        ),
    }
)


@hookimpl
async def roost_collect(ctx: IntegrationContext) -> dict[str, Any]:
    results = await probe_all(ctx.config[CONF_TARGETS])
    metrics: dict[str, float] = {METRIC_TARGETS_UP: sum(1 for r in results if r.up)}
    for result in results:
        metrics[f"{METRIC_UP}[{result.name}]"] = 1 if result.up else 0
        if result.latency_ms is not None:
            metrics[f"{METRIC_LATENCY}[{result.name}]"] = result.latency_ms
    return {"state": {"targets": [r.as_state() for r in results]}, "metrics": metrics}


@hookimpl
def roost_metric_fields(ctx: IntegrationContext) -> dict[str, dict[str, str]]:
    return {
        METRIC_UP: {
            "unit": "",
            "label": "Up",
            "description": "1 when the target accepted a TCP connection in the last probe, 0 when it did not.",
        },
        METRIC_TARGETS_UP: {
            "unit": "count",
            "label": "Targets up",
            "description": "How many of the configured targets accepted a TCP connection in the last probe.",
        },
        METRIC_LATENCY: {
            "unit": "milliseconds",
            "label": "Connect time",
            "description": "Time to resolve the host and open a TCP connection; only reported while the target is up.",
        },
    }


@hookimpl
def roost_capabilities(ctx: IntegrationContext) -> list[str]:
    return [CAPABILITY_PROBE]
