"""docs/integrations.md's tutorial, followed literally: its commands run, its files written, the result tested and run on a real hub."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "integrations.md"
SECTION = "## Tutorial: from the scaffold to your own integration"
MAX_LINES = 40
FENCE = re.compile(r"^```(\S*)([^\n]*)\n(.*?)^```\n", re.M | re.S)
TITLE = re.compile(r'title="([^"]+)"')


@dataclass(frozen=True)
class Step:
    kind: str  # "command" or "file"
    text: str  # the command line, or the file's content
    path: str = ""


def tutorial_steps(doc: str) -> list[Step]:
    """The tutorial's console commands and titled files, in the order the reader meets them."""
    start = doc.index(SECTION)
    end = doc.find("\n## ", start + len(SECTION))
    section = doc[start : end if end != -1 else len(doc)]
    steps = []
    for match in FENCE.finditer(section):
        lang, info, body = match.groups()
        if lang == "console":
            steps += [Step("command", line[2:].strip()) for line in body.splitlines() if line.startswith("$ ")]
        elif (title := TITLE.search(info)) is not None:
            steps.append(Step("file", body, title.group(1)))
    return steps


def code_lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip())


def run(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    argv = shlex.split(command)
    # The reader's `roost` and `python` are this interpreter's.
    if argv[0] == "roost":
        argv = [sys.executable, "-c", "import sys; from roost.core.cli import main; sys.exit(main())", *argv[1:]]
    elif argv[0] == "python":
        argv = [sys.executable, *argv[1:]]
    else:
        pytest.fail(f"the tutorial runs {argv[0]!r}; this test only knows roost and python")
    if argv[1:3] == ["-m", "pytest"]:
        argv += ["-q", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHON"))}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def test_the_tutorial_has_what_it_promises() -> None:
    steps = tutorial_steps(DOC.read_text(encoding="utf-8"))
    commands = [s.text for s in steps if s.kind == "command"]
    assert commands[0].startswith("roost new-integration backup_age"), commands
    assert sum(1 for c in commands if "pytest" in c) >= 2  # the scaffold's test, then the reader's
    files = [s for s in steps if s.kind == "file"]
    own = [s for s in files if "/tests/" not in s.path]
    assert {Path(s.path).name for s in own} >= {"const.py", "collector.py", "actions.py", "panel.html"}
    lines = sum(code_lines(s.text) for s in own)
    assert lines < MAX_LINES, f"the tutorial's integration code is {lines} lines; it promises fewer than {MAX_LINES}"


@pytest.mark.e2e
async def test_following_the_tutorial_gives_a_working_integration(tmp_path: Path, roost_hub) -> None:
    work = tmp_path / "reader"
    work.mkdir()
    for step in tutorial_steps(DOC.read_text(encoding="utf-8")):
        if step.kind == "file":
            path = work / step.path
            assert path.parent.is_dir(), f"the tutorial writes {step.path}, but the scaffold made no {path.parent.relative_to(work)}"
            path.write_text(step.text, encoding="utf-8")
            continue
        out = run(step.text, work)
        assert out.returncode == 0, f"$ {step.text}\n{out.stdout}\n{out.stderr}"
        if "pytest" in step.text:
            assert " passed" in out.stdout and "failed" not in out.stdout, out.stdout

    # And the result runs on a real hub, as the reader's users will run it.
    folder = work / "custom_integrations" / "backup_age"
    backups = tmp_path / "backups"
    backups.mkdir()
    (backups / "old.tar").write_text("x")
    os.utime(backups / "old.tar", (time.time() - 7200, time.time() - 7200))
    hub = await roost_hub(folder, config={"folder": str(backups)})
    stored = await hub.collect()
    assert stored.metrics["backup_age.files"] == 1
    assert 7100 < stored.metrics["backup_age.age_seconds"] < 7300
    assert stored.state["newest"] == ["old.tar"]
    node = await hub.node()
    assert node["node"]["fields"]["backup_age.age_seconds"]["unit"] == "seconds"
    job = await hub.run_action("backup_age.list", {"count": 3})
    assert job["state"] == "succeeded" and job["result"]["files"] == ["old.tar"]
    refused = await hub.run_action("backup_age.list", {"count": 0})
    assert refused["state"] == "refused" and "count" in refused["error"]
    # The hub half: the panel on the node's page, and the scaffold's page listing the node.
    panel = await hub.node_panel("Backup age")
    assert "<li>old.tar</li>" in panel and str(backups) in panel
    page = await hub.page("/backup_age")
    assert "roost-test" in page and "old.tar" in page
