"""docs/hooks.md is generated from roost.core.hookspecs and must match it: a changed hook without a regenerated doc fails here."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pluggy

from roost.core import hookdoc, hookspecs
from roost.core.const import HOOK_NAMESPACE

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "hooks.md"


def test_docs_hooks_md_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == hookdoc.render(), "docs/hooks.md is stale: run scripts/gen-hooks-doc and commit it"


def test_every_hook_and_argument_is_in_the_doc() -> None:
    text = hookdoc.render()
    specs = [name for name, func in vars(hookspecs).items() if inspect.isfunction(func) and hasattr(func, hookdoc.SPEC_MARK)]
    assert specs
    for name in specs:
        func = getattr(hookspecs, name)
        assert f"### {name}\n" in text
        assert f"[`{name}`](#{name})" in text
        for arg in inspect.signature(func).parameters:
            assert f"- `{arg}`: " in text, f"{name}: argument {arg} is not listed"
        first = inspect.getdoc(func).splitlines()[0]
        assert first.replace("``", "`") in text


def _module(source: str) -> ModuleType:
    """A hookspecs-like module from source text, so the generator can be shown a changed hook."""
    module = ModuleType("fake_hookspecs")
    module.__file__ = "fake_hookspecs.py"
    code = textwrap.dedent(source)
    exec(compile(code, module.__file__, "exec"), module.__dict__)
    # inspect.getsource needs the text; hand it over the way linecache would find it.
    import linecache

    linecache.cache[module.__file__] = (len(code), None, code.splitlines(keepends=True), module.__file__)
    return module


SPEC_SOURCE = '''
    """Hooks for a test.

    Use them like this::

        @hookimpl
        def roost_thing(ctx):
            return 1
    """

    import pluggy

    hookspec = pluggy.HookspecMarker("roost")


    @hookspec(firstresult=True)
    def roost_thing(ctx: object, node_id: str) -> int | None:
        """Answer a ``thing``.

        Called when asked.

        :param ctx: the context.
        :param node_id: which node, a longer
            sentence that wraps.

        Return the answer.
        """
'''


def test_the_generator_follows_a_changed_docstring() -> None:
    module = _module(SPEC_SOURCE)
    text = hookdoc.render(module)
    assert "def roost_thing(ctx: object, node_id: str) -> int | None" in text
    assert "Answer a `thing`." in text
    assert "- `node_id`: which node, a longer sentence that wraps." in text
    assert "stops at the first implementation" in text  # firstresult is said
    assert "## Agent hooks" in text and "## Hub hooks" not in text  # an empty group is left out
    assert "```python\n@hookimpl\ndef roost_thing(ctx):\n    return 1\n```" in text
    changed = _module(SPEC_SOURCE.replace("Answer a ``thing``.", "Answer two things."))
    assert hookdoc.render(changed) != text


def test_check_mode_fails_on_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "hooks.md"
    stale.write_text(hookdoc.render().replace("roost_collect", "roost_gather", 1), encoding="utf-8")
    cmd = [sys.executable, "-m", "roost.core.hookdoc", "--check"]
    out = subprocess.run([*cmd, str(stale)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "stale" in out.stderr and "scripts/gen-hooks-doc" in out.stderr
    assert subprocess.run([*cmd, str(DOC)], capture_output=True, text=True, timeout=60).returncode == 0


def test_the_fake_module_is_seen_by_pluggy_like_the_real_one() -> None:
    pm = pluggy.PluginManager(HOOK_NAMESPACE)
    pm.add_hookspecs(_module(SPEC_SOURCE))
    assert hasattr(pm.hook, "roost_thing")
