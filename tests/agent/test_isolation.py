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
    config.write_text('[integrations.tcp_probe]\ntargets = [{name = "nothing", host = "127.0.0.1", port = 9}]\n')
    script = textwrap.dedent(
        f"""
        import os, signal, sys, threading, json
        from roost.core import cli
        threading.Timer(2.5, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
        rc = cli.main(["agent", "--config", {str(config)!r}, "--data-dir", {str(data)!r}])
        loaded = sorted(m for m in sys.modules if m.startswith({FORBIDDEN!r}) or m.endswith(".hub") or ".hub." in m)
        print(json.dumps({{"rc": rc, "loaded": loaded, "runtime": "roost.agent.runtime" in sys.modules,
                           "linux_host": "roost.integrations.linux_host" in sys.modules,
                           "tcp_probe": "roost_custom_integrations.tcp_probe" in sys.modules}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["runtime"] and result["linux_host"] and result["tcp_probe"], result  # it really ran the agent
    assert result["rc"] == 0
    assert result["loaded"] == [], f"agent process imported hub-only modules or an integration's hub half: {result['loaded']}"
    assert "cannot reach the hub" in out.stderr  # and it went on collecting while the hub was away
