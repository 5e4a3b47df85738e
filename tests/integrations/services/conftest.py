"""A stand-in systemctl on PATH (systemd is not PID 1 here) that keeps each unit's state, and a run root where systemd "runs"."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"

# show: the recorded properties with this unit's current state; start/stop/restart: change it.
# broken.service fails to start, slow.service never finishes, anything else unknown is not found.
FAKE_SYSTEMCTL = """\
import json, sys, time
argv = sys.argv[1:]
with open({calls!r}, "a") as f:
    f.write(json.dumps(argv) + "\\n")
state_file = {state!r}
state = json.load(open(state_file))
verb, unit = argv[0], argv[-1]
known = unit in state
if verb == "show":
    text = open({nginx!r} if known else {missing!r}).read()
    text = text.replace("nginx.service", unit).replace("nope.service", unit)
    if known and state[unit] != "active":
        text = text.replace("ActiveState=active", "ActiveState=inactive").replace("SubState=running", "SubState=dead").replace("MainPID=812", "MainPID=0")
    sys.stdout.write(text)
    sys.exit(0)
if unit == "slow.service":
    time.sleep(60)
if unit == "broken.service":
    sys.stderr.write(f"Job for {{unit}} failed because the control process exited with error code.\\n"
                     f"See \\"systemctl status {{unit}}\\" and \\"journalctl -xeu {{unit}}\\" for details.\\n")
    sys.exit(1)
if not known:
    sys.stderr.write(f"Failed to {{verb}} {{unit}}: Unit {{unit}} not found.\\n")
    sys.exit(5)
state[unit] = "inactive" if verb == "stop" else "active"
json.dump(state, open(state_file, "w"))
"""


class FakeSystemctl:
    def __init__(self, folder: Path, monkeypatch) -> None:
        self.calls_file = folder / "calls.jsonl"
        self.state_file = folder / "state.json"
        self.state_file.write_text(json.dumps({"nginx.service": "active", "redis-server.service": "inactive", "broken.service": "inactive", "slow.service": "inactive"}))
        body = FAKE_SYSTEMCTL.format(
            calls=str(self.calls_file), state=str(self.state_file), nginx=str(FIXTURES / "systemctl_show_nginx.txt"), missing=str(FIXTURES / "systemctl_show_missing.txt")
        )
        path = folder / "systemctl"
        path.write_text(f"#!{sys.executable}\n{body}")
        path.chmod(0o755)
        monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
        # Where systemd "runs": sd_booted's check is a directory.
        self.run_root = folder / "run"
        (self.run_root / "systemd" / "system").mkdir(parents=True)

    def calls(self) -> list[list[str]]:
        if not self.calls_file.exists():
            return []
        return [json.loads(line) for line in self.calls_file.read_text().splitlines()]

    def state(self) -> dict[str, str]:
        return json.loads(self.state_file.read_text())


@pytest.fixture
def fake_systemctl(tmp_path, monkeypatch):
    folder = tmp_path / "fakebin"
    folder.mkdir()
    return FakeSystemctl(folder, monkeypatch)
