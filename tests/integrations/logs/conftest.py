"""A stand-in journalctl that answers from recorded output, and a private systemd-journald for a real round trip."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import need

FIXTURES = Path(__file__).parent / "fixtures"
JOURNALD = next((p for p in ("/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald") if os.path.exists(p)), None)

# Records what it was run with, then prints the recorded lines, honouring -n and -r as journalctl does.
FAKE_JOURNALCTL = """\
import json, sys
argv = sys.argv[1:]
with open({calls!r}, "a") as f:
    f.write(json.dumps(argv) + "\\n")
if {exit_code}:
    sys.stderr.write("Failed to add match: Invalid argument\\n")
    sys.exit({exit_code})
lines = [l for l in open({fixture!r}).read().splitlines() if l.strip()]
if {newest_first}:  # a fixture recorded with -r: back to journal order first
    lines.reverse()
n = int(argv[argv.index("-n") + 1]) if "-n" in argv else len(lines)
lines = lines[-n:] if n else []
if "-r" in argv:
    lines.reverse()
for line in lines:
    print(line)
"""


class FakeJournalctl:
    def __init__(self, folder: Path, monkeypatch) -> None:
        self.folder = folder
        self.calls_file = folder / "calls.jsonl"
        self.monkeypatch = monkeypatch
        monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
        self.answer("journal_nginx.json")

    def answer(self, fixture: str, exit_code: int = 0) -> None:
        path = self.folder / "journalctl"
        body = FAKE_JOURNALCTL.format(
            calls=str(self.calls_file), fixture=str(FIXTURES / fixture), exit_code=exit_code, newest_first="reverse" in fixture
        )
        path.write_text(f"#!{sys.executable}\n{body}")
        path.chmod(0o755)

    def calls(self) -> list[list[str]]:
        if not self.calls_file.exists():
            return []
        return [json.loads(line) for line in self.calls_file.read_text().splitlines()]


@pytest.fixture
def fake_journalctl(tmp_path, monkeypatch):
    folder = tmp_path / "fakebin"
    folder.mkdir()
    return FakeJournalctl(folder, monkeypatch)


SENDER = r"""
import base64, json, socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for record in json.loads(sys.argv[1]):
    data = b""
    for key, value in record.items():
        value = base64.b64decode(value)
        if b"\n" in value:
            data += key.encode() + b"\n" + len(value).to_bytes(8, "little") + value + b"\n"
        else:
            data += key.encode() + b"=" + value + b"\n"
    sock.sendto(data, "/run/systemd/journal/socket")
"""

SCRIPT = r"""
set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/journal /run/log/journal
mount --bind "$DIR" /run/log/journal
"$JOURNALD" & JP=$!
for i in $(seq 50); do [ -S /run/systemd/journal/socket ] && break; sleep 0.1; done
"$PY" -c "$SENDER" "$RECORDS"
# Stop journald only once every record is written (a busy machine may take a while).
for i in $(seq 100); do
  [ "$(journalctl -q --no-pager -o json 2>/dev/null | grep -c OBJECT_SYSTEMD_UNIT)" -ge "$EXPECT" ] && break
  sleep 0.1
done
kill -TERM $JP; wait $JP || true
"""


@pytest.fixture
def private_journal(tmp_path):
    """Write records (each with OBJECT_SYSTEMD_UNIT) into a journal of our own with a real systemd-journald in a mount namespace; returns its directory."""
    need(os.geteuid() == 0 and JOURNALD is not None and shutil.which("unshare") is not None and shutil.which("journalctl") is not None,
         "root, unshare, systemd-journald and journalctl (for a private journal)")
    directory = tmp_path / "journal"
    directory.mkdir()

    def write(records: list[dict[str, str | bytes]]) -> Path:
        encoded = [{k: base64.b64encode(v if isinstance(v, bytes) else v.encode()).decode() for k, v in r.items()} for r in records]
        env = {**os.environ, "JOURNALD": JOURNALD, "PY": sys.executable, "SENDER": SENDER, "RECORDS": json.dumps(encoded), "DIR": str(directory), "EXPECT": str(len(records))}
        subprocess.run(["unshare", "-m", "sh", "-c", SCRIPT], env=env, check=True, timeout=30, capture_output=True)
        return directory

    return write
