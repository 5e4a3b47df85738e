"""The token secret stays on the agent: never in state, metrics, statuses, errors, action results, progress or logs."""

from __future__ import annotations

import json
import logging

import pytest
from roost.core.actions import ActionError, ActionRefused
from roost.core.plugins import IntegrationManager
from roost.integrations.proxmox.client import ProxmoxClient, settings_from_config
from roost.integrations.proxmox.collector import Collector
from roost.integrations.proxmox.errors import ProxmoxApiError


@pytest.fixture(autouse=True)
def everything_logged(caplog):
    caplog.set_level(logging.DEBUG)  # urllib3, requests, proxmoxer and Roost at their most talkative
    for name in ("proxmoxer", "proxmoxer.backends.https", "proxmoxer.core", "urllib3"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield
    for name in ("proxmoxer", "proxmoxer.backends.https", "proxmoxer.core"):
        logging.getLogger(name).setLevel(logging.WARNING)


def assert_clean(px, *things) -> None:
    for thing in things:
        text = thing if isinstance(thing, str) else json.dumps(thing, default=str)
        assert px.SECRET not in text
        assert px.PBS_SECRET not in text


async def test_secret_never_leaks_through_collection_and_failures(tmp_path, pve, pki, px, caplog):
    table = {"host": "127.0.0.1", "port": pve.port, "token_id": px.TOKEN_ID, "token_secret": px.SECRET, "ca_file": pki.ca, "api_timeout": 0.5}
    mgr = IntegrationManager(role="agent", config={"proxmox": table}, data_dir=tmp_path, entry_points=False, only=["proxmox"])
    mgr.load()
    await mgr.setup_all()
    seen = []
    try:
        seen.append(await mgr.collect_all())
        # A proxy or an error page that echoes the request's Authorization header back.
        pve.fail("GET", "/cluster/resources", 500, f"bad header PVEAPIToken={px.TOKEN_ID}={px.SECRET}", times=1)
        seen.append(await mgr.collect_all())
        seen.append(mgr.statuses())
        assert "***" in mgr.statuses()[0]["reason"]
        pve.fail("GET", "/nodes/pve1/status", 403, "Permission check failed (/nodes/pve1, Sys.Audit)", times=1)
        seen.append(await mgr.collect_all())
        secret = pve.apitokens.pop(px.TOKEN_ID)
        seen.append(await mgr.collect_all())
        seen.append(mgr.statuses())
        pve.apitokens[px.TOKEN_ID] = secret
        pve.time_scale = 1.0
        pve.slow_network(1.0)
        seen.append(await mgr.collect_all())
        seen.append(mgr.statuses())
        seen.append(mgr.fields())
        seen.append([spec.describe() for _, spec in mgr.actions().values()])
    finally:
        await mgr.shutdown_all()
    assert_clean(px, seen, caplog.text)
    assert "roost.integrations.proxmox" in caplog.text or "proxmox" in caplog.text


async def test_secret_never_leaks_through_actions(pve, run_action, envelope, px, caplog):
    outputs = []
    result, progress = await run_action("proxmox.guest.backup", {"vmid": 100, "storage": "nas"})
    outputs += [result, progress.events]
    for name, params, options in (
        ("proxmox.guest.start", {"vmid": 555}, {}),
        ("proxmox.guest.destroy", {"vmid": 101}, {}),
        ("proxmox.guest.stop", {"vmid": 100}, {"read_only": True}),
    ):
        with pytest.raises((ActionError, ActionRefused)) as err:
            await run_action(name, params, **options)
        outputs.append(str(err.value))
    pve.fail("POST", "/nodes/pve1/qemu/100/status/stop", 500, f"echo {px.SECRET}")
    with pytest.raises(ActionError) as err:
        await run_action("proxmox.guest.stop", {"vmid": 100})
    assert "***" in str(err.value)
    outputs.append(str(err.value))
    assert_clean(px, outputs, caplog.text)


def test_secret_is_not_in_reprs_or_tls_and_connection_errors(pve, config, px, caplog):
    settings = settings_from_config(config)
    client = ProxmoxClient(settings)
    assert_clean(px, repr(settings), repr(client), settings.public())
    no_ca = {k: v for k, v in config.items() if k != "ca_file"}
    errors = []
    for cfg in (no_ca, {**config, "port": 1}):
        with pytest.raises(ProxmoxApiError) as err:
            Collector(cfg, settings_from_config(cfg)).start()
        errors.append(str(err.value))
    assert_clean(px, errors, caplog.text)
