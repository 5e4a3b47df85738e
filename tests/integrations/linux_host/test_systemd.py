"""systemd services: the list-units parser on recorded output, a fake systemctl, and the not-running path."""

from __future__ import annotations

from roost.core.const import STATE_LOADED
from roost.integrations.linux_host.systemd import (
    LIST_UNITS_ARGS,
    NOT_RUNNING_REASON,
    list_services,
    parse_list_units,
    systemd_running,
)

DOMAIN = "linux_host"


async def collect(manager):
    out = await manager.collect_all()
    integ = manager.integrations[DOMAIN]
    assert integ.state == STATE_LOADED, integ.reason
    return out["data"][DOMAIN]


# ----------------------------------------------------------------- parser


def test_parse_recorded_output(fixtures):
    units = parse_list_units((fixtures / "systemctl_list_units.txt").read_text())
    assert len(units) == 20
    by_name = {u["name"]: u for u in units}
    assert by_name["ssh.service"] == {
        "name": "ssh.service",
        "load": "loaded",
        "active": "active",
        "sub": "running",
        "description": "OpenBSD Secure Shell server",
    }
    # "●" (UTF-8) and "*" (C locale) mark failed and not-found units; neither is part of the name.
    assert by_name["nfs-server.service"]["active"] == "failed"
    assert by_name["nfs-server.service"]["description"] == "NFS server and services"
    assert by_name["zfs-mount.service"]["sub"] == "failed"
    assert by_name["auditd.service"]["load"] == "not-found"
    assert by_name["systemd-networkd-wait-online.service"]["load"] == "masked"
    assert by_name["wg-quick@wg0.service"]["active"] == "activating"
    assert by_name["wg-quick@wg0.service"]["description"] == "WireGuard via wg-quick(8) for wg0"
    assert "systemd-fsck@dev-disk-by\\x2duuid-4b1e\\x2d7c2a.service" in by_name
    assert all(not u["name"].startswith(("●", "*")) for u in units)


def test_parse_odd_lines():
    text = (
        "\n"
        "  bare.service loaded active running\n"  # no description
        "● \n"
        "not a unit line\n"
        "  tabs.service\tloaded\tactive\texited\tDescription  with  spaces\n"
    )
    assert parse_list_units(text) == [
        {"name": "bare.service", "load": "loaded", "active": "active", "sub": "running", "description": ""},
        {"name": "tabs.service", "load": "loaded", "active": "active", "sub": "exited", "description": "Description  with  spaces"},
    ]


def test_systemd_running_checks_run_systemd_system(tmp_path):
    assert not systemd_running(tmp_path)
    (tmp_path / "systemd" / "system").mkdir(parents=True)
    assert systemd_running(tmp_path)


# ---------------------------------------------------------- fake systemctl


def test_list_services_runs_systemctl_with_argv(fake_systemctl, fixtures):
    log = fake_systemctl((fixtures / "systemctl_list_units.txt").read_text())
    services = list_services()
    assert services["available"] is True
    assert len(services["units"]) == 20
    assert log.read_text().split() == list(LIST_UNITS_ARGS)
    assert {"--type=service", "--all", "--plain", "--no-legend", "--no-pager"} <= set(LIST_UNITS_ARGS)


def test_list_services_reports_failure(fake_systemctl):
    fake_systemctl(exit_status=1, stderr="System has not been booted with systemd as init system (PID 1). Can't operate.\n")
    services = list_services()
    assert services == {
        "available": False,
        "reason": "systemctl list-units failed: System has not been booted with systemd as init system (PID 1). Can't operate.",
    }


def test_list_services_times_out(fake_systemctl):
    fake_systemctl(sleep=5)
    services = list_services(timeout=0.3)
    assert services["available"] is False
    assert "did not answer within 0.3 s" in services["reason"]


def test_list_services_without_systemctl(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    services = list_services()
    assert services["available"] is False
    assert "systemctl" in services["reason"]


# ------------------------------------------------- through the real kernel


async def test_services_not_available_without_systemd(start_linux_host, fake_host):
    manager = await start_linux_host(fake_host.config)
    state = await collect(manager)
    assert state["services"] == {"available": False, "reason": NOT_RUNNING_REASON}
    assert "services.read" not in manager.capabilities()


async def test_services_listed_when_systemd_runs_and_cached(start_linux_host, fake_host, fake_systemctl, fixtures):
    (fake_host.root / "run" / "systemd" / "system").mkdir(parents=True)
    log = fake_systemctl((fixtures / "systemctl_list_units.txt").read_text())
    manager = await start_linux_host(fake_host.config)
    assert "services.read" in manager.capabilities()
    state = await collect(manager)
    services = state["services"]
    assert services["available"] is True
    assert len(services["units"]) == 20
    assert {"name", "load", "active", "sub", "description"} == set(services["units"][0])
    await collect(manager)
    assert len(log.read_text().splitlines()) == 1  # at most once a minute, not once a cycle


async def test_services_turned_off(start_linux_host, fake_host, fake_systemctl):
    (fake_host.root / "run" / "systemd" / "system").mkdir(parents=True)
    log = fake_systemctl("")
    manager = await start_linux_host({**fake_host.config, "services": False})
    state = await collect(manager)
    assert state["services"]["available"] is False
    assert "services = false" in state["services"]["reason"]
    assert "services.read" not in manager.capabilities()
    assert not log.exists()
