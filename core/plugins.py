"""The plugin kernel: find integrations, load them one by one, and call their hooks so none can take the rest down."""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import importlib.metadata
import importlib.util
import inspect
import json
import logging
import math
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy
import voluptuous as vol
from packaging.requirements import InvalidRequirement, Requirement

from . import hookspecs
from .const import (
    DEFAULT_COLLECT_TIMEOUT,
    ENTRY_POINT_GROUP,
    HOOK_NAMESPACE,
    STATE_COLLECT_ERROR,
    STATE_DISABLED,
    STATE_LOADED,
    STATE_NOT_AVAILABLE,
    STATE_SETUP_ERROR,
    STATE_SETUP_RETRY,
)
from .integration import (
    DOMAIN_RE,
    SOURCE_BUILTIN,
    SOURCE_CUSTOM,
    SOURCE_ENTRY_POINT,
    Integration,
    IntegrationContext,
    Manifest,
    ManifestError,
    NotAvailable,
    NotReady,
    humanize_invalid,
)

_LOGGER = logging.getLogger(__name__)

CUSTOM_PACKAGE = "roost_custom_integrations"
# Config keys every integration table accepts; the core strips them before the
# integration's own CONFIG_SCHEMA sees the table.
CONF_ENABLED = "enabled"
CONF_TIMEOUT = "timeout"
RETRY_BASE_SECONDS = 5.0
RETRY_MAX_SECONDS = 300.0


def _placeholder_manifest(domain: str) -> Manifest:
    return Manifest(domain, domain, "0", (), (), (), "", "")


def builtin_dir() -> Path:
    import roost.integrations

    return Path(roost.integrations.__file__).parent


def discover(custom_dirs: Iterable[Path] = (), *, entry_points: bool = True) -> dict[str, Integration]:
    """Read every manifest we can find, without importing any integration code.

    Later sources override earlier ones with a warning: a custom integration
    can replace a built-in of the same domain, as in Home Assistant.
    """
    found: dict[str, Integration] = {}

    def add(integ: Integration) -> None:
        if integ.domain in found and found[integ.domain].state != STATE_SETUP_ERROR:
            _LOGGER.warning(
                "integration %s from %s overrides the one from %s",
                integ.domain,
                integ.path,
                found[integ.domain].path,
            )
        found[integ.domain] = integ

    for folder in sorted(builtin_dir().iterdir()):
        if (folder / "manifest.json").is_file():
            add(_from_folder(folder, SOURCE_BUILTIN))

    for custom in custom_dirs:
        custom = Path(custom)
        if not custom.is_dir():
            continue
        for folder in sorted(custom.iterdir()):
            if folder.is_dir() and not folder.name.startswith((".", "_")):
                add(_from_folder(folder, SOURCE_CUSTOM))

    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            add(_from_entry_point(ep))
    return found


def _broken(domain: str, source: str, path: str, reason: str) -> Integration:
    _LOGGER.error("integration %s (%s) cannot be loaded: %s", domain, path, reason)
    integ = Integration(_placeholder_manifest(domain), source, path)
    integ.set_state(STATE_SETUP_ERROR, reason)
    return integ


def _from_folder(folder: Path, source: str) -> Integration:
    domain = folder.name
    if not DOMAIN_RE.match(domain):
        return _broken(domain, source, str(folder), "folder name is not a valid domain (lower_snake_case)")
    try:
        manifest = Manifest.from_path(folder / "manifest.json", expected_domain=domain)
    except ManifestError as err:
        return _broken(domain, source, str(folder), f"bad manifest.json: {err}")
    return Integration(manifest, source, str(folder))


def _from_entry_point(ep: importlib.metadata.EntryPoint) -> Integration:
    domain = ep.name
    try:
        spec = importlib.util.find_spec(ep.module)
        if spec is None or not spec.submodule_search_locations:
            raise ManifestError(f"{ep.module} is not a package with a manifest.json")
        folder = Path(next(iter(spec.submodule_search_locations)))
        manifest = Manifest.from_path(folder / "manifest.json", expected_domain=domain)
    except Exception as err:  # one bad distribution must not stop discovery
        return _broken(domain, SOURCE_ENTRY_POINT, ep.value, f"bad entry point: {err}")
    integ = Integration(manifest, SOURCE_ENTRY_POINT, ep.module)
    return integ


def _missing_requirements(requirements: Iterable[str]) -> list[str]:
    missing = []
    for text in requirements:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            missing.append(f"{text!r} (not a valid requirement)")
            continue
        try:
            version = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(text)
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            missing.append(f"{text} (found {version})")
    return missing


