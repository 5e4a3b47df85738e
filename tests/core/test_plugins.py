"""The plugin kernel keeps going whatever an integration does: each broken fixture fails alone, "good" keeps reporting."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from roost.core import plugins
from roost.core.const import (
    ROLE_AGENT,
    ROLE_HUB,
    STATE_COLLECT_ERROR,
    STATE_DISABLED,
    STATE_LOADED,
    STATE_NOT_AVAILABLE,
    STATE_SETUP_ERROR,
    STATE_SETUP_RETRY,
)
from roost.core.integration import SOURCE_BUILTIN, SOURCE_CUSTOM, SOURCE_ENTRY_POINT
from roost.core.plugins import IntegrationManager

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "custom_integrations"
KERNEL_LOGGER = "roost.core.plugins"


def make_manager(
    tmp_path: Path,
    *domains: str,
    config: dict[str, Any] | None = None,
    role: str = ROLE_AGENT,
    custom_dirs: list[Path] | None = None,
    entry_points: bool = False,
) -> IntegrationManager:
    """A manager over the fixture integrations, always with "good" loaded beside the ones under test."""
    return IntegrationManager(
        role=role,
        config=config or {},
        data_dir=tmp_path,
        custom_dirs=[FIXTURES] if custom_dirs is None else custom_dirs,
        entry_points=entry_points,
        only=["good", *domains],
    )


async def started(tmp_path: Path, *domains: str, **kwargs: Any) -> IntegrationManager:
    manager = make_manager(tmp_path, *domains, **kwargs)
    manager.load()
    await manager.setup_all()
    return manager


async def collect(manager: IntegrationManager) -> dict[str, Any]:
    """One cycle, checking on the way that the healthy integration still reports."""
    good = manager.integrations["good"]
    cycles_before = good.context.data["cycles"]
    out = await manager.collect_all()
    assert good.state == STATE_LOADED, good.reason
    assert out["data"]["good"] == {"ok": True, "cycle": cycles_before + 1}
    assert out["metrics"]["good.value"] == 1
    assert out["metrics"]["good.cycles"] == cycles_before + 1
    json.dumps(out)  # what goes to the hub is JSON
    return out


def state_of(manager: IntegrationManager, domain: str) -> tuple[str, str]:
    integ = manager.integrations[domain]
    return integ.state, integ.reason


async def wait_for(condition: Any, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.fixture(autouse=True)
def _forget_imported_modules() -> Iterator[None]:
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith((plugins.CUSTOM_PACKAGE + ".", "roost_ep_")):
            del sys.modules[name]


# --------------------------------------------------------------- all at once


async def test_every_broken_fixture_at_once_leaves_the_good_one_reporting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = {
        "bad_config": {"port": "eighty"},
        "toggled": {"enabled": False},
        "hang_sync": {"timeout": 0.2, "sleep": 0.5},
        "hang_async": {"timeout": 0.2},
        "stubborn_async": {"timeout": 0.2, "linger": 0.3},
        "not_ready": {"fail_times": 100},
    }
    fixtures = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir() and not p.name.startswith("_"))
    manager = make_manager(tmp_path, *fixtures, config=config)
    manager.load()
    await manager.setup_all()
    started_at = time.monotonic()
    await collect(manager)
    # The hanging ones cost their own timeout, not the sum of them.
    assert time.monotonic() - started_at < 1.0
    out = await collect(manager)

    expected = {
        "good": STATE_LOADED,
        "import_error": STATE_SETUP_ERROR,
        "exit_at_import": STATE_SETUP_ERROR,
        "bad_json": STATE_SETUP_ERROR,
        "missing_key": STATE_SETUP_ERROR,
        "domain_mismatch": STATE_SETUP_ERROR,
        "bad_role": STATE_SETUP_ERROR,
        "setup_raises": STATE_SETUP_ERROR,
        "not_available": STATE_NOT_AVAILABLE,
        "not_ready": STATE_SETUP_RETRY,
        "dep_on_retry": STATE_SETUP_RETRY,
        "collect_flaky": STATE_COLLECT_ERROR,
        "hang_sync": STATE_COLLECT_ERROR,
        "hang_async": STATE_COLLECT_ERROR,
        "stubborn_async": STATE_COLLECT_ERROR,
        "unknown_hook": STATE_SETUP_ERROR,
        "wrong_arg": STATE_SETUP_ERROR,
        "unmarked": STATE_LOADED,
        "bad_config": STATE_SETUP_ERROR,
        "crash_schema": STATE_SETUP_ERROR,
        "toggled": STATE_DISABLED,
        "missing_req": STATE_NOT_AVAILABLE,
        "missing_dep": STATE_SETUP_ERROR,
        "dep_child": STATE_LOADED,
        "dep_parent": STATE_LOADED,
        "cycle_a": STATE_SETUP_ERROR,
        "cycle_b": STATE_SETUP_ERROR,
        "bad_state": STATE_COLLECT_ERROR,
        "nan_state": STATE_COLLECT_ERROR,
        "bad_metrics": STATE_LOADED,
        "metrics_not_mapping": STATE_COLLECT_ERROR,
        "not_a_mapping": STATE_COLLECT_ERROR,
    }
    assert sorted(manager.integrations) == sorted(expected), "hub_only must not load in the agent role"
    states = {domain: integ.state for domain, integ in manager.integrations.items()}
    assert states == expected
    for status in manager.statuses():
        if status["state"] != STATE_LOADED:
            assert status["reason"], f"{status['domain']} is {status['state']} without a reason"
    json.dumps(manager.statuses())

    assert set(out["data"]) == {"good", "bad_metrics"}
    assert {name.split(".")[0] for name in out["metrics"]} == {"good", "dep_child", "dep_parent", "bad_metrics"}
    # What they name, and for each that collects without declaring READS, the capability its reports then need.
    undeclared = {f"{domain}.read" for domain, integ in manager.integrations.items() if integ.active and manager.has_hook(integ, "roost_collect")}
    assert manager.capabilities() == sorted({"test.good", "test.unmarked"} | undeclared)
    await manager.shutdown_all()
    # Nothing escaped as an unhandled error in the event loop.
    assert not [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR]


# ------------------------------------------------------------------ loading


@pytest.mark.parametrize(
    ("domain", "reason"),
    [
        ("bad_json", "bad manifest.json: manifest.json is not valid JSON"),
        ("missing_key", "bad manifest.json: version: required key not provided"),
        ("domain_mismatch", "bad manifest.json: domain 'something_else' does not match its folder 'domain_mismatch'"),
        ("bad_role", "bad manifest.json: roles.1: roles may only contain 'agent' and 'hub'"),
    ],
)
@pytest.mark.parametrize("role", [ROLE_AGENT, ROLE_HUB])
async def test_bad_manifest_is_shown_and_its_code_never_imported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, domain: str, reason: str, role: str
) -> None:
    manager = await started(tmp_path, domain, role=role)
    state, why = state_of(manager, domain)
    assert state == STATE_SETUP_ERROR
    assert why.startswith(reason)
    assert f"{plugins.CUSTOM_PACKAGE}.{domain}" not in sys.modules
    assert any(domain in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    await collect(manager)


@pytest.mark.parametrize(
    ("domain", "reason"),
    [
        ("import_error", "import failed: RuntimeError: boom at import"),
        ("exit_at_import", "import failed: SystemExit: 3"),
    ],
)
async def test_import_error_fails_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, domain: str, reason: str
) -> None:
    manager = await started(tmp_path, domain)
    assert state_of(manager, domain) == (STATE_SETUP_ERROR, reason)
    logged = [r for r in caplog.records if r.name == KERNEL_LOGGER and r.levelno == logging.ERROR]
    assert any(domain in r.getMessage() and r.exc_info for r in logged), "the traceback is logged with the name"
    await collect(manager)
    await collect(manager)


async def test_unknown_hook_name_is_rejected_with_a_hint(tmp_path: Path) -> None:
    manager = await started(tmp_path, "unknown_hook")
    state, reason = state_of(manager, "unknown_hook")
    assert state == STATE_SETUP_ERROR
    assert "invalid hook implementation: unknown hook 'roost_colect'; did you mean roost_collect?" in reason
    assert not manager.pm.is_registered(manager.integrations["unknown_hook"].module)
    await collect(manager)


async def test_wrong_argument_name_is_rejected(tmp_path: Path) -> None:
    manager = await started(tmp_path, "wrong_arg")
    state, reason = state_of(manager, "wrong_arg")
    assert state == STATE_SETUP_ERROR
    assert "roost_collect: unknown argument(s) 'context'; the hook offers ctx" in reason
    out = await collect(manager)
    assert not any(name.startswith("wrong_arg.") for name in out["metrics"])


async def test_pluggy_itself_rejects_what_the_kernel_checks(tmp_path: Path) -> None:
    """The kernel's friendlier checks mirror pluggy's validation, which stays in place behind them."""
    import pluggy

    from roost.core import hookimpl, hookspecs

    class WrongArg:
        @hookimpl
        def roost_collect(self, context):  # pragma: no cover - never called
            return None

    class UnknownHook:
        @hookimpl
        def roost_colect(self, ctx):  # pragma: no cover - never called
            return None

    pm = pluggy.PluginManager("roost")
    pm.add_hookspecs(hookspecs)
    with pytest.raises(pluggy.PluginValidationError):
        pm.register(WrongArg())
    pm.register(UnknownHook())
    with pytest.raises(pluggy.PluginValidationError):
        pm.check_pending()


async def test_unmarked_hook_function_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    manager = await started(tmp_path, "unmarked")
    assert state_of(manager, "unmarked") == (STATE_LOADED, "")
    assert any(
        "unmarked defines roost_collect without @hookimpl" in r.getMessage() and r.levelno == logging.WARNING
        for r in caplog.records
    )
    assert "test.unmarked" in manager.capabilities()
    await collect(manager)  # the unmarked roost_collect would raise if it were called


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"port": "eighty"}, "bad config in [integrations.bad_config]: port: expected int"),
        ({"port": 70000}, "bad config in [integrations.bad_config]: port: value must be at most 65535"),
        ({}, "bad config in [integrations.bad_config]: port: required key not provided"),
        ({"port": 80, "hots": "nas"}, "bad config in [integrations.bad_config]: hots: extra keys not allowed"),
        ("yes", "integrations.bad_config must be a table, got str"),
    ],
)
async def test_bad_config_names_the_key(tmp_path: Path, config: Any, reason: str) -> None:
    manager = await started(tmp_path, "bad_config", config={"bad_config": config})
    assert state_of(manager, "bad_config") == (STATE_SETUP_ERROR, reason)
    await collect(manager)


async def test_good_config_reaches_the_context_with_defaults(tmp_path: Path) -> None:
    manager = await started(tmp_path, "bad_config", config={"bad_config": {"port": 8080, "timeout": 3}})
    integ = manager.integrations["bad_config"]
    assert integ.context.config == {"port": 8080, "host": "localhost"}  # "timeout" is the core's, stripped
    assert integ.timeout == 3.0


async def test_crashing_config_schema_fails_alone(tmp_path: Path) -> None:
    manager = await started(tmp_path, "crash_schema")
    state, reason = state_of(manager, "crash_schema")
    assert state == STATE_SETUP_ERROR
    assert reason.startswith("CONFIG_SCHEMA raised KeyError")
    await collect(manager)


async def test_enabled_false_disables_without_importing(tmp_path: Path) -> None:
    manager = await started(tmp_path, "toggled", config={"toggled": {"enabled": False}})
    state, reason = state_of(manager, "toggled")
    assert state == STATE_DISABLED
    assert "integrations.toggled.enabled = false" in reason
    assert f"{plugins.CUSTOM_PACKAGE}.toggled" not in sys.modules
    out = await collect(manager)
    assert "toggled.on" not in out["metrics"]


@pytest.mark.parametrize(
    ("table", "reason"),
    [
        ({"enabled": "no"}, "integrations.toggled.enabled: expected true or false, got 'no'"),
        ({"timeout": 0}, "integrations.toggled.timeout: expected seconds between 0 and 600, got 0"),
        ({"timeout": "slow"}, "integrations.toggled.timeout: expected seconds between 0 and 600, got 'slow'"),
    ],
)
async def test_bad_core_keys_fail_alone(tmp_path: Path, table: dict[str, Any], reason: str) -> None:
    manager = await started(tmp_path, "toggled", config={"toggled": table})
    assert state_of(manager, "toggled") == (STATE_SETUP_ERROR, reason)
    await collect(manager)


async def test_missing_requirement_is_not_available_with_a_pip_hint(tmp_path: Path) -> None:
    manager = await started(tmp_path, "missing_req")
    state, reason = state_of(manager, "missing_req")
    assert state == STATE_NOT_AVAILABLE
    assert "missing requirement(s): roost-test-surely-absent-package>=1.0" in reason
    assert "pip install 'roost-test-surely-absent-package>=1.0'" in reason
    assert f"{plugins.CUSTOM_PACKAGE}.missing_req" not in sys.modules
    await collect(manager)


async def test_missing_dependency_fails_alone(tmp_path: Path) -> None:
    manager = await started(tmp_path, "missing_dep")
    assert state_of(manager, "missing_dep") == (
        STATE_SETUP_ERROR,
        "depends on integration 'not_installed_anywhere', which is not installed",
    )
    await collect(manager)


async def test_dependency_of_another_role_is_named(tmp_path: Path) -> None:
    custom = tmp_path / "custom"
    folder = custom / "needs_hub_only"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(
        json.dumps({"domain": "needs_hub_only", "name": "x", "version": "1", "roles": ["agent"], "dependencies": ["hub_only"]})
    )
    (folder / "__init__.py").write_text("")
    manager = await started(tmp_path, "needs_hub_only", custom_dirs=[FIXTURES, custom])
    assert state_of(manager, "needs_hub_only") == (
        STATE_SETUP_ERROR,
        "depends on integration 'hub_only', which does not run in the agent role",
    )
    await collect(manager)


async def test_dependencies_set_up_first_and_shut_down_last(tmp_path: Path) -> None:
    # "only" names the child; its dependency comes along.
    manager = await started(tmp_path, "dep_child")
    child, parent = manager.integrations["dep_child"], manager.integrations["dep_parent"]
    assert child.state == parent.state == STATE_LOADED
    assert parent.context.data["setup_at"] < child.context.data["setup_at"]
    out = await collect(manager)
    assert out["metrics"]["dep_child.alive"] == out["metrics"]["dep_parent.alive"] == 1
    await manager.shutdown_all()
    assert child.context.data["shutdown_at"] < parent.context.data["shutdown_at"]
    await manager.shutdown_all()  # a second call is harmless


async def test_dependent_of_a_disabled_integration_fails_alone(tmp_path: Path) -> None:
    manager = await started(tmp_path, "dep_child", config={"dep_parent": {"enabled": False}})
    state, reason = state_of(manager, "dep_child")
    assert state == STATE_SETUP_ERROR
    assert reason.startswith("depends on integration 'dep_parent', which is disabled")
    await collect(manager)


async def test_dependency_cycle_is_reported_not_looped_on(tmp_path: Path) -> None:
    manager = await started(tmp_path, "cycle_a", "cycle_b")
    reasons = {state_of(manager, d) for d in ("cycle_a", "cycle_b")}
    assert {state for state, _ in reasons} == {STATE_SETUP_ERROR}
    assert any("dependency cycle: cycle_a -> cycle_b -> cycle_a" in reason for _, reason in reasons)
    await collect(manager)


@pytest.mark.parametrize("role", [ROLE_AGENT, ROLE_HUB])
async def test_role_decides_what_loads(tmp_path: Path, role: str) -> None:
    manager = await started(tmp_path, "hub_only", role=role)
    assert ("hub_only" in manager.integrations) is (role == ROLE_HUB)
    out = await collect(manager)
    assert ("hub_only.hub" in out["metrics"]) is (role == ROLE_HUB)


async def test_config_for_an_uninstalled_integration_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manager = await started(tmp_path, config={"no_such_thing": {"x": 1}})
    assert any("'no_such_thing'" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert "no_such_thing" not in manager.integrations
    await collect(manager)


async def test_missing_or_unreadable_custom_dir_is_harmless(tmp_path: Path) -> None:
    manager = await started(tmp_path, custom_dirs=[tmp_path / "nope", FIXTURES], entry_points=False)
    await collect(manager)


# -------------------------------------------------------------------- setup


async def test_raising_setup_fails_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    manager = await started(tmp_path, "setup_raises")
    assert state_of(manager, "setup_raises") == (STATE_SETUP_ERROR, "setup failed: RuntimeError: database is locked")
    assert any("setup_raises" in r.getMessage() and r.exc_info for r in caplog.records)
    await collect(manager)  # its roost_collect would raise AssertionError if called


async def test_not_available_is_not_an_error_and_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugins, "RETRY_BASE_SECONDS", 0.01)
    manager = await started(tmp_path, "not_available")
    integ = manager.integrations["not_available"]
    assert state_of(manager, "not_available") == (STATE_NOT_AVAILABLE, "no widget socket at /run/widget.sock")
    assert integ.retry_at is None
    await asyncio.sleep(0.03)
    await collect(manager)
    assert integ.state == STATE_NOT_AVAILABLE


async def test_not_ready_retries_with_backoff_then_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugins, "RETRY_BASE_SECONDS", 0.05)
    manager = make_manager(tmp_path, "not_ready", "dep_on_retry", config={"not_ready": {"fail_times": 2}})
    manager.load()
    integ = manager.integrations["not_ready"]
    dependent = manager.integrations["dep_on_retry"]

    await manager.setup_all()
    returned = time.time()
    attempts = integ.context.data["attempts"]
    assert len(attempts) == 1
    assert integ.state == STATE_SETUP_RETRY
    assert integ.reason == "widget service still starting — retry 1 in 0.05 s"
    # Set once the attempt came back from its thread: between the attempt and the return of setup_all.
    assert attempts[0] + 0.05 - 0.001 <= integ.retry_at <= returned + 0.05 + 0.001
    status = next(s for s in manager.statuses() if s["domain"] == "not_ready")
    assert status["retry_at"] == pytest.approx(integ.retry_at, abs=0.001)
    assert status["retries"] == 1
    # The dependent waits for it instead of failing.
    assert dependent.state == STATE_SETUP_RETRY
    assert dependent.reason == "waiting for integration 'not_ready' to set up"

    out = await collect(manager)  # before retry_at: not retried yet
    assert len(attempts) == 1
    assert "not_ready.ready" not in out["metrics"]

    await asyncio.sleep(max(0.0, integ.retry_at - time.time()) + 0.01)
    await collect(manager)
    assert len(attempts) == 2
    assert attempts[1] >= attempts[0] + 0.05
    assert integ.state == STATE_SETUP_RETRY
    assert integ.retry_at == pytest.approx(attempts[1] + 0.1, abs=0.02), "the delay doubles"
    assert "retry 2 in 0.1 s" in integ.reason

    await asyncio.sleep(max(0.0, integ.retry_at - time.time()) + 0.01)
    out = await collect(manager)
    assert len(attempts) == 3
    assert attempts[2] >= attempts[1] + 0.1
    assert integ.state == STATE_LOADED and integ.reason == "" and integ.retry_at is None
    assert "retry_at" not in next(s for s in manager.statuses() if s["domain"] == "not_ready")
    # Set up in the same cycle, so its first metrics arrive at once, and the dependent's too.
    assert out["metrics"]["not_ready.ready"] == 1
    assert dependent.state == STATE_LOADED
    assert out["metrics"]["dep_on_retry.ready"] == 1


async def test_retry_delay_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugins, "RETRY_BASE_SECONDS", 0.02)
    monkeypatch.setattr(plugins, "RETRY_MAX_SECONDS", 0.03)
    manager = await started(tmp_path, "not_ready", config={"not_ready": {"fail_times": 3}})
    returned = time.time()
    integ = manager.integrations["not_ready"]
    for expected in (0.02, 0.03, 0.03):
        # The kernel sets retry_at once the attempt (run in a thread) has come back: some time between the
        # integration's own timestamp and the return of the call that made the attempt, longer on a busy host.
        attempt = integ.context.data["attempts"][-1]
        assert integ.retry_at - returned - 0.001 <= expected <= integ.retry_at - attempt + 0.001, (expected, integ.retry_at, attempt, returned)
        await asyncio.sleep(max(0.0, integ.retry_at - time.time()) + 0.005)
        await collect(manager)
        returned = time.time()
    assert integ.state == STATE_LOADED


# ------------------------------------------------------------------ collect


async def test_raising_collect_is_logged_once_and_recovers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=KERNEL_LOGGER)
    manager = await started(tmp_path, "collect_flaky", config={"collect_flaky": {"fail_cycles": 3}})
    integ = manager.integrations["collect_flaky"]
    for _ in range(3):
        out = await collect(manager)
        assert integ.state == STATE_COLLECT_ERROR
        assert integ.reason == "collect failed: ConnectionError: widget API refused the connection"
        assert "collect_flaky" not in out["data"]
    errors = [r for r in caplog.records if "collect_flaky" in r.getMessage() and r.levelno >= logging.ERROR]
    assert len(errors) == 1, "a repeating failure is logged once at error level"

    out = await collect(manager)
    assert (integ.state, integ.reason) == (STATE_LOADED, "")
    assert out["data"]["collect_flaky"] == {"calls": 4}
    assert out["metrics"]["collect_flaky.ok"] == 1
    assert any("collect_flaky: collect recovered" in r.getMessage() for r in caplog.records)


async def test_hanging_sync_collect_times_out_and_is_not_called_again_while_running(tmp_path: Path) -> None:
    manager = await started(tmp_path, "hang_sync", config={"hang_sync": {"timeout": 0.2, "sleep": 0.6}})
    integ = manager.integrations["hang_sync"]
    data = integ.context.data

    begun = time.monotonic()
    out = await collect(manager)
    assert 0.15 < time.monotonic() - begun < 0.5
    assert integ.state == STATE_COLLECT_ERROR
    assert integ.reason == "collect timed out: roost_collect did not return within 0.2 s"
    assert "hang_sync.late" not in out["metrics"]
    assert data["calls"] == 1
    [thread] = [t for t in threading.enumerate() if t.name in data["threads"]]
    assert thread.daemon, "a hung hook must not keep the process from exiting"

    # Still running: the next cycle does not call it again and does not wait for it.
    begun = time.monotonic()
    await collect(manager)
    assert time.monotonic() - begun < 0.1
    assert data["calls"] == 1
    assert integ.reason == "collect timed out: the previous roost_collect call has not returned yet"

    await wait_for(lambda: data["finished"] == 1)
    await collect(manager)
    assert data["calls"] == 2, "called again once the abandoned call returned"


async def test_hanging_async_collect_is_cancelled(tmp_path: Path) -> None:
    manager = await started(tmp_path, "hang_async", config={"hang_async": {"timeout": 0.2}})
    integ = manager.integrations["hang_async"]
    data = integ.context.data

    begun = time.monotonic()
    await collect(manager)
    assert time.monotonic() - begun < 0.5
    assert integ.state == STATE_COLLECT_ERROR
    assert integ.reason == "collect timed out: roost_collect did not return within 0.2 s"
    await wait_for(lambda: data["cancelled"] == 1)
    await collect(manager)
    assert data["calls"] == 2  # the cancelled call is over, so it may be called again


async def test_async_collect_that_ignores_cancellation_does_not_hold_up_the_cycle(tmp_path: Path) -> None:
    manager = await started(tmp_path, "stubborn_async", config={"stubborn_async": {"timeout": 0.2, "linger": 0.4}})
    integ = manager.integrations["stubborn_async"]
    data = integ.context.data

    begun = time.monotonic()
    await collect(manager)
    assert time.monotonic() - begun < 0.4
    assert integ.state == STATE_COLLECT_ERROR
    await collect(manager)
    assert data["calls"] == 1
    assert integ.reason == "collect timed out: the previous roost_collect call has not returned yet"
    await wait_for(lambda: data["finished"] == 1)
    await collect(manager)
    assert data["calls"] == 2


@pytest.mark.parametrize(
    ("domain", "reason"),
    [
        ("bad_state", "collect failed: TypeError: state is not JSON-serialisable: Object of type datetime"),
        ("nan_state", "collect failed: TypeError: state is not JSON-serialisable: Out of range float values"),
        ("metrics_not_mapping", "collect failed: TypeError: metrics must be a mapping of name to number, got list"),
        ("not_a_mapping", "collect failed: TypeError: roost_collect must return a mapping or None, got list"),
    ],
)
async def test_bad_collect_output_fails_alone(tmp_path: Path, domain: str, reason: str) -> None:
    manager = await started(tmp_path, domain)
    out = await collect(manager)
    state, why = state_of(manager, domain)
    assert state == STATE_COLLECT_ERROR
    assert why.startswith(reason)
    assert domain not in out["data"]
    assert not any(name.startswith(f"{domain}.") for name in out["metrics"])


async def test_non_numeric_metrics_are_dropped_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manager = await started(tmp_path, "bad_metrics")
    for _ in range(3):
        out = await collect(manager)
        assert out["data"]["bad_metrics"] == {"fine": True}
        assert {k: v for k, v in out["metrics"].items() if k.startswith("bad_metrics.")} == {"bad_metrics.ok": 1.5}
    assert state_of(manager, "bad_metrics") == (STATE_LOADED, "")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "dropping metric" in r.getMessage()]
    assert sorted(w.split()[2] for w in warnings) == ["flag", "inf", "nan", "none", "text"], "once per metric"


async def test_state_is_a_detached_snapshot(tmp_path: Path) -> None:
    manager = await started(tmp_path)
    out = await collect(manager)
    out["data"]["good"]["ok"] = False
    assert (await collect(manager))["data"]["good"]["ok"] is True


async def test_cancelling_a_cycle_cancels_the_hooks(tmp_path: Path) -> None:
    manager = await started(tmp_path, "hang_async", config={"hang_async": {"timeout": 30}})
    data = manager.integrations["hang_async"].context.data
    cycle = asyncio.create_task(manager.collect_all())
    await wait_for(lambda: data["calls"] == 1)
    cycle.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cycle
    await wait_for(lambda: data["cancelled"] == 1)


# ----------------------------------------------------------- entry points


def make_distribution(site: Path, name: str, entry_points: dict[str, str]) -> None:
    """Write a minimal installed distribution (a .dist-info folder) that importlib.metadata finds on sys.path."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[roost]\n" + "".join(f"{ep} = {target}\n" for ep, target in entry_points.items())
    )


