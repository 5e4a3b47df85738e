"""The repo's folders install as roost.*: every package listed, data files shipped, normal and editable installs import."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
# Top-level source folder -> the import package it becomes.
TREES = {"core": "roost.core", "agent": "roost.agent", "integrations": "roost.integrations", "frontend": "roost.frontend", "testing": "roost.testing", "deploy": "roost.deploy"}
# Folders whose files are data the code reads at run time, shipped whatever their names.
DATA_DIRS = {"templates", "static"}
PIP_TIMEOUT = 120


def source_files(tree: str) -> list[Path]:
    return sorted(p for p in (REPO / tree).rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def package_folders() -> dict[str, Path]:
    """Every folder with an __init__.py under the package trees, by the dotted name it must install as."""
    found = {}
    for tree, package in TREES.items():
        for init in (REPO / tree).rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            rel = init.parent.relative_to(REPO / tree)
            found[".".join((package, *rel.parts))] = init.parent
    return found


def data_files() -> list[Path]:
    """Files that are not code but must be in the wheel: manifests, templates, static assets."""
    out = []
    for tree in TREES:
        for path in source_files(tree):
            rel = path.relative_to(REPO / tree)
            if path.suffix in (".py", ".pyc"):
                continue
            if path.name == "manifest.json" or DATA_DIRS & set(rel.parts[:-1]):
                out.append(path)
    return out


def wheel_name(path: Path) -> str:
    """Where a source file lands inside the wheel (roost/core/..., roost/integrations/...)."""
    rel = path.relative_to(REPO)
    return "/".join((*TREES[rel.parts[0]].split("."), *rel.parts[1:]))


def resolve(package: str) -> Path:
    """The folder setuptools builds a package from, following package-dir as setuptools does."""
    package_dir = SETUPTOOLS.get("package-dir", {})
    parts = package.split(".")
    for cut in range(len(parts), 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in package_dir:
            return REPO / package_dir[prefix] / Path(*parts[cut:])
    return REPO / Path(*parts)


# ------------------------------------------------------------- static checks


def test_package_dir_maps_each_folder_into_roost() -> None:
    package_dir = SETUPTOOLS["package-dir"]
    for tree, package in TREES.items():
        assert package_dir.get(package) == tree, f'pyproject needs "{package}" = "{tree}" in [tool.setuptools.package-dir]'
    assert "" not in package_dir, "mapping the repo root would install top-level core/agent packages"


def test_every_package_folder_is_listed() -> None:
    listed = set(SETUPTOOLS["packages"])
    found = package_folders()
    missing = sorted(set(found) - listed)
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"
    for package in listed:
        assert package.startswith("roost."), f"{package} would install outside the roost namespace"
        folder = resolve(package)
        assert (folder / "__init__.py").is_file(), f"{package} maps to {folder}, which is not a package folder"
        assert found.get(package) == folder


def test_every_folder_with_code_is_a_package() -> None:
    """A folder of modules without __init__.py would be silently left out of the wheel."""
    for tree in TREES:
        for path in source_files(tree):
            if path.suffix != ".py":
                continue
            rel = path.relative_to(REPO / tree)
            if DATA_DIRS & set(rel.parts[:-1]):
                continue
            assert (path.parent / "__init__.py").is_file(), f"{path.parent.relative_to(REPO)} has code but no __init__.py"


def test_data_files_are_found() -> None:
    names = {wheel_name(p) for p in data_files()}
    assert "roost/integrations/linux_host/manifest.json" in names
    assert any(n.startswith("roost/frontend/templates/") for n in names)


# ------------------------------------------------------------ real installs


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=PIP_TIMEOUT)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("packaging")


@pytest.fixture(scope="module")
def source_copy(workspace: Path) -> Path:
    """A copy of what the build reads, so building never writes into the shared checkout."""
    copy = workspace / "src"
    copy.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, copy / name)
    for tree in TREES:
        shutil.copytree(REPO / tree, copy / tree, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return copy


@pytest.fixture(scope="module")
def dependencies(workspace: Path) -> Path:
    """This interpreter's installed packages minus roost itself, so a fresh venv needs no network."""
    site = Path(sysconfig.get_paths()["purelib"])
    mirror = workspace / "deps"
    mirror.mkdir()
    for entry in site.iterdir():
        name = entry.name.lower()
        if name.startswith(("roost", "__editable__", "_roost", "__pycache__")) or name.endswith(".pth"):
            continue
        (mirror / entry.name).symlink_to(entry)
    assert (mirror / "pip").is_dir() and (mirror / "setuptools").is_dir(), "the test venv needs pip and setuptools"
    return mirror


def make_venv(path: Path, dependencies: Path) -> Path:
    """A fresh venv that sees the test interpreter's dependencies through a .pth line, but not its roost."""
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(path)], cwd=path.parent)
    python = path / "bin" / "python"
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=path).strip()
    (Path(site) / "_roost_test_dependencies.pth").write_text(f"{dependencies}\n")
    return python


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV"))}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PIP_NO_INDEX="1")
    return env


