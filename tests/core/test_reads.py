"""Read capabilities: every integration declares what each part of its report needs, and only what is effective is kept."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from roost.core.capabilities import KNOWN, is_read_only
from roost.core.const import ROLE_AGENT
from roost.core.integration import SOURCE_BUILTIN
from roost.core.plugins import IntegrationManager, _import_custom, builtin_dir, discover
from roost.core.reads import Reads

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DIR = REPO / "custom_integrations"
HOST = "host.metrics.read"
NET = "network.info.read"


def _integrations() -> list[tuple[str, str, Path]]:
    """Every built-in integration and the example custom one, as (domain, source, folder)."""
    found = discover([EXAMPLE_DIR], entry_points=False)
    return sorted((d, i.source, Path(i.path)) for d, i in found.items())


def _module(domain: str, source: str, folder: Path):
    if source == SOURCE_BUILTIN:
        return importlib.import_module(f"roost.integrations.{domain}")
    return _import_custom(domain, folder)


def test_the_list_covers_every_builtin_and_the_example():
    domains = {d for d, _, _ in _integrations()}
    builtins = {p.name for p in builtin_dir().iterdir() if (p / "manifest.json").is_file()}
    assert builtins <= domains and "tcp_probe" in domains and {"linux_host", "docker", "proxmox"} <= domains


@pytest.mark.parametrize(("domain", "source", "folder"), _integrations(), ids=lambda v: v if isinstance(v, str) and "/" not in v else "")
def test_every_integration_declares_what_each_part_of_its_report_needs(domain, source, folder):
    module = _module(domain, source, folder)
    reads = getattr(module, "READS", None)
    assert isinstance(reads, Reads), f"{domain} must declare READS = roost.core.reads.Reads(...) next to its collector"
    assert reads.problems() == []
    if hasattr(module, "roost_collect"):
        assert not reads.empty, f"{domain} collects, so READS must name the capability of each part"
    else:
        assert reads.empty, f"{domain} reports nothing, so READS must be empty"
    for capability in reads.capabilities():
        assert capability in KNOWN, f"{domain}: {capability} is not in roost.core.capabilities.KNOWN"
        assert is_read_only(capability), f"{domain}: a report part must need a read capability, not {capability}"


def test_the_linux_host_mapping_is_the_documented_one():
    from roost.integrations.linux_host import READS

    assert {READS.state[k] for k in ("facts", "cpu", "memory", "disks", "disk_io", "sensors", "uptime_s")} == {HOST}
    assert READS.state["network"] == NET and READS.state["facts.macs"] == NET
    assert READS.state["processes"] == "host.processes.read" and READS.state["services"] == "services.read"
    assert READS.metrics == {"*": HOST}
    from roost.integrations.docker import READS as DOCKER
    from roost.integrations.proxmox import READS as PROXMOX

    assert DOCKER == Reads.every("docker.read") and PROXMOX == Reads.every("proxmox.readonly")


async def test_a_real_linux_host_collection_has_no_undeclared_part(tmp_path, caplog):
    manager = IntegrationManager(role=ROLE_AGENT, config={}, data_dir=tmp_path, entry_points=False, only=["linux_host"])
    manager.load()
    await manager.setup_all()
    try:
        everything = {HOST, NET, "host.processes.read", "services.read"}
        await manager.collect_all()  # rates need a previous sample
        raw = await manager.collect_all()
        kept = await manager.collect_all(permitted=everything)
    finally:
        await manager.shutdown_all()
    assert kept["withheld"] == {}
    assert set(kept["data"]["linux_host"]) == set(raw["data"]["linux_host"])  # every key it makes is declared
    assert {n.split("[")[0] for n in kept["metrics"]} == {n.split("[")[0] for n in raw["metrics"]}
    assert "is not declared in READS" not in caplog.text


# ------------------------------------------------------------------ filtering

READS = Reads(
    state={"facts": HOST, "facts.macs": NET, "cpu": HOST, "network": NET, "processes": "host.processes.read"},
    metrics={"*": HOST, "net_rx": NET},
)
STATE = {
    "facts": {"os": "Debian", "macs": {"eth0": "aa:bb:cc:dd:ee:ff"}},
    "cpu": {"percent": 5.0},
    "network": [{"name": "eth0", "addresses": [{"address": "192.168.1.2"}]}],
    "processes": {"count": 3},
    "surprise": 1,
}
METRICS = {"cpu_percent": 5.0, "disk_used_percent[/srv]": 40.0, "net_rx[eth0]": 1.0}


def test_only_parts_whose_capability_is_permitted_are_kept():
    state, undeclared = READS.filter_state(STATE, {HOST})
    assert state == {"facts": {"os": "Debian"}, "cpu": {"percent": 5.0}}
    assert undeclared == ["surprise"]  # never sent: nobody said what it needs
    metrics, _ = READS.filter_metrics(METRICS, {HOST})
    assert metrics == {"cpu_percent": 5.0, "disk_used_percent[/srv]": 40.0}

    state, _ = READS.filter_state(STATE, {NET})
    assert state == {"facts": {"macs": {"eth0": "aa:bb:cc:dd:ee:ff"}}, "network": STATE["network"]}
    metrics, _ = READS.filter_metrics(METRICS, {NET})
    assert metrics == {"net_rx[eth0]": 1.0}

    assert READS.filter_state(STATE, set())[0] == {} and READS.filter_metrics(METRICS, set())[0] == {}


def test_what_is_withheld_is_named_with_the_capability_to_grant():
    assert READS.withheld({HOST}) == {"facts.macs": NET, "network": NET, "processes": "host.processes.read", "metrics:net_rx": NET}
    assert Reads.every("docker.read").withheld(set()) == {"*": "docker.read", "metrics": "docker.read"}
    assert READS.withheld({HOST, NET, "host.processes.read"}) == {}


def test_a_bad_declaration_says_what_is_wrong():
    assert Reads(state={"cpu": "not a capability"}).problems()
    assert Reads(state={"a.b.c": HOST}).problems()
    assert Reads(metrics={"": HOST}).problems()


COUNTING = '''
from roost.core import hookimpl
from roost.core.reads import Reads

READS = Reads(state={"public": "probe.public.read", "secret": "probe.secret.read"}, metrics={"*": "probe.public.read"})

@hookimpl
def roost_collect(ctx):
    ctx.data["calls"] = ctx.data.get("calls", 0) + 1
    return {"state": {"public": 1, "secret": "hunter2"}, "metrics": {"calls": ctx.data["calls"]}}
'''
UNDECLARED = '''
from roost.core import hookimpl

@hookimpl
def roost_collect(ctx):
    ctx.data["calls"] = ctx.data.get("calls", 0) + 1
    return {"state": {"anything": 1}, "metrics": {"calls": 1}}
'''


def _custom(root: Path, domain: str, source: str) -> None:
    folder = root / domain
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"domain": domain, "name": domain, "version": "1.0", "roles": ["agent"]}))
    (folder / "__init__.py").write_text(source)


async def test_the_manager_keeps_what_is_permitted_and_skips_what_is_all_withheld(tmp_path):
    _custom(tmp_path / "custom", "probe", COUNTING)
    _custom(tmp_path / "custom", "legacy", UNDECLARED)
    manager = IntegrationManager(role=ROLE_AGENT, config={}, data_dir=tmp_path, custom_dirs=[tmp_path / "custom"], entry_points=False, only=["probe", "legacy"])
    manager.load()
    await manager.setup_all()
    probe, legacy = manager.integrations["probe"], manager.integrations["legacy"]
    # An integration with no READS needs <domain>.read, and offers it so an admin can grant it by name.
    assert "legacy.read" in manager.capabilities()

    out = await manager.collect_all(permitted={"probe.public.read"})
    assert out["data"] == {"probe": {"public": 1}} and out["metrics"] == {"probe.calls": 1.0}
    assert out["withheld"] == {"probe": {"secret": "probe.secret.read"}, "legacy": {"*": "legacy.read", "metrics": "legacy.read"}}
    assert "calls" not in legacy.context.data  # all of it withheld: never even called

    out = await manager.collect_all(permitted=set())
    assert out["data"] == {} and out["metrics"] == {}
    assert probe.context.data["calls"] == 1  # nothing permitted: not called this cycle

    out = await manager.collect_all(permitted={"probe.public.read", "probe.secret.read", "legacy.read"})
    assert out["data"] == {"probe": {"public": 1, "secret": "hunter2"}, "legacy": {"anything": 1}} and out["withheld"] == {}
    await manager.shutdown_all()
