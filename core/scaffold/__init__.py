"""Scaffold a new integration: a working folder (or a publishable package) with a passing test, from templates shipped here.

Run it as ``roost new-integration NAME``, ``python -m roost.core.scaffold NAME``
or, in a checkout, ``scripts/new-integration NAME``.
"""

from __future__ import annotations

import argparse
import keyword
import re
import string
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from roost.core.integration import DOMAIN_RE

EXIT_USAGE = 2

TEMPLATES = resources.files(__name__).joinpath("templates")
_IF = re.compile(r"^@@if (\w+)$")


class ScaffoldError(Exception):
    """A name, destination or file the scaffold refuses; the message says what to do instead."""


@dataclass(frozen=True)
class Options:
    domain: str
    title: str
    hub: bool = False
    action: bool = True
    package: bool = False

    @property
    def module(self) -> str:
        """The import name of a packaged integration: prefixed, so a domain never shadows another top-level package."""
        return f"roost_{self.domain}"

    @property
    def dist(self) -> str:
        return "roost-" + self.domain.replace("_", "-")

    def variables(self) -> dict[str, str]:
        return {
            "domain": self.domain,
            "title": self.title,
            "module": self.module,
            "dist": self.dist,
            "actions_doc": ", actions.py" if self.action else "",
            "hub_doc": "; the hub half is in hub.py" if self.hub else "",
        }

    def flags(self) -> dict[str, bool]:
        return {"hub": self.hub, "action": self.action, "package": self.package}


def builtin_domains() -> set[str]:
    from roost.core.plugins import builtin_dir

    return {p.name for p in builtin_dir().iterdir() if (p / "manifest.json").is_file()}


def check_domain(name: str) -> str:
    """The domain, or ScaffoldError saying why it cannot be one."""
    if not DOMAIN_RE.match(name) or not name.isidentifier():
        suggestion = re.sub(r"[^a-z0-9_]+", "_", name.strip().lower()).strip("_")
        if suggestion and not suggestion[0].isalpha():
            suggestion = "x_" + suggestion
        hint = f" such as {suggestion!r}" if suggestion and DOMAIN_RE.match(suggestion) else ""
        raise ScaffoldError(
            f"{name!r} is not a valid domain: use lowercase letters, digits and underscores, starting with a letter, "
            f"at most 64 characters{hint}"
        )
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise ScaffoldError(f"{name!r} is a Python keyword, so it cannot name a package; pick another domain")
    if name in builtin_domains():
        raise ScaffoldError(
            f"{name!r} is the domain of a built-in Roost integration; a custom one of that name would replace it. "
            "Pick another domain (e.g. my_" + name + ")"
        )
    return name


def render(text: str, options: Options) -> str:
    """Keep the lines of ``@@if FLAG`` / ``@@else`` / ``@@endif`` blocks whose flag is set, then substitute ``${name}``."""
    flags = options.flags()
    kept: list[str] = []
    stack: list[bool] = []
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        stripped = line.strip()
        match = _IF.match(stripped)
        if match:
            if match.group(1) not in flags:
                raise ScaffoldError(f"template line {number}: unknown flag {match.group(1)!r}")
            stack.append(flags[match.group(1)])
        elif stripped == "@@else":
            if not stack:
                raise ScaffoldError(f"template line {number}: @@else without @@if")
            stack[-1] = not stack[-1]
        elif stripped == "@@endif":
            if not stack:
                raise ScaffoldError(f"template line {number}: @@endif without @@if")
            stack.pop()
        elif all(stack):
            kept.append(line)
    if stack:
        raise ScaffoldError("template ends inside an @@if block")
    return string.Template("".join(kept)).substitute(options.variables())


