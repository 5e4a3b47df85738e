"""roost new-integration: names are checked, nothing is overwritten, and what it writes passes its own tests (folder and package)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from roost.core.integration import Manifest
from roost.core.scaffold import Options, ScaffoldError, check_domain, render, scaffold

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 240


def roost(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed `roost` command of this interpreter."""
    return subprocess.run(
        [sys.executable, "-c", "import sys; from roost.core.cli import main; sys.exit(main())", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV", "PYTEST_"))}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PIP_NO_INDEX="1")
    return env


def run_pytest(python: Path | str, tests: Path, *, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a scaffold's own tests in a process of their own, as its author would."""
    return subprocess.run(
        [str(python), "-m", "pytest", str(tests), "-q", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning"],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )


# ------------------------------------------------------------------ names


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("Backup-Age", "not a valid domain"),
        ("2fast", "not a valid domain"),
        ("", "not a valid domain"),
        ("backup age", "not a valid domain"),
        ("x" * 65, "not a valid domain"),
        ("ünïcode", "not a valid domain"),
        ("class", "Python keyword"),
        ("match", "Python keyword"),
        ("docker", "built-in Roost integration"),
        ("linux_host", "built-in Roost integration"),
    ],
)
def test_bad_names_are_refused_with_the_reason(name: str, why: str) -> None:
    with pytest.raises(ScaffoldError, match=why):
        check_domain(name)


def test_a_bad_name_suggests_a_good_one(tmp_path: Path) -> None:
    out = roost("new-integration", "Backup-Age", "--dest", str(tmp_path), cwd=tmp_path)
    assert out.returncode == 2
    assert "roost new-integration: 'Backup-Age' is not a valid domain" in out.stderr
    assert "such as 'backup_age'" in out.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_good_names_pass() -> None:
    for name in ("backup_age", "ups", "nas2", "a"):
        assert check_domain(name) == name


# --------------------------------------------------------------- writing


def test_never_overwrites_without_force(tmp_path: Path) -> None:
    first = roost("new-integration", "backup_age", "--dest", str(tmp_path), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    collector = tmp_path / "backup_age" / "collector.py"
    collector.write_text("# my own work\n")
    again = roost("new-integration", "backup_age", "--dest", str(tmp_path), cwd=tmp_path)
    assert again.returncode == 2
    assert "already exists; nothing was written" in again.stderr and "--force" in again.stderr
    assert collector.read_text() == "# my own work\n"
    # A folder of that name that the scaffold did not make is protected too.
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep")
    assert roost("new-integration", "other", "--dest", str(tmp_path), cwd=tmp_path).returncode == 2
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["notes.txt"]
    forced = roost("new-integration", "backup_age", "--dest", str(tmp_path), "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert "def collect" in collector.read_text()


def test_dest_that_is_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ScaffoldError, match="is a file"):
        scaffold(Options("ups", "UPS"), target)


def test_template_conditions() -> None:
    text = "a\n@@if action\nb ${domain}\n@@else\nc\n@@endif\nd\n"
    assert render(text, Options("ups", "UPS", action=True)) == "a\nb ups\nd\n"
    assert render(text, Options("ups", "UPS", action=False)) == "a\nc\nd\n"
    with pytest.raises(ScaffoldError, match="unknown flag"):
        render("@@if nope\n@@endif\n", Options("ups", "UPS"))
    with pytest.raises(ScaffoldError, match="inside an @@if"):
        render("@@if hub\n", Options("ups", "UPS"))


def test_the_manifest_is_valid_for_each_variant(tmp_path: Path) -> None:
    for hub in (False, True):
        dest = tmp_path / f"hub-{hub}"
        scaffold(Options("ups", "UPS", hub=hub), dest)
        manifest = Manifest.from_path(dest / "ups" / "manifest.json", expected_domain="ups")
        assert manifest.roles == (("agent", "hub") if hub else ("agent",))


def test_module_entry_point_works(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "roost.core.scaffold", "ups", "--no-action", "--dest", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "ups" / "actions.py").exists()
    assert "ACTIONS" not in (tmp_path / "ups" / "__init__.py").read_text()
    script = subprocess.run([str(REPO / "scripts" / "new-integration"), "Bad"], capture_output=True, text=True, timeout=60)
    assert script.returncode == 2 and script.stderr.startswith("scripts/new-integration: 'Bad' is not a valid domain")


# --------------------------------------------------- the output's own tests


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("flags", "expected"),
    [([], 4), (["--no-action"], 2), (["--hub"], 6)],
    ids=["with-action", "no-action", "hub"],
)
def test_custom_folder_passes_its_own_tests(tmp_path: Path, flags: list[str], expected: int) -> None:
    dest = tmp_path / "custom_integrations"
    made = roost("new-integration", "backup_age", *flags, "--dest", str(dest), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    tests = dest / "backup_age" / "tests"
    out = run_pytest(sys.executable, tests, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{expected} passed" in out.stdout, out.stdout
    assert (dest / "backup_age" / "hub.py").exists() == ("--hub" in flags)


@pytest.mark.e2e
def test_the_scaffold_test_fails_when_the_integration_breaks(tmp_path: Path) -> None:
    """Its tests are not decoration: a collector that lost its metric, or an action that lost its check, fails them."""
    dest = tmp_path / "custom_integrations"
    scaffold(Options("backup_age", "Backup age", hub=True), dest)
    folder = dest / "backup_age"
    collector = folder / "collector.py"
    collector.write_text(collector.read_text().replace('"metrics": {METRIC_LOAD: one}', '"metrics": {}'))
    actions = folder / "actions.py"
    actions.write_text(actions.read_text().replace("min=1, max=200", "min=0, max=200"))
    panel = folder / "templates" / "panel.html"
    panel.write_text(panel.read_text().replace("state.load | join", "state.load | no_such_filter"))
    out = run_pytest(sys.executable, folder / "tests", cwd=tmp_path)
    assert out.returncode == 1, out.stdout
    assert "4 failed, 2 passed" in out.stdout, out.stdout
    assert "could not draw this panel" in out.stdout  # the panel's own error, as the dashboard shows it
    for name in ("test_collects_its_metric", "test_the_hub_stores_what_it_collects", "test_echo_runs_as_a_job_once_granted", "test_the_node_page_shows_its_panel"):
        assert f"::{name}" in out.stdout


def fresh_venv(path: Path) -> Path:
    """A new venv that sees this interpreter's packages (Roost, pytest, setuptools) but installs into its own site-packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    # addsitedir (unlike a plain path line) also runs that folder's .pth files: the editable Roost install lives in one.
    (Path(site) / "_roost_test_parent.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    return python


@pytest.mark.e2e
def test_package_installs_and_passes_its_own_tests(tmp_path: Path) -> None:
    made = roost("new-integration", "backup_age", "--package", "--hub", "--dest", str(tmp_path), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    root = tmp_path / "roost-backup-age"
    assert (root / "src" / "roost_backup_age" / "manifest.json").is_file()
    pyproject = (root / "pyproject.toml").read_text()
    assert '[project.entry-points.roost]\nbackup_age = "roost_backup_age"' in pyproject
    python = fresh_venv(tmp_path / "venv")
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q", str(root)],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    # Installed as a normal package: its entry point is what Roost finds, and its manifest shipped with it.
    probe = subprocess.run(
        [
            str(python),
            "-I",
            "-c",
            "import json, importlib.metadata as m, roost_backup_age, importlib.resources as r; "
            "print(json.dumps({'eps': [e.value for e in m.entry_points(group='roost')], 'file': roost_backup_age.__file__, "
            "'manifest': r.files('roost_backup_age').joinpath('manifest.json').is_file(), "
            "'templates': sorted(p.name for p in r.files('roost_backup_age').joinpath('templates').iterdir())}))",
        ],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert found["eps"] == ["roost_backup_age"]
    assert found["manifest"]
    assert found["templates"] == ["page.html", "panel.html"]  # the hub half's templates are package data
    assert Path(found["file"]).is_relative_to(tmp_path / "venv"), found["file"]  # the installed copy, not the source tree
    out = run_pytest(python, root / "tests", cwd=root)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "6 passed" in out.stdout, out.stdout
