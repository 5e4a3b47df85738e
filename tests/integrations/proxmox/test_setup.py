"""The proxmox integration as the kernel runs it: config validation, setup outcomes, capabilities, and isolation."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import voluptuous as vol
from roost.core.const import STATE_COLLECT_ERROR, STATE_LOADED, STATE_NOT_AVAILABLE, STATE_SETUP_RETRY
from roost.core.plugins import IntegrationManager
from roost.integrations import proxmox
from roost.integrations.proxmox.client import settings_from_config

FIXTURE_DIR = Path(__file__).parent


def raw_config(pve, pki, px, **extra: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": pve.port,
        "token_id": px.TOKEN_ID,
        "token_secret": px.SECRET,
        "ca_file": pki.ca,
        "api_timeout": 1.0,
        **extra,
    }


def manager(tmp_path: Path, table: dict[str, Any] | None, *, only: tuple[str, ...] = ("proxmox",), **more: Any) -> IntegrationManager:
    config = {"proxmox": table} if table is not None else {}
    config.update(more)
    return IntegrationManager(role="agent", config=config, data_dir=tmp_path, entry_points=False, only=list(only))


# ------------------------------------------------------------------ config


def test_config_defaults_need_nothing():
    config = proxmox.CONFIG_SCHEMA({})
    assert config["port"] == 8006 and config["verify_ssl"] is True and config["read_only"] is False
    assert config["api_timeout"] == 3.0 and config["backup_warn_days"] == 7.0


@pytest.mark.parametrize(
    "table, message",
    [
        ({"token_id": "root@pam"}, "USER@REALM!TOKENID"),
        ({"token_id": "root@pam!ci"}, "neither token_secret nor token_secret_file"),
        ({"token_secret": "x"}, "no token_id"),
        ({"token_id": "root@pam!ci", "token_secret": "x", "token_secret_file": "/tmp/x"}, "not both"),
        ({"port": 0}, "between 1 and 65535"),
        ({"read_only": "yes"}, "true or false"),
        ({"api_timeout": 0}, "between"),
        ({"ca_file": "/nonexistent/ca.pem"}, "no such file"),
        ({"pbs": {"host": "pbs"}}, "required"),
        ({"surprise": 1}, "extra keys"),
    ],
)
def test_bad_config_is_refused_with_a_reason(table, message):
    with pytest.raises(vol.Invalid) as err:
        proxmox.CONFIG_SCHEMA(table)
    assert message in str(err.value)


def test_config_errors_never_repeat_the_secret():
    with pytest.raises(vol.Invalid) as err:
        proxmox.CONFIG_SCHEMA({"token_secret": "topsecretvalue", "token_id": "nope"})
    assert "topsecretvalue" not in str(err.value)


def test_a_secret_file_is_read_and_a_host_list_accepted(tmp_path, px):
    secret = tmp_path / "token"
    secret.write_text(px.SECRET + "\n")
    secret.chmod(0o600)
    config = proxmox.CONFIG_SCHEMA({"host": ["pve1.lan", "pve2.lan"], "token_id": px.TOKEN_ID, "token_secret_file": str(secret)})
    settings = settings_from_config(config)
    assert settings is not None and settings.secret == px.SECRET and settings.hosts == ("pve1.lan", "pve2.lan")
    assert px.SECRET not in repr(settings) and px.SECRET not in str(settings.public())


# ------------------------------------------------------------------- setup


async def test_unconfigured_is_not_available_not_an_error(tmp_path):
    mgr = manager(tmp_path, None)
    mgr.load()
    await mgr.setup_all()
    status = mgr.statuses()[0]
    assert status["state"] == STATE_NOT_AVAILABLE
    assert "token" in status["reason"]
    await mgr.shutdown_all()


async def test_loads_collects_and_offers_its_actions_through_the_kernel(tmp_path, pve, pki, px):
    mgr = manager(tmp_path, raw_config(pve, pki, px))
    mgr.load()
    await mgr.setup_all()
    try:
        assert mgr.statuses()[0]["state"] == STATE_LOADED, mgr.statuses()
        assert mgr.capabilities() == ["proxmox.manage", "proxmox.readonly"]
        assert "proxmox.guest.start" in mgr.actions() and "proxmox.guest.destroy" in mgr.actions()
        assert mgr.fields()["proxmox.guest_cpu_percent"]["unit"] == "percent"
        cycle = await mgr.collect_all()
        assert cycle["data"]["proxmox"]["cluster"]["name"] == "homelab"
        assert cycle["metrics"]["proxmox.guest_cpu_percent[100]"] == 15.3
    finally:
        await mgr.shutdown_all()


async def test_read_only_mode_offers_only_the_read_capability(tmp_path, pve, pki, px):
    mgr = manager(tmp_path, raw_config(pve, pki, px, read_only=True))
    mgr.load()
    await mgr.setup_all()
    try:
        assert mgr.capabilities() == ["proxmox.readonly"]
        cycle = await mgr.collect_all()
        assert cycle["data"]["proxmox"]["api"]["read_only"] is True
    finally:
        await mgr.shutdown_all()


async def test_a_refused_token_retries_setup_with_the_reason(tmp_path, pve, pki, px):
    del pve.apitokens[px.TOKEN_ID]
    mgr = manager(tmp_path, raw_config(pve, pki, px))
    mgr.load()
    await mgr.setup_all()
    try:
        status = mgr.statuses()[0]
        assert status["state"] == STATE_SETUP_RETRY
        assert "refused the API token roost@pve!monitor" in status["reason"]
    finally:
        await mgr.shutdown_all()


async def test_a_failing_collection_is_a_collect_error_then_recovers(tmp_path, pve, pki, px):
    mgr = manager(tmp_path, raw_config(pve, pki, px))
    mgr.load()
    await mgr.setup_all()
    try:
        secret = pve.apitokens.pop(px.TOKEN_ID)
        await mgr.collect_all()
        status = mgr.statuses()[0]
        assert status["state"] == STATE_COLLECT_ERROR and "expired" in status["reason"]
        pve.apitokens[px.TOKEN_ID] = secret
        cycle = await mgr.collect_all()
        assert mgr.statuses()[0]["state"] == STATE_LOADED and "proxmox" in cycle["data"]
    finally:
        await mgr.shutdown_all()


async def test_a_slow_proxmox_does_not_stall_other_integrations(tmp_path, pve, pki, px):
    """With every Proxmox request hanging, the cycle ends within the proxmox deadline and the others still report."""
    probe = {"targets": [{"name": "pve-api", "host": "127.0.0.1", "port": pve.port}]}
    mgr = IntegrationManager(
        role="agent",
        config={"proxmox": raw_config(pve, pki, px, api_timeout=0.5), "tcp_probe": probe},
        data_dir=tmp_path,
        custom_dirs=[FIXTURE_DIR.parents[2] / "custom_integrations"],
        entry_points=False,
        only=["proxmox", "tcp_probe"],
    )
    mgr.load()
    await mgr.setup_all()
    try:
        assert {s["domain"]: s["state"] for s in mgr.statuses()} == {"proxmox": STATE_LOADED, "tcp_probe": STATE_LOADED}
        pve.time_scale = 1.0
        pve.slow_network(1.5)
        started = time.monotonic()
        cycle = await mgr.collect_all()
        assert time.monotonic() - started < 1.4
        assert "tcp_probe" in cycle["data"] and "proxmox" not in cycle["data"]
        states = {s["domain"]: s for s in mgr.statuses()}
        assert states["tcp_probe"]["state"] == STATE_LOADED
        assert states["proxmox"]["state"] == STATE_COLLECT_ERROR
        assert "did not answer within 0.5 s" in states["proxmox"]["reason"]
    finally:
        await mgr.shutdown_all()


async def test_a_proxmox_too_slow_at_start_retries_its_setup(tmp_path, pve, pki, px):
    pve.time_scale = 1.0
    pve.slow_network(1.0)
    mgr = manager(tmp_path, raw_config(pve, pki, px, api_timeout=0.3))
    mgr.load()
    await mgr.setup_all()
    try:
        status = mgr.statuses()[0]
        assert status["state"] == STATE_SETUP_RETRY and "did not answer within 0.3 s" in status["reason"]
    finally:
        await mgr.shutdown_all()


async def test_a_collection_that_slows_down_mid_flight_ends_at_its_deadline(tmp_path, pve, pki, px):
    mgr = manager(tmp_path, raw_config(pve, pki, px, api_timeout=0.4))
    mgr.load()
    await mgr.setup_all()
    try:
        pve.time_scale = 1.0
        # The cluster-wide reads stay fast, each node's own reads slow down: the cycle's 0.8 s deadline
        # (api_timeout x 2) ends the collection among them, far from what reading every node would take.
        pve.slow_network(0.3, node="pve1")
        pve.slow_network(0.3, node="pve2")
        started = time.monotonic()
        cycle = await mgr.collect_all()
        elapsed = time.monotonic() - started
        # Inside the kernel's own 8 s limit: the snapshot is partial, not abandoned.
        assert elapsed < 8, elapsed
        state = cycle["data"]["proxmox"]
        assert state["partial"] is True
        assert any(p["kind"] == "deadline" for p in state["problems"]), state["problems"]
        assert mgr.statuses()[0]["state"] == STATE_LOADED
    finally:
        await mgr.shutdown_all()


def test_the_package_lists_the_integration():
    text = (FIXTURE_DIR.parents[2] / "pyproject.toml").read_text()
    assert '"roost.integrations.proxmox"' in text
    manifest = (Path(proxmox.__file__).parent / "manifest.json").read_text()
    assert '"proxmoxer>=2.0"' in manifest and '"requests>=2.28"' in manifest


def test_setup_on_a_proxmox_node_without_a_token_says_how_to_make_one(monkeypatch, tmp_path):
    from roost.core.integration import IntegrationContext, NotAvailable

    monkeypatch.setattr(os.path, "isdir", lambda path: path == "/etc/pve" or os.path.exists(path))
    ctx = IntegrationContext(domain="proxmox", role="agent", config=proxmox.CONFIG_SCHEMA({}), data_dir=tmp_path, logger=__import__("logging").getLogger("t"))
    with pytest.raises(NotAvailable, match="this host is a Proxmox VE node.*pveum user token add"):
        proxmox.roost_setup(ctx)
