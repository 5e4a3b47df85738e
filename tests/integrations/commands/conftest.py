"""Small real programs for the commands integration's tests: one that reports exactly what it was given."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Prints its argv (without itself), uid, gid, groups, cwd, environment and stdin as JSON.
REPORTER = """\
import json, os, sys
print(json.dumps({
    "argv": sys.argv[1:],
    "uid": os.getuid(),
    "gid": os.getgid(),
    "groups": sorted(os.getgroups()),
    "cwd": os.getcwd(),
    "env": dict(os.environ),
    "stdin": sys.stdin.read(),
    "pgid_is_pid": os.getpgid(0) == os.getpid(),
}))
"""

# Forks a child that sleeps, writes both pids to the file named by argv[1], and sleeps itself.
FORKER = """\
import os, sys, time
child = os.fork()
if child == 0:
    time.sleep(60)
    os._exit(0)
with open(sys.argv[1], "w") as f:
    f.write(f"{os.getpid()} {child}")
time.sleep(60)
"""

# Writes argv[1] bytes to stdout as fast as it can.
FLOOD = """\
import sys
n = int(sys.argv[1])
out = sys.stdout.buffer
chunk = b"x" * 65536
while n > 0:
    out.write(chunk[: min(n, len(chunk))])
    n -= len(chunk)
out.flush()
"""


def _program(folder: Path, name: str, body: str) -> str:
    path = folder / name
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def programs(tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    return {
        "reporter": _program(folder, "reporter", REPORTER),
        "forker": _program(folder, "forker", FORKER),
        "flood": _program(folder, "flood", FLOOD),
    }
