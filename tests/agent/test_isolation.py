"""The agent process stays trimmed: it never loads the dashboard, jinja2, the web server or hub-only modules."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

from pathlib import Path

FORBIDDEN = ("roost.frontend", "jinja2", "roost.core.hub", "roost.core.store", "aiohttp")
REPO = Path(__file__).resolve().parents[2]


def test_a_running_agent_imports_nothing_hub_only_nor_any_hub_half(tmp_path):
    data = tmp_path / "agent"
    data.mkdir()
    (data / "agent.json").write_text(json.dumps({"node_id": "n123456789abc", "hub": "http://127.0.0.1:9"}))
    # A two-role integration (agent and hub halves in one folder), loaded like a user's own.
    shutil.copytree(REPO / "custom_integrations" / "tcp_probe", data / "custom_integrations" / "tcp_probe")
    config = tmp_path / "roost.toml"
    config.write_text('[agent]\ninterval = 0.2\n\n[integrations.tcp_probe]\ntargets = [{name = "nothing", host = "127.0.0.1", port = 9}]\n')
    # The agent stops itself (SIGTERM, as systemd would) once it has collected and has found the hub away:
    # an event, not a guessed delay, so a busy machine only makes it slower.
    script = textwrap.dedent(
        f"""
        import logging, os, signal, sys, json
        from roost.agent import runtime
        from roost.core import cli

        class HubAway(logging.Handler):
            seen = False
            def emit(self, record):
                if "cannot reach the hub" in record.getMessage():
                    HubAway.seen = True

        logging.getLogger("roost").addHandler(HubAway())  # not the root logger: the CLI still sets that up
        collect_once = runtime.AgentRuntime.collect_once

        async def collect_then_maybe_stop(self):
            result = await collect_once(self)
            if HubAway.seen:
                os.kill(os.getpid(), signal.SIGTERM)
            return result

        runtime.AgentRuntime.collect_once = collect_then_maybe_stop
        rc = cli.main(["agent", "--config", {str(config)!r}, "--data-dir", {str(data)!r}])
        loaded = sorted(m for m in sys.modules if m.startswith({FORBIDDEN!r}) or m.endswith(".hub") or ".hub." in m)
        print(json.dumps({{"rc": rc, "loaded": loaded, "runtime": "roost.agent.runtime" in sys.modules,
                           "linux_host": "roost.integrations.linux_host" in sys.modules,
                           "tcp_probe": "roost_custom_integrations.tcp_probe" in sys.modules}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["runtime"] and result["linux_host"] and result["tcp_probe"], result  # it really ran the agent
    assert result["rc"] == 0
    assert result["loaded"] == [], f"agent process imported hub-only modules or an integration's hub half: {result['loaded']}"
    assert "cannot reach the hub" in out.stderr  # and it went on collecting while the hub was away


# Modules a plain agent (linux_host and the built-ins, nothing configured for them) must not load at start-up:
# each costs resident memory the agent keeps for its whole life (docs/benchmarks.md, "where the agent's MiB go").
LAZY = (
    "roost.integrations.proxmox.collector",  # only once integrations.proxmox has a host and a token
    "roost.integrations.proxmox.pbs",
    "roost.integrations.backup.inventory",  # only with [[integrations.backup.repositories]]
    "proxmoxer",
    "requests",
    "docker",  # the Docker SDK: the integration talks to the socket itself
    "zeroconf",  # pairing by discovery only
)


def test_a_plain_agent_start_leaves_the_heavy_modules_of_unconfigured_integrations_unloaded(tmp_path):
    data = tmp_path / "agent"
    data.mkdir()
    (data / "agent.json").write_text(json.dumps({"node_id": "n123456789abc", "hub": "http://127.0.0.1:9"}))
    config = tmp_path / "roost.toml"
    config.write_text("[agent]\ninterval = 0.2\n")
    script = textwrap.dedent(
        f"""
        import json, os, signal, sys
        from roost.agent import runtime
        from roost.core import cli

        collect_once = runtime.AgentRuntime.collect_once
        cycles = 0

        async def collect_then_stop(self):
            global cycles
            result = await collect_once(self)
            cycles += 1
            if cycles == 2:  # set-up done and a cycle after it: what a running agent holds
                os.kill(os.getpid(), signal.SIGTERM)
            return result

        runtime.AgentRuntime.collect_once = collect_then_stop
        rc = cli.main(["agent", "--config", {str(config)!r}, "--data-dir", {str(data)!r}])
        lazy = {LAZY!r}
        loaded = sorted(m for m in sys.modules if any(m == name or m.startswith(name + ".") for name in lazy))
        print(json.dumps({{"rc": rc, "cycles": cycles, "loaded": loaded,
                           "proxmox": "roost.integrations.proxmox" in sys.modules,
                           "backup": "roost.integrations.backup" in sys.modules}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # It really started the agent and set up (and declined) the proxmox and backup integrations.
    assert result["rc"] == 0 and result["cycles"] >= 2 and result["proxmox"] and result["backup"], result
    assert result["loaded"] == [], f"a plain agent start imported modules it only needs once configured: {result['loaded']}"