def make_package(site: Path, package: str, domain: str, init: str) -> None:
    folder = site / package
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(
        json.dumps({"domain": domain, "name": domain, "version": "2.0.0", "roles": ["agent", "hub"]})
    )
    (folder / "__init__.py").write_text(init)


EP_DEMO = '''
from roost.core import hookimpl


@hookimpl
def roost_collect(ctx):
    return {"state": {"from": "entry point"}, "metrics": {"packaged": 1}}


@hookimpl
def roost_capabilities(ctx):
    return ["test.packaged"]
'''


async def test_entry_point_integrations_load_and_broken_ones_fail_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    make_package(site, "roost_ep_demo", "ep_demo", EP_DEMO)
    make_distribution(site, "roost_ep_demo", {"ep_demo": "roost_ep_demo"})
    make_package(site, "roost_ep_broken", "ep_broken", "raise ImportError('needs libwidget.so')\n")
    make_distribution(site, "roost_ep_broken", {"ep_broken": "roost_ep_broken"})
    make_distribution(site, "roost_ep_ghost", {"ep_ghost": "roost_ep_nowhere"})
    (site / "roost_ep_single.py").write_text(EP_DEMO)
    make_distribution(site, "roost_ep_single", {"ep_single": "roost_ep_single"})
    make_package(site, "roost_ep_misnamed", "not_the_entry_point_name", EP_DEMO)
    make_distribution(site, "roost_ep_misnamed", {"ep_misnamed": "roost_ep_misnamed"})
    monkeypatch.syspath_prepend(str(site))

    manager = await started(
        tmp_path, "dep_child", "ep_demo", "ep_broken", "ep_ghost", "ep_single", "ep_misnamed", entry_points=True
    )

    demo = manager.integrations["ep_demo"]
    assert (demo.source, demo.state, demo.manifest.version) == (SOURCE_ENTRY_POINT, STATE_LOADED, "2.0.0")
    out = await collect(manager)
    assert out["data"]["ep_demo"] == {"from": "entry point"}
    assert out["metrics"]["ep_demo.packaged"] == 1
    assert "test.packaged" in manager.capabilities()

    assert state_of(manager, "ep_broken") == (STATE_SETUP_ERROR, "import failed: ImportError: needs libwidget.so")
    state, reason = state_of(manager, "ep_ghost")
    assert state == STATE_SETUP_ERROR and "module 'roost_ep_nowhere' is not installed" in reason
    state, reason = state_of(manager, "ep_single")
    assert state == STATE_SETUP_ERROR and "is a module, not a package folder" in reason
    state, reason = state_of(manager, "ep_misnamed")
    assert state == STATE_SETUP_ERROR and "does not match its folder 'ep_misnamed'" in reason
    for domain in ("ep_broken", "ep_ghost", "ep_single", "ep_misnamed"):
        assert manager.integrations[domain].source == SOURCE_ENTRY_POINT
    # Everything from the fixture folder loads as if the entry points were not there.
    assert manager.integrations["dep_child"].state == STATE_LOADED


