"""A stand-in for smartctl where no SMART disk exists (tests import it as `fakesmart`): it answers from the
documents recorded in tests/integrations/storage/fixtures/, by device, with the exit status each records."""

from __future__ import annotations

import json
import sys
from pathlib import Path

FIXTURES = Path(__file__).parent / "integrations" / "storage" / "fixtures"

# A device whose name is in $FAKE_SMART/asleep is in standby; every call is appended to $FAKE_SMART/calls.
FAKE_SMARTCTL = r'''#!PYTHON
import json, os, sys
state = os.environ["FAKE_SMART"]
with open(os.path.join(state, "calls"), "a") as fh:
    fh.write(" ".join(sys.argv[1:]) + "\n")
fixtures = json.load(open(os.path.join(state, "devices.json")))
if "--scan" in sys.argv:
    print(json.dumps({"devices": [{"name": n, "type": d["type"], "protocol": d["protocol"]} for n, d in fixtures.items()]}))
    sys.exit(0)
name = sys.argv[-1]
asleep = open(os.path.join(state, "asleep")).read().split() if os.path.exists(os.path.join(state, "asleep")) else []
if "standby" in sys.argv and name in asleep:
    doc = json.load(open(os.path.join(fixtures[name]["dir"], "smart_standby.json")))
else:
    doc = json.load(open(os.path.join(fixtures[name]["dir"], fixtures[name]["file"])))
print(json.dumps(doc))
sys.exit(doc["smartctl"]["exit_status"])
'''


def fake_smart(tmp_path: Path, devices: dict[str, tuple[str, str, str]]) -> Path:
    state = tmp_path / "fake"
    state.mkdir()
    script = state / "smartctl"
    script.write_text(FAKE_SMARTCTL.replace("PYTHON", sys.executable))
    script.chmod(0o755)
    write_devices(state, devices)
    return state


def write_devices(state: Path, devices: dict[str, tuple[str, str, str]]) -> None:
    (state / "devices.json").write_text(json.dumps({n: {"type": t, "protocol": p, "file": f, "dir": str(FIXTURES)} for n, (t, p, f) in devices.items()}))


def calls(state: Path) -> list[str]:
    path = state / "calls"
    return path.read_text().splitlines() if path.exists() else []


