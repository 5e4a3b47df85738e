"""services.status|start|stop|restart: strict unit names, systemctl argv only, parsing, failures, and not available without systemd."""

from __future__ import annotations

from pathlib import Path

import pytest
import voluptuous as vol
from support_actions import make_ctx, set_up

from roost.core.actions import ActionError, ActionRefused
from roost.integrations.services import CONFIG_SCHEMA
from roost.integrations.services.actions import UNIT_SCHEMA, manage, status
from roost.integrations.services.const import SHOW_PROPERTIES
from roost.integrations.services.systemctl import parse_show, service_name, status_view

FIXTURES = Path(__file__).parent / "fixtures"


def ctx_for(fake, **extra):
    return make_ctx(CONFIG_SCHEMA({"run_root": str(fake.run_root), **extra}))


def test_show_output_is_parsed():
    view = status_view("nginx.service", parse_show((FIXTURES / "systemctl_show_nginx.txt").read_text()))
    assert view == {
        "unit": "nginx.service",
        "description": "A high performance web server and a reverse proxy server",
        "load": "loaded",
        "active": "active",
        "sub": "running",
        "enabled": "enabled",
        "since": "Wed 2024-05-01 09:58:12 UTC",
        "result": "success",
        "path": "/lib/systemd/system/nginx.service",
        "main_pid": 812,
        "exit_status": 0,
        "restarts": 0,
    }
    missing = status_view("nope.service", parse_show((FIXTURES / "systemctl_show_missing.txt").read_text()))
    assert missing["load"] == "not-found" and "main_pid" not in missing and "path" not in missing


@pytest.mark.parametrize(
    "unit",
    ["nginx; reboot", "nginx.service && reboot", "-H root@evil", "--all", "nginx*", "ngi?x", "a b", "$(id)", "`id`", "nginx\n", "../nginx", "/etc/x", "getty@.service", "", 5, None, "x" * 300],
)
def test_unit_names_are_strict(unit):
    with pytest.raises(vol.Invalid):
        UNIT_SCHEMA({"unit": unit})


def test_unit_names_become_service_units():
    assert service_name("nginx") == "nginx.service" and service_name("php7.4-fpm") == "php7.4-fpm.service"
    assert service_name("getty@tty1") == "getty@tty1.service" and service_name("user@1000.service") == "user@1000.service"


async def test_status_runs_show_with_fixed_argv(fake_systemctl):
    result = await status(ctx_for(fake_systemctl), {"unit": "nginx"})
    assert result["status"]["active"] == "active" and "nginx.service: active (running)" in result["output"]
    assert fake_systemctl.calls() == [["show", "--no-pager", "--property=" + ",".join(SHOW_PROPERTIES), "--", "nginx.service"]]


async def test_start_stop_restart_wait_for_systemd_and_report_the_new_state(fake_systemctl):
    ctx = ctx_for(fake_systemctl)
    stopped = await manage(ctx, {"unit": "nginx.service"}, "stop")
    assert stopped["status"]["active"] == "inactive" and fake_systemctl.state()["nginx.service"] == "inactive"
    started = await manage(ctx, {"unit": "nginx"}, "start")
    assert started["status"]["active"] == "active" and started["status"]["main_pid"] == 812
    await manage(ctx, {"unit": "redis-server"}, "restart")
    verbs = [c[:-1] for c in fake_systemctl.calls() if c[0] != "show"]
    assert verbs == [["stop", "--no-ask-password", "--"], ["start", "--no-ask-password", "--"], ["restart", "--no-ask-password", "--"]]
    assert [c[-1] for c in fake_systemctl.calls()] == ["nginx.service"] * 4 + ["redis-server.service"] * 2


async def test_failures_say_what_systemd_said(fake_systemctl):
    ctx = ctx_for(fake_systemctl, systemctl_timeout=1)
    with pytest.raises(ActionError, match="(?s)systemctl start broken.service failed.*journalctl -xeu broken.service"):
        await manage(ctx, {"unit": "broken"}, "start")
    with pytest.raises(ActionError, match="Unit nope.service not found"):
        await manage(ctx, {"unit": "nope"}, "restart")
    with pytest.raises(ActionError, match="there is no nope.service"):
        await status(ctx, {"unit": "nope"})
    with pytest.raises(ActionError, match="did not finish within 1 s"):
        await manage(ctx, {"unit": "slow"}, "start")


async def test_allow_and_deny_globs(fake_systemctl):
    ctx = ctx_for(fake_systemctl, allow=["nginx.service", "redis*"], deny=["redis-sentinel.service"])
    assert (await status(ctx, {"unit": "redis-server"}))["unit"] == "redis-server.service"
    for unit in ("ssh", "redis-sentinel"):
        with pytest.raises(ActionRefused, match="not a service this agent lets the hub manage"):
            await manage(ctx, {"unit": unit}, "stop")
    with pytest.raises(ActionRefused, match="invalid parameters"):
        await manage(ctx, {"unit": "-H evil"}, "stop")
    assert all(c[-1] in ("redis-server.service",) for c in fake_systemctl.calls())


async def test_not_available_when_systemd_does_not_run(tmp_path):
    _, integ = await set_up("services", {"run_root": str(tmp_path)}, tmp_path)
    assert integ.state == "not_available" and "systemd is not running" in integ.reason


async def test_offers_read_and_manage_when_systemd_runs(fake_systemctl, tmp_path):
    manager, integ = await set_up("services", {"run_root": str(fake_systemctl.run_root)}, tmp_path)
    assert integ.state == "loaded" and manager.capabilities() == ["services.manage", "services.read"]
    caps = {name: spec.capability for name, (_, spec) in manager.actions().items()}
    assert caps == {"services.status": "services.read", "services.start": "services.manage", "services.stop": "services.manage", "services.restart": "services.manage"}
    await manager.shutdown_all()