def _import_custom(domain: str, folder: Path) -> ModuleType:
    """Import a custom integration as roost_custom_integrations.<domain> so relative imports work."""
    if CUSTOM_PACKAGE not in sys.modules:
        parent = ModuleType(CUSTOM_PACKAGE)
        parent.__path__ = []  # type: ignore[attr-defined]
        sys.modules[CUSTOM_PACKAGE] = parent
    name = f"{CUSTOM_PACKAGE}.{domain}"
    init = folder / "__init__.py"
    if not init.is_file():
        raise ImportError(f"{folder} has no __init__.py")
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(folder)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _order(integrations: Mapping[str, Integration]) -> list[Integration]:
    """Dependencies before dependents; a cycle is reported, not looped on."""
    ordered: list[Integration] = []
    state: dict[str, str] = {}

    def visit(domain: str, chain: tuple[str, ...]) -> None:
        if state.get(domain) == "done" or domain not in integrations:
            return
        if state.get(domain) == "visiting":
            cycle = " -> ".join((*chain, domain))
            integrations[domain].set_state(STATE_SETUP_ERROR, f"dependency cycle: {cycle}")
            return
        state[domain] = "visiting"
        for dep in integrations[domain].manifest.dependencies:
            visit(dep, (*chain, domain))
        state[domain] = "done"
        ordered.append(integrations[domain])

    for domain in sorted(integrations):
        visit(domain, ())
    return ordered


def _clean_metrics(domain: str, raw: Any, log: logging.Logger) -> dict[str, float]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise TypeError(f"metrics must be a mapping of name to number, got {type(raw).__name__}")
    out: dict[str, float] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not name or len(name) > 200:
            log.debug("dropping metric with bad name %r", name)
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            log.debug("dropping metric %s with non-numeric value %r", name, value)
            continue
        out[f"{domain}.{name}"] = float(value)
    return out


