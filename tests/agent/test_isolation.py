"""The agent process stays trimmed: it never loads the dashboard, jinja2, the web server or hub-only modules."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

FORBIDDEN = ("roost.frontend", "jinja2", "roost.core.hub", "roost.core.store", "aiohttp")


def test_a_running_agent_imports_nothing_hub_only(tmp_path):
    data = tmp_path / "agent"
    data.mkdir()
    (data / "agent.json").write_text(json.dumps({"node_id": "n123456789abc", "hub": "http://127.0.0.1:9"}))
    script = textwrap.dedent(
        f"""
        import logging, os, signal, sys, threading, json
        from roost.core import cli

        class StopOnceAway(logging.Handler):
            # The event this test needs: the agent runs, finds no hub and goes on; then it is stopped as by its service manager.
            def emit(self, record):
                if "cannot reach the hub" in record.getMessage():
                    os.kill(os.getpid(), signal.SIGTERM)

        logging.getLogger("roost").addHandler(StopOnceAway())
        stop = threading.Timer(60, lambda: os.kill(os.getpid(), signal.SIGTERM))  # only if that never comes
        stop.daemon = True
        stop.start()
        rc = cli.main(["agent", "--data-dir", {str(data)!r}])
        loaded = sorted(m for m in sys.modules if m.startswith({FORBIDDEN!r}))
        print(json.dumps({{"rc": rc, "loaded": loaded, "runtime": "roost.agent.runtime" in sys.modules,
                           "linux_host": "roost.integrations.linux_host" in sys.modules}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["runtime"] and result["linux_host"], result  # it really ran the agent
    assert result["rc"] == 0
    assert result["loaded"] == [], f"agent process imported hub-only modules: {result['loaded']}"
    assert "cannot reach the hub" in out.stderr  # and it went on collecting while the hub was away