def pip(python: Path, *args: str, cwd: Path) -> str:
    return _run(
        [str(python), "-m", "pip", *args, "--no-deps", "--no-build-isolation", "--no-index", "-q"],
        cwd=cwd,
        env=clean_env(),
    )


IMPORT_CHECK = textwrap.dedent(
    """
    import importlib.metadata, importlib.resources, importlib.util, json, sys
    import roost.core, roost.agent, roost.integrations.linux_host, roost.frontend
    from pathlib import Path
    from roost.core.plugins import discover
    from roost.core.scaffold import Options, plan

    top_level = {}
    for name in ("core", "agent", "integrations", "frontend"):
        spec = importlib.util.find_spec(name)
        top_level[name] = None if spec is None else (spec.origin or str(list(spec.submodule_search_locations or [])))
    frontend = importlib.resources.files("roost.frontend")
    print(json.dumps({
        "files": {m: sys.modules[m].__file__ for m in ("roost.core", "roost.agent", "roost.integrations.linux_host", "roost.frontend")},
        "top_level": top_level,
        "builtin_manifest": importlib.resources.files("roost.integrations.linux_host").joinpath("manifest.json").is_file(),
        "templates": sorted(p.name for p in frontend.joinpath("templates").iterdir()),
        "builtins": sorted(discover(entry_points=False)),
        "version": importlib.metadata.version("roost"),
        "pytest11": [e.value for e in importlib.metadata.entry_points(group="pytest11") if e.value.startswith("roost.")],
        "scaffold": sorted(str(p) for p in plan(Options("demo", "Demo", hub=True, package=True), Path("/x"))),
        "dist_files": [str(f) for f in (importlib.metadata.files("roost") or [])],
    }))
    """
)


def check_installed(python: Path, venv: Path, source: Path, *, editable: bool) -> dict:
    # -I: no PYTHONPATH, no user site, no current directory on sys.path; run from elsewhere anyway.
    out = json.loads(_run([str(python), "-I", "-c", IMPORT_CHECK], cwd=venv, env=clean_env()))
    root = source if editable else venv
    for module, file in out["files"].items():
        assert Path(file).resolve().is_relative_to(root.resolve()), f"{module} imported from {file}, not {root}"
    for name, origin in out["top_level"].items():
        assert origin is None or not (
            origin.startswith(str(venv)) or origin.startswith(str(source)) or origin.startswith(str(REPO))
        ), f"the install made a top-level {name!r} importable: {origin}"
    for entry in out["dist_files"]:
        assert entry.split("/")[0] not in TREES, f"the distribution installs a top-level {entry}"
    assert out["builtin_manifest"], "roost.integrations.linux_host has no manifest.json once installed"
    assert "base.html" in out["templates"]
    assert "linux_host" in out["builtins"]
    assert (venv / "bin" / "roost").is_file(), "the roost command was not installed"
    assert out["pytest11"] == ["roost.testing.plugin"], "the pytest plugin for integration authors is not registered"
    # roost new-integration renders every template from the installed copy (hub half and package variant included).
    assert {"/x/roost-demo/pyproject.toml", "/x/roost-demo/src/roost_demo/hub.py", "/x/roost-demo/src/roost_demo/templates/panel.html"} <= set(out["scaffold"]), (
        "the scaffold's templates were left out (see [tool.setuptools.package-data])"
    )
    return out


@pytest.mark.e2e
def test_wheel_and_normal_install(workspace: Path, source_copy: Path, dependencies: Path) -> None:
    venv = workspace / "venv-normal"
    python = make_venv(venv, dependencies)
    dist = workspace / "dist"
    pip(python, "wheel", "--wheel-dir", str(dist), str(source_copy), cwd=workspace)
    [wheel] = dist.glob("roost-*.whl")

    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(wheel_name(p) for p in data_files() if wheel_name(p) not in names)
    assert not missing, f"data files left out of the wheel (see [tool.setuptools.package-data]): {missing}"
    for package, folder in package_folders().items():
        expected = "/".join(package.split(".")) + "/__init__.py"
        assert expected in names, f"{package} ({folder.relative_to(REPO)}) is missing from the wheel"
    stray = sorted({n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} - {"roost"})
    assert not stray, f"the wheel installs top-level names besides roost: {stray}"

    pip(python, "install", str(wheel), cwd=workspace)
    check_installed(python, venv, source_copy, editable=False)


@pytest.mark.e2e
def test_editable_install(workspace: Path, source_copy: Path, dependencies: Path) -> None:
    venv = workspace / "venv-editable"
    python = make_venv(venv, dependencies)
    pip(python, "install", "--editable", str(source_copy), cwd=workspace)
    check_installed(python, venv, source_copy, editable=True)
