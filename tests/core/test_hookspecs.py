"""roost.core.hookspecs is the integration author's manual: every hook is documented, typed and really called."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pluggy
import pytest

from roost.core import hookspecs
from roost.core.const import HOOK_NAMESPACE
from roost.core.plugins import HOOK_NAMES

REPO = Path(__file__).resolve().parents[2]
# Where the kernel and the runtimes live; hooks are called from here and nowhere else.
CALLER_DIRS = [REPO / "core", REPO / "agent"]
SPEC_MARK = f"{HOOK_NAMESPACE}_spec"


def all_hookspecs() -> dict[str, Callable[..., Any]]:
    return {
        name: func
        for name, func in vars(hookspecs).items()
        if inspect.isfunction(func) and hasattr(func, SPEC_MARK)
    }


HOOKS = all_hookspecs()


def doc_problems(func: Callable[..., Any]) -> list[str]:
    """What an author would miss in this hook's docstring; empty when it is complete."""
    problems = []
    doc = inspect.getdoc(func) or ""
    if not doc:
        return ["has no docstring"]
    summary = doc.splitlines()[0]
    if not summary.endswith("."):
        problems.append("first line is not a one-sentence summary ending in '.'")
    for name in inspect.signature(func).parameters:
        if not re.search(rf":param {re.escape(name)}:\s*\S", doc):
            problems.append(f"does not document its argument {name!r} with ':param {name}:'")
    if not re.search(r"\bCalled\b[^.]*\.", doc):
        problems.append("does not say when it is called (a 'Called ...' sentence)")
    if not re.search(r"\bReturn(s)?\b", doc):
        problems.append("does not say what a return value means ('Return ...')")
    return problems


def caller_sources() -> dict[Path, str]:
    return {
        path: path.read_text(encoding="utf-8")
        for folder in CALLER_DIRS
        for path in sorted(folder.rglob("*.py"))
        if path.name != "hookspecs.py"
    }


def call_pattern(hook: str) -> re.Pattern[str]:
    # manager.call(integ, "roost_x", ...) or the kernel's own self._call_logged(integ, "roost_x")
    return re.compile(rf"""\.\w*call\w*\(\s*[\w.\[\]'"]+\s*,\s*['"]{re.escape(hook)}['"]""")


def test_there_are_hooks() -> None:
    assert {"roost_setup", "roost_collect", "roost_shutdown"} <= set(HOOKS)


def test_every_hook_is_marked_and_seen_by_pluggy() -> None:
    pm = pluggy.PluginManager(HOOK_NAMESPACE)
    pm.add_hookspecs(hookspecs)
    registered = {name for name in vars(pm.hook) if not name.startswith("_")}
    assert registered == set(HOOKS)
    assert HOOK_NAMES == set(HOOKS), "the kernel's list of hook names drifted from hookspecs"
    stray = [
        name
        for name, func in vars(hookspecs).items()
        if name.startswith(f"{HOOK_NAMESPACE}_") and inspect.isfunction(func) and name not in HOOKS
    ]
    assert not stray, f"functions named like hooks but not marked @hookspec: {stray}"


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_name_is_prefixed(name: str) -> None:
    assert name.startswith(f"{HOOK_NAMESPACE}_")
    assert re.fullmatch(r"[a-z][a-z0-9_]*", name)


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_is_documented(name: str) -> None:
    problems = doc_problems(HOOKS[name])
    assert not problems, f"{name} " + "; ".join(problems)


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_is_typed(name: str) -> None:
    signature = inspect.signature(HOOKS[name])
    for param in signature.parameters.values():
        assert param.annotation is not param.empty, f"{name}: argument {param.name!r} has no type"
        assert param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY), (
            f"{name}: hooks are called with keyword arguments; {param.name!r} cannot be"
        )
    assert signature.return_annotation is not signature.empty, f"{name}: no return type"


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_is_called_by_the_core(name: str) -> None:
    pattern = call_pattern(name)
    callers = [str(path.relative_to(REPO)) for path, text in caller_sources().items() if pattern.search(text)]
    assert callers, (
        f"{name} is declared in roost.core.hookspecs but nothing in core/ or agent/ calls it through "
        "IntegrationManager.call(); implement the call or remove the hook"
    )


def test_hooks_are_never_called_as_a_chain() -> None:
    """pm.hook.roost_x(...) would let one integration's exception stop all others."""
    offenders = [
        f"{path.relative_to(REPO)}:{text.count('.hook.' + HOOK_NAMESPACE + '_')}"
        for path, text in caller_sources().items()
        if re.search(rf"\.hook\.{HOOK_NAMESPACE}_\w+\s*\(", text)
    ]
    assert not offenders, f"call hooks one integration at a time through IntegrationManager.call: {offenders}"


def test_the_module_docstring_shows_how_to_start() -> None:
    doc = hookspecs.__doc__ or ""
    assert "from roost.core import hookimpl" in doc
    assert "@hookimpl" in doc


# The checks above must be able to fail; prove it on hooks written the wrong way.


def _undocumented(ctx: Any) -> None:
    pass


def _half_documented(ctx: Any, extra: int) -> None:
    """Do a thing.

    :param ctx: the context.
    """


def _complete(ctx: Any) -> None:
    """Do a thing.

    Called once per cycle.

    :param ctx: the context.

    Return nothing.
    """


def test_doc_checker_catches_what_is_missing() -> None:
    assert doc_problems(_undocumented) == ["has no docstring"]
    problems = doc_problems(_half_documented)
    assert "does not document its argument 'extra' with ':param extra:'" in problems
    assert any("Called" in p for p in problems)
    assert any("Return" in p for p in problems)
    assert doc_problems(_complete) == []


def test_call_checker_finds_calls_and_only_calls() -> None:
    pattern = call_pattern("roost_collect")
    assert pattern.search('await self.call(integ, "roost_collect", timeout=1)')
    assert pattern.search("await manager.call(manager.integrations['x'], 'roost_collect')")
    assert not pattern.search('"roost_collect" is mentioned in a docstring')
    assert not call_pattern("roost_collect").search('self.call(integ, "roost_collect_more")')
