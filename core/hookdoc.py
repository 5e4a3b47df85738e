"""Write docs/hooks.md from roost.core.hookspecs: every hook's signature and docstring, so the manual cannot drift from the code.

``python -m roost.core.hookdoc`` prints it, ``--output docs/hooks.md`` writes
it, ``--check docs/hooks.md`` exits 1 when the file is stale
(``scripts/gen-hooks-doc`` does the writing in a checkout).
"""

from __future__ import annotations

import argparse
import ast
import inspect
import re
import sys
from pathlib import Path
from types import ModuleType

from .const import HOOK_NAMESPACE

# The two halves of an integration, by hook name; the agent's hooks live in __init__.py, the hub's in hub.py.
GROUPS = (
    ("Agent hooks", "called in every agent (and the hub's in-process agent); implement them in the integration's `__init__.py`"),
    ("Hub hooks", "called in the hub only; a two-role integration implements them in `hub.py` beside `__init__.py`, which agents never import"),
)
HEADER = "<!-- Generated from roost/core/hookspecs.py by scripts/gen-hooks-doc; edit the docstrings there, not this file. -->"
_PARAM = re.compile(r"^:param (\w+):\s*(.*)$")
SPEC_MARK = f"{HOOK_NAMESPACE}_spec"


def _markdown(text: str) -> str:
    """reST-isms of the docstrings in Markdown: ``code`` becomes `code`, :param x: lines become a list."""
    lines = text.splitlines()
    out: list[str] = []
    params: list[tuple[str, list[str]]] = []
    for line in lines:
        match = _PARAM.match(line)
        if match:
            params.append((match.group(1), [match.group(2)]))
            continue
        if params and line.startswith(" ") and line.strip():
            params[-1][1].append(line.strip())
            continue
        if params:
            out.append("Arguments:")
            out.append("")
            out.extend(f"- `{name}`: {' '.join(words)}" for name, words in params)
            params = []
        # A reST literal block (a line ending in '::') becomes a fenced code block below.
        out.append(line)
    if params:
        out.append("Arguments:")
        out.append("")
        out.extend(f"- `{name}`: {' '.join(words)}" for name, words in params)
    return _code_blocks("\n".join(out).replace("``", "`"))


def _code_blocks(text: str) -> str:
    """Turn reST 'text::' plus an indented block into 'text:' plus a fenced python block."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::"):
            out.append(line.rstrip()[:-1])
            i += 1
            block: list[str] = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith("    ")):
                block.append(lines[i][4:])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            while block and not block[0].strip():
                block.pop(0)
            out += ["", "```python", *block, "```", ""]
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def hooks(module: ModuleType) -> list[tuple[str, str, str]]:
    """(name, signature line, docstring) of every hookspec in the module, in the order the module declares them."""
    tree = ast.parse(inspect.getsource(module))
    found = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        func = getattr(module, node.name, None)
        if func is None or not hasattr(func, SPEC_MARK):
            continue
        returns = f" -> {ast.unparse(node.returns)}" if node.returns is not None else ""
        signature = f"def {node.name}({ast.unparse(node.args)}){returns}"
        opts = getattr(func, SPEC_MARK) or {}
        doc = inspect.getdoc(func) or ""
        if opts.get("firstresult"):
            doc += "\n\nThe call stops at the first implementation that returns something other than ``None``."
        found.append((node.name, signature, doc))
    return found


def render(module: ModuleType | None = None) -> str:
    if module is None:
        from . import hookspecs as module
    intro = inspect.getdoc(module) or ""
    summary, _, rest = intro.partition("\n")
    parts = [HEADER, "", "# Hooks", "", _markdown(summary), ""]
    if rest.strip():
        parts += [_markdown(rest.strip()), ""]
    listed = hooks(module)
    hub_prefix = f"{HOOK_NAMESPACE}_hub_"
    groups = [
        (title, blurb, [h for h in listed if h[0].startswith(hub_prefix) == (index == 1)])
        for index, (title, blurb) in enumerate(GROUPS)
    ]
    parts += ["| hook | what it is for |", "| --- | --- |"]
    for title, _blurb, members in groups:
        if members:
            parts.append(f"| **{title}** | |")
        for name, _signature, doc in members:
            first = doc.splitlines()[0] if doc else ""
            parts.append(f"| [`{name}`](#{name}) | {_markdown(first)} |")
    parts.append("")
    for title, blurb, members in groups:
        if not members:
            continue
        parts += [f"## {title}", "", f"These are {blurb}.", ""]
        for name, signature, doc in members:
            parts += [f"### {name}", "", "```python", signature, "```", "", _markdown(doc), ""]
    return "\n".join(parts).rstrip() + "\n"


def main(argv: list[str] | None = None, *, prog: str = "python -m roost.core.hookdoc") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Write the hooks reference (docs/hooks.md) from roost.core.hookspecs.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--output", type=Path, help="write it to this file (default: print it)")
    group.add_argument("--check", type=Path, metavar="FILE", help="exit 1 when FILE differs from what would be written")
    args = parser.parse_args(argv)
    text = render()
    if args.check is not None:
        try:
            current = args.check.read_text(encoding="utf-8")
        except OSError as err:
            print(f"{prog}: cannot read {args.check}: {err.strerror or err}", file=sys.stderr)
            return 1
        if current != text:
            print(f"{prog}: {args.check} is stale; regenerate it with scripts/gen-hooks-doc", file=sys.stderr)
            return 1
        return 0
    if args.output is not None:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