class IntegrationManager:
    """Loads the integrations of one process role and calls their hooks, one at a time."""

    def __init__(
        self,
        *,
        role: str,
        config: Mapping[str, Mapping[str, Any]],
        data_dir: Path,
        custom_dirs: Iterable[Path] = (),
        entry_points: bool = True,
        only: Iterable[str] | None = None,
    ) -> None:
        self.role = role
        self.config = {k: dict(v) for k, v in config.items()}
        self.data_dir = Path(data_dir)
        self.custom_dirs = [Path(p) for p in custom_dirs]
        self.entry_points = entry_points
        self.only = set(only) if only is not None else None
        self.integrations: dict[str, Integration] = {}
        self.pm = pluggy.PluginManager(HOOK_NAMESPACE)
        self.pm.add_hookspecs(hookspecs)
        self._impls: dict[tuple[str, str], pluggy.HookImpl] = {}
        self._inflight: dict[tuple[str, str], concurrent.futures.Future[Any]] = {}
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    # ----------------------------------------------------------------- loading

    def load(self) -> None:
        """Discover, filter by role and config, import and register each integration."""
        discovered = discover(self.custom_dirs, entry_points=self.entry_points)
        for domain in self.config:
            if domain not in discovered:
                _LOGGER.warning("config has a table for integration %r but no such integration is installed", domain)
        for domain, integ in discovered.items():
            if self.only is not None and domain not in self.only:
                continue
            if integ.state == STATE_SETUP_ERROR:  # broken manifest
                self.integrations[domain] = integ
                continue
            if self.role not in integ.manifest.roles:
                continue
            self.integrations[domain] = integ
        for integ in _order(self.integrations):
            if integ.state == "discovered":
                self._load_one(integ)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(4, len(self.integrations) + 2), thread_name_prefix="roost-integration"
        )

    def _load_one(self, integ: Integration) -> None:
        domain = integ.domain
        table = dict(self.config.get(domain, {}))
        enabled = table.pop(CONF_ENABLED, True)
        timeout = table.pop(CONF_TIMEOUT, DEFAULT_COLLECT_TIMEOUT)
        if enabled is False:
            integ.set_state(STATE_DISABLED, "disabled in config (integrations.%s.enabled = false)" % domain)
            return
        if not isinstance(enabled, bool):
            integ.set_state(STATE_SETUP_ERROR, f"integrations.{domain}.enabled: expected true or false")
            return
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 600:
            integ.set_state(STATE_SETUP_ERROR, f"integrations.{domain}.timeout: expected seconds between 0 and 600")
            return
        integ.timeout = float(timeout)
        for dep in integ.manifest.dependencies:
            dep_integ = self.integrations.get(dep)
            if dep_integ is None or dep_integ.state not in ("discovered", STATE_LOADED):
                why = "is not installed" if dep_integ is None else f"is {dep_integ.state}"
                integ.set_state(STATE_SETUP_ERROR, f"depends on integration {dep!r}, which {why}")
                return
        missing = _missing_requirements(integ.manifest.requirements)
        if missing:
            integ.set_state(
                STATE_NOT_AVAILABLE,
                "missing requirement(s): %s — install with pip install %s"
                % (", ".join(missing), " ".join(repr(r) for r in integ.manifest.requirements)),
            )
            return
        try:
            if integ.source == SOURCE_BUILTIN:
                module = importlib.import_module(f"roost.integrations.{domain}")
            elif integ.source == SOURCE_CUSTOM:
                module = _import_custom(domain, Path(integ.path))
            else:
                module = importlib.import_module(integ.path)
        except Exception as err:  # an import error in one integration must not spread
            _LOGGER.exception("integration %s failed to import", domain)
            integ.set_state(STATE_SETUP_ERROR, f"import failed: {type(err).__name__}: {err}")
            return
        schema = getattr(module, "CONFIG_SCHEMA", None)
        try:
            config = schema(table) if schema is not None else table
        except vol.Invalid as err:
            reason = f"bad config in [integrations.{domain}]: {humanize_invalid(err)}"
            _LOGGER.error("integration %s: %s", domain, reason)
            integ.set_state(STATE_SETUP_ERROR, reason)
            return
        try:
            self.pm.register(module, name=domain)
            self.pm.check_pending()
        except pluggy.PluginValidationError as err:
            if self.pm.is_registered(module):
                self.pm.unregister(module)
            integ.set_state(
                STATE_SETUP_ERROR, f"invalid hook implementation: {err} (see roost.core.hookspecs)"
            )
            return
        for caller in self.pm.hook.__dict__.values():
            if isinstance(caller, pluggy.HookCaller):
                for impl in caller.get_hookimpls():
                    if impl.plugin_name == domain:
                        self._impls[(domain, caller.name)] = impl
        integ.module = module
        integ.context = IntegrationContext(
            domain=domain,
            role=self.role,
            config=dict(config) if isinstance(config, Mapping) else {},
            data_dir=self.data_dir,
            logger=logging.getLogger(f"roost.integration.{domain}"),
        )
        integ.state = "discovered"

    # ----------------------------------------------------------------- calling

    def has_hook(self, integ: Integration, hook: str) -> bool:
        return (integ.domain, hook) in self._impls

    async def call(self, integ: Integration, hook: str, *, timeout: float | None = None, thread: bool = False) -> Any:
        """Call one integration's implementation of a hook, awaiting what is awaitable.

        Raises what the hook raised, or TimeoutError. A plain-function hook run
        in a thread that times out keeps its thread; until it returns, later
        calls of the same hook raise TimeoutError at once.
        """
        impl = self._impls.get((integ.domain, hook))
        if impl is None:
            return None
        kwargs = {name: integ.context for name in impl.argnames}
        func = impl.function
        key = (integ.domain, hook)
        if inspect.iscoroutinefunction(func):
            coro = func(**kwargs)
            return await (asyncio.wait_for(coro, timeout) if timeout else coro)
        if not thread:
            result = func(**kwargs)
            if inspect.isawaitable(result):
                result = await (asyncio.wait_for(result, timeout) if timeout else result)
            return result
        pending = self._inflight.get(key)
        if pending is not None and not pending.done():
            raise TimeoutError(f"previous {hook} call is still running")
        assert self._executor is not None
        future = self._executor.submit(func, **kwargs)
        self._inflight[key] = future
        wrapped = asyncio.wrap_future(future)
        result = await asyncio.wait_for(asyncio.shield(wrapped), timeout) if timeout else await wrapped
        if inspect.isawaitable(result):
            result = await (asyncio.wait_for(result, timeout) if timeout else result)
        return result

    async def setup_all(self) -> None:
        """Run roost_setup for every loaded integration, in dependency order."""
        for integ in _order(self.integrations):
            if integ.state == "discovered" or integ.state == STATE_SETUP_RETRY:
                await self._setup_one(integ)

    async def _setup_one(self, integ: Integration) -> None:
        for dep in integ.manifest.dependencies:
            dep_integ = self.integrations.get(dep)
            if dep_integ is None or not dep_integ.active:
                integ.set_state(STATE_SETUP_ERROR, f"depends on integration {dep!r}, which did not set up")
                return
        try:
            await self.call(integ, "roost_setup", timeout=max(integ.timeout, 30.0), thread=True)
        except NotAvailable as err:
            integ.set_state(STATE_NOT_AVAILABLE, str(err) or "not available on this host")
            _LOGGER.info("integration %s not available: %s", integ.domain, integ.reason)
            return
        except NotReady as err:
            integ.retries += 1
            delay = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** (integ.retries - 1))
            integ.retry_at = time.time() + delay
            integ.set_state(STATE_SETUP_RETRY, f"{err or 'not ready'} — retrying in {delay:.0f} s")
            _LOGGER.warning("integration %s not ready (%s); retry %d in %.0f s", integ.domain, err, integ.retries, delay)
            return
        except (TimeoutError, asyncio.TimeoutError):
            integ.set_state(STATE_SETUP_ERROR, "setup did not finish in time")
            _LOGGER.error("integration %s: setup timed out", integ.domain)
            return
        except Exception as err:
            _LOGGER.exception("integration %s: setup failed", integ.domain)
            integ.set_state(STATE_SETUP_ERROR, f"setup failed: {type(err).__name__}: {err}")
            return
        integ.retry_at = None
        integ.set_state(STATE_LOADED)
        await self._describe(integ)
        _LOGGER.debug("integration %s loaded", integ.domain)

    async def _describe(self, integ: Integration) -> None:
        for hook, attr in (("roost_metric_fields", "fields"), ("roost_capabilities", "capabilities")):
            if not self.has_hook(integ, hook):
                continue
            try:
                value = await self.call(integ, hook, timeout=integ.timeout)
            except Exception:
                _LOGGER.exception("integration %s: %s failed", integ.domain, hook)
                continue
            if attr == "fields" and isinstance(value, Mapping):
                integ.fields = {str(k): {str(a): str(b) for a, b in v.items()} for k, v in value.items() if isinstance(v, Mapping)}
            elif attr == "capabilities" and isinstance(value, (list, tuple)):
                integ.capabilities = sorted({str(c) for c in value})

    async def retry_due(self) -> None:
        """Retry the setups whose backoff has passed."""
        now = time.time()
        for integ in _order(self.integrations):
            if integ.state == STATE_SETUP_RETRY and integ.retry_at is not None and integ.retry_at <= now:
                await self._setup_one(integ)

    async def collect_all(self) -> dict[str, Any]:
        """One collection cycle over every active integration, concurrently.

        Returns ``{"data": {domain: state}, "metrics": {name: value}}``; each
        integration's outcome is reflected in its state.
        """
        await self.retry_due()
        active = [i for i in self.integrations.values() if i.active and self.has_hook(i, "roost_collect")]
        results = await asyncio.gather(*(self._collect_one(i) for i in active))
        data: dict[str, Any] = {}
        metrics: dict[str, float] = {}
        for integ, result in zip(active, results):
            if result is None:
                continue
            state, integ_metrics = result
            if state is not None:
                data[integ.domain] = state
            metrics.update(integ_metrics)
        return {"data": data, "metrics": metrics}

    async def _collect_one(self, integ: Integration) -> tuple[Any, dict[str, float]] | None:
        assert integ.context is not None
        try:
            result = await self.call(integ, "roost_collect", timeout=integ.timeout, thread=True)
            if result is None:
                integ.set_state(STATE_LOADED)
                return None
            if not isinstance(result, Mapping):
                raise TypeError(f"roost_collect must return a mapping or None, got {type(result).__name__}")
            state = result.get("state")
            json.dumps(state)  # fail here, in the integration's name, not in the uplink
            metrics = _clean_metrics(integ.domain, result.get("metrics"), integ.context.logger)
        except (TimeoutError, asyncio.TimeoutError) as err:
            reason = str(err) if str(err) else f"collect timed out after {integ.timeout:g} s"
            self._collect_failed(integ, reason)
            return None
        except Exception as err:
            self._collect_failed(integ, f"collect failed: {type(err).__name__}: {err}", exc=err)
            return None
        if integ.state == STATE_COLLECT_ERROR:
            _LOGGER.info("integration %s: collect recovered", integ.domain)
        integ.set_state(STATE_LOADED)
        return state, metrics

    def _collect_failed(self, integ: Integration, reason: str, exc: BaseException | None = None) -> None:
        # Log a repeating failure once at error level, then at debug until it recovers.
        if integ.state != STATE_COLLECT_ERROR:
            _LOGGER.error("integration %s: %s", integ.domain, reason, exc_info=exc)
        else:
            _LOGGER.debug("integration %s: %s", integ.domain, reason)
        integ.set_state(STATE_COLLECT_ERROR, reason)

    async def shutdown_all(self) -> None:
        for integ in reversed(_order(self.integrations)):
            if not integ.active:
                continue
            try:
                await self.call(integ, "roost_shutdown", timeout=10.0, thread=True)
            except Exception:
                _LOGGER.exception("integration %s: shutdown failed", integ.domain)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ status

    def statuses(self) -> list[dict[str, Any]]:
        return [self.integrations[d].as_status() for d in sorted(self.integrations)]

    def fields(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for integ in self.integrations.values():
            for name, meta in integ.fields.items():
                out[f"{integ.domain}.{name}"] = meta
        return out

    def capabilities(self) -> list[str]:
        return sorted({c for i in self.integrations.values() if i.active for c in i.capabilities})