async def test_entry_points_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    make_package(site, "roost_ep_demo", "ep_demo", EP_DEMO)
    make_distribution(site, "roost_ep_demo", {"ep_demo": "roost_ep_demo"})
    monkeypatch.syspath_prepend(str(site))
    manager = await started(tmp_path, "ep_demo", entry_points=False)
    assert "ep_demo" not in manager.integrations
    assert "roost_ep_demo" not in sys.modules


# --------------------------------------------------------------- overriding


def _custom_copy(root: Path, domain: str, marker: str) -> Path:
    folder = root / domain
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(
        json.dumps({"domain": domain, "name": f"{domain} ({marker})", "version": "9.9.9", "roles": ["agent", "hub"]})
    )
    (folder / "__init__.py").write_text(
        "from roost.core import hookimpl\n\n\n"
        "@hookimpl\n"
        "def roost_collect(ctx):\n"
        f"    return {{'state': {{'copy': {marker!r}}}}}\n"
    )
    return root


def _builtin_domains() -> list[str]:
    return sorted(p.name for p in plugins.builtin_dir().iterdir() if (p / "manifest.json").is_file())


@pytest.mark.parametrize("builtin", _builtin_domains() or ["linux_host"])
async def test_custom_integration_overrides_a_builtin_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, builtin: str
) -> None:
    assert (plugins.builtin_dir() / builtin / "manifest.json").is_file(), f"built-in {builtin} has no manifest.json"
    custom = _custom_copy(tmp_path / "custom", builtin, "mine")
    manager = await started(tmp_path, builtin, custom_dirs=[FIXTURES, custom])
    integ = manager.integrations[builtin]
    assert (integ.source, integ.manifest.version, integ.state) == (SOURCE_CUSTOM, "9.9.9", STATE_LOADED)
    assert integ.module.__name__ == f"{plugins.CUSTOM_PACKAGE}.{builtin}"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "overrides" in r.getMessage()]
    assert any(builtin in w and SOURCE_BUILTIN in w and str(custom) in w for w in warnings)
    out = await collect(manager)
    assert out["data"][builtin] == {"copy": "mine"}