def plan(options: Options, dest: Path) -> dict[Path, str]:
    """Every file to write, by path, with its content."""
    files: dict[Path, str] = {}
    if options.package:
        root = dest / options.dist
        folder = root / "src" / options.module
        tests = root / "tests"
        for name in ("pyproject.toml", "README.md"):
            files[root / name] = _template(f"package/{name}.tmpl", options)
    else:
        root = folder = dest / options.domain
        tests = folder / "tests"
    for name in ("manifest.json", "__init__.py", "const.py", "collector.py"):
        files[folder / name] = _template(f"integration/{name}.tmpl", options)
    if options.action:
        files[folder / "actions.py"] = _template("integration/actions.py.tmpl", options)
    if options.hub:
        for rel in _hub_templates():
            files[folder / rel.removesuffix(".tmpl")] = _template(f"hub/{rel}", options)
    files[tests / f"test_{options.domain}.py"] = _template("tests/test_integration.py.tmpl", options)
    return files


def _hub_templates() -> list[str]:
    """The hub half's files, relative to templates/hub/ (a page and a node-page panel with their templates)."""
    base = TEMPLATES.joinpath("hub")
    out: list[str] = []

    def walk(node, prefix: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif child.name.endswith(".tmpl"):
                out.append(prefix + child.name)

    if base.is_dir():
        walk(base, "")
    return out


def _template(rel: str, options: Options) -> str:
    return render(TEMPLATES.joinpath(rel).read_text(encoding="utf-8"), options)


def scaffold(options: Options, dest: Path, *, force: bool = False) -> list[Path]:
    """Write the integration's files under dest; refuses (writing nothing) when one exists, unless force."""
    check_domain(options.domain)
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise ScaffoldError(f"--dest {dest} is a file, not a folder")
    files = plan(options, dest)
    if not force:
        existing = sorted(p for p in files if p.exists())
        target = dest / (options.dist if options.package else options.domain)
        if existing or target.exists():
            raise ScaffoldError(
                f"{target} already exists; nothing was written. Choose another --dest or NAME, "
                "or pass --force to overwrite the scaffold's files"
            )
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return sorted(files)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the integration's domain: lowercase letters, digits and underscores, e.g. backup_age")
    parser.add_argument("--hub", action="store_true", help="add the hub half: a dashboard page and a panel on the node page")
    parser.add_argument("--no-action", dest="action", action="store_false", help="leave out the example action")
    parser.add_argument(
        "--package",
        action="store_true",
        help="make a publishable Python package (pyproject.toml, entry point in the group 'roost') instead of a custom integration folder",
    )
    parser.add_argument(
        "--dest",
        type=Path,
        help="where to create it (default: ./custom_integrations for a folder, . for a package)",
    )
    parser.add_argument("--title", help="its display name (default: from the domain)")
    parser.add_argument("--force", action="store_true", help="overwrite files that already exist")


def run(args: argparse.Namespace, *, prog: str = "roost new-integration") -> int:
    dest = args.dest if args.dest is not None else Path("." if args.package else "custom_integrations")
    options = Options(
        domain=args.name,
        title=args.title or args.name.replace("_", " ").strip().capitalize(),
        hub=args.hub,
        action=args.action,
        package=args.package,
    )
    try:
        written = scaffold(options, dest, force=args.force)
    except ScaffoldError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:
        print(f"{prog}: cannot write under {dest}: {err.strerror or err}", file=sys.stderr)
        return 1
    root = dest / (options.dist if options.package else options.domain)
    print(f"Created {options.title} ({options.domain}) in {root}:")
    for path in written:
        print(f"  {path.relative_to(dest)}")
    tests = root / "tests"
    if options.package:
        print(f"Next: pip install -e {root} && python -m pytest {tests}")
    else:
        print(f"Next: python -m pytest {tests}")
    return 0


def main(argv: list[str] | None = None, *, prog: str = "roost new-integration") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Scaffold a new Roost integration with a passing test.")
    add_arguments(parser)
    return run(parser.parse_args(argv), prog=prog)


__all__ = ["Options", "ScaffoldError", "check_domain", "main", "plan", "render", "scaffold"]