async def test_later_custom_dir_overrides_an_earlier_one(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = _custom_copy(tmp_path / "first", "twin", "first")
    second = _custom_copy(tmp_path / "second", "twin", "second")
    manager = await started(tmp_path, "twin", custom_dirs=[FIXTURES, first, second])
    out = await collect(manager)
    assert out["data"]["twin"] == {"copy": "second"}
    assert any("twin" in r.getMessage() and "overrides" in r.getMessage() for r in caplog.records)

    # A later manager with one folder gets that folder's code, not a cached module.
    other = await started(tmp_path, "twin", custom_dirs=[FIXTURES, first])
    assert (await collect(other))["data"]["twin"] == {"copy": "first"}


# ------------------------------------------------------------------- status


async def test_status_shape(tmp_path: Path) -> None:
    manager = await started(tmp_path, "setup_raises")
    by_domain = {s["domain"]: s for s in manager.statuses()}
    assert set(by_domain["good"]) == {"domain", "name", "version", "source", "state", "reason", "since"}
    assert by_domain["good"]["source"] == SOURCE_CUSTOM
    assert by_domain["setup_raises"]["state"] == STATE_SETUP_ERROR
    assert manager.fields() == {
        "good.value": {"unit": "", "description": "Always 1."},
        "good.cycles": {"unit": "count", "description": "Collections so far."},
    }
