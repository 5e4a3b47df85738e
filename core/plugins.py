"""The plugin kernel: find integrations, load them one by one, and call their hooks so none can take the rest down."""

from __future__ import annotations

import asyncio
import concurrent.futures
import difflib
import importlib
import importlib.metadata
import importlib.util
import inspect
import json
import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
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
    ROLE_AGENT,
    ROLE_HUB,
    STATE_COLLECT_ERROR,
    STATE_DISABLED,
    STATE_LOADED,
    STATE_NOT_AVAILABLE,
    STATE_SETUP_ERROR,
    STATE_SETUP_RETRY,
)
from .actions import ActionSpec
from .reads import Reads, default_reads
from .integration import (
    DOMAIN_RE,
    SOURCE_BUILTIN,
    SOURCE_CUSTOM,
    SOURCE_ENTRY_POINT,
    STATE_DISCOVERED,
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
# Read at call time, so tests (and a future config option) can change them.
RETRY_BASE_SECONDS = 5.0
RETRY_MAX_SECONDS = 300.0
MIN_SETUP_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 10.0
MAX_TIMEOUT = 600.0

# The hooks whose plain-function implementations may block, so run in a thread.
THREADED_HOOKS = frozenset({"roost_setup", "roost_collect", "roost_shutdown", "roost_hub_setup", "roost_hub_shutdown"})
HOOK_NAMES = frozenset(name for name in dir(hookspecs) if name.startswith(f"{HOOK_NAMESPACE}_"))
# Hooks the hub calls with a HubContext; in a two-role integration they live in hub.py.
HUB_HOOK_PREFIX = f"{HOOK_NAMESPACE}_hub_"
HUB_HOOKS = frozenset(name for name in HOOK_NAMES if name.startswith(HUB_HOOK_PREFIX))
AGENT_HOOKS = HOOK_NAMES - HUB_HOOKS
# The module of an integration's folder that holds its hub half; agents never import it.
HUB_MODULE = "hub"


def _placeholder_manifest(domain: str) -> Manifest:
    return Manifest(domain, domain, "0", (), (), (), "", "")


def builtin_dir() -> Path:
    import roost.integrations

    return Path(roost.integrations.__file__).parent


def discover(custom_dirs: Iterable[Path] = (), *, entry_points: bool = True) -> dict[str, Integration]:
    """Read every manifest we can find, without importing any integration code.

    Later sources override earlier ones with a warning (built-in, then custom
    dirs in order, then entry points): a custom integration can replace a
    built-in of the same domain, as in Home Assistant.
    """
    found: dict[str, Integration] = {}

    def add(integ: Integration) -> None:
        previous = found.get(integ.domain)
        if previous is not None:
            _LOGGER.warning(
                "integration %s from %s (%s) overrides the one from %s (%s)",
                integ.domain,
                integ.path,
                integ.source,
                previous.path,
                previous.source,
            )
        found[integ.domain] = integ

    for folder in _subfolders(builtin_dir()):
        if (folder / "manifest.json").is_file():
            add(_from_folder(folder, SOURCE_BUILTIN))

    for custom in custom_dirs:
        custom = Path(custom)
        if not custom.is_dir():
            _LOGGER.debug("custom integrations folder %s does not exist", custom)
            continue
        for folder in _subfolders(custom):
            add(_from_folder(folder, SOURCE_CUSTOM))

    if entry_points:
        try:
            eps = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
        except Exception:  # a broken installed distribution must not stop the process
            _LOGGER.exception("cannot list entry points in group %r", ENTRY_POINT_GROUP)
            eps = []
        for ep in eps:
            add(_from_entry_point(ep))
    return found


def _subfolders(parent: Path) -> list[Path]:
    try:
        children = sorted(parent.iterdir())
    except OSError as err:
        _LOGGER.error("cannot list integrations in %s: %s", parent, err.strerror or err)
        return []
    return [c for c in children if c.is_dir() and not c.name.startswith((".", "_"))]


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
    if not DOMAIN_RE.match(domain):
        return _broken(domain, SOURCE_ENTRY_POINT, ep.value, "entry point name is not a valid domain (lower_snake_case)")
    try:
        # find_spec imports parent packages of a dotted name, so it sits inside the try.
        spec = importlib.util.find_spec(ep.module)
        if spec is None:
            raise ManifestError(f"module {ep.module!r} is not installed")
        if not spec.submodule_search_locations:
            raise ManifestError(f"{ep.module} is a module, not a package folder with a manifest.json")
        folder = Path(next(iter(spec.submodule_search_locations)))
        manifest = Manifest.from_path(folder / "manifest.json", expected_domain=domain)
    except Exception as err:  # one bad distribution must not stop discovery
        return _broken(domain, SOURCE_ENTRY_POINT, ep.value, f"bad entry point {ep.value!r}: {err}")
    return Integration(manifest, SOURCE_ENTRY_POINT, ep.module)


def _missing_requirements(requirements: Iterable[str]) -> list[str]:
    missing = []
    for text in requirements:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            missing.append(f"{text!r} (not a valid requirement)")
            continue
        if req.marker is not None and not req.marker.evaluate():
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
    # A same-named integration imported earlier (another manager, another
    # folder) must not lend this one its submodules.
    for stale in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[stale]
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
            integ = integrations[domain]
            if integ.state == STATE_DISCOVERED:
                cycle = " -> ".join((*chain[chain.index(domain) :], domain))
                integ.set_state(STATE_SETUP_ERROR, f"dependency cycle: {cycle}")
            return
        state[domain] = "visiting"
        for dep in integrations[domain].manifest.dependencies:
            visit(dep, (*chain, domain))
        state[domain] = "done"
        ordered.append(integrations[domain])

    for domain in sorted(integrations):
        visit(domain, ())
    return ordered


def _required_args(func: Callable[..., Any]) -> list[str]:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return []
    return [
        p.name
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is p.empty
    ]


def _format_seconds(seconds: float) -> str:
    return f"{seconds:.3g} s"


class _Dropped:
    """Remembers which problems of one integration were already logged at warning level."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def first(self, key: str) -> bool:
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def _clean_metrics(domain: str, raw: Any, log: logging.Logger, once: _Dropped | None = None) -> dict[str, float]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise TypeError(f"metrics must be a mapping of name to number, got {type(raw).__name__}")
    out: dict[str, float] = {}
    for name, value in raw.items():
        # The limit counts the domain prefix: one name past the protocol's 200 characters would get the whole report refused.
        if not isinstance(name, str) or not name or len(domain) + 1 + len(name) > 200:
            why = f"dropping metric with bad name {name!r} (a non-empty string of at most {199 - len(domain)} characters)"
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            why = f"dropping metric {name} with value {value!r}: metrics must be finite numbers"
        else:
            out[f"{domain}.{name}"] = float(value)
            continue
        # A value that is wrong once is usually wrong every cycle: say it once.
        if once is None or once.first(f"metric:{name!r}"):
            log.warning(why)
        else:
            log.debug(why)
    return out


def _snapshot_state(state: Any) -> Any:
    """A JSON round trip: rejects what the uplink could not send and detaches it from the integration."""
    try:
        return json.loads(json.dumps(state, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise TypeError(f"state is not JSON-serialisable: {err}") from None


def _run_in_thread(func: Callable[..., Any], kwargs: dict[str, Any], name: str) -> concurrent.futures.Future[Any]:
    """Run ``func`` in a daemon thread: a hook that never returns must not keep the process from exiting."""
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def runner() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = func(**kwargs)
        except Exception as err:
            future.set_exception(err)
        except BaseException as err:  # SystemExit from a plugin ends only its call
            future.set_exception(RuntimeError(f"{type(err).__name__}: {err}"))
        else:
            future.set_result(result)

    threading.Thread(target=runner, name=name, daemon=True).start()
    return future


def _table_problems(domain: str, schema: Any, err: vol.Invalid, table: Mapping[str, Any]) -> list[str]:
    """One line per bad value in an integration's table: the full key, what is allowed, what was given."""
    keys = getattr(schema, "schema", None)
    allowed = sorted({CONF_ENABLED, CONF_TIMEOUT, *(str(k) for k in keys)} if isinstance(keys, dict) else {CONF_ENABLED, CONF_TIMEOUT})
    lines = []
    for one in err.errors if isinstance(err, vol.MultipleInvalid) else [err]:
        key = ".".join(str(p) for p in one.path)
        value: Any = table
        for part in one.path:
            value = value.get(part) if isinstance(value, Mapping) else None
        msg = one.msg
        if msg.startswith("extra keys not allowed") and len(one.path) == 1:
            hint = difflib.get_close_matches(key, allowed, n=1)
            msg = "unknown key" + (f"; did you mean {hint[0]}?" if hint else "") + f" (allowed: {', '.join(allowed)})"
            value = None
        got = f" (got {value!r})" if value is not None and not isinstance(value, Mapping) else ""
        lines.append(f"integrations.{domain}" + (f".{key}" if key else "") + f": {msg}{got}")
    return lines


def config_problems(managers: Iterable[IntegrationManager]) -> list[str]:
    """What is wrong in the [integrations.*] tables of one process, after each manager's load().

    A table names an unknown integration only when no manager of the process
    knows it: the hub runs two roles (its own and its agent's), each loading
    other integrations from other folders. Empty when all is well.
    """
    managers = list(managers)
    known = sorted(set().union(*(m.known_domains for m in managers)))
    problems: list[str] = []
    for domain in sorted({str(d) for m in managers for d in m.config}):
        if domain not in known:
            hint = difflib.get_close_matches(domain, known, n=1)
            problems.append(
                f"integrations.{domain}: no such integration"
                + (f"; did you mean {hint[0]}?" if hint else "")
                + f" (installed: {', '.join(known)})"
            )
    for manager in managers:
        problems.extend(p for p in manager.config_problems if p not in problems)
    return problems


class IntegrationManager:
    """Loads the integrations of one process role and calls their hooks, one at a time."""

    def __init__(
        self,
        *,
        role: str,
        config: Mapping[str, Any],
        data_dir: Path,
        custom_dirs: Iterable[Path] = (),
        entry_points: bool = True,
        only: Iterable[str] | None = None,
        context_factory: Callable[[IntegrationContext], Any] | None = None,
    ) -> None:
        self.role = role
        # What the hooks get: the hub wraps the plain context in a HubContext.
        self.context_factory = context_factory
        # Kept raw: a malformed table is that integration's error, found when it loads.
        self.config: dict[str, Any] = dict(config)
        self.data_dir = Path(data_dir)
        self.custom_dirs = [Path(p) for p in custom_dirs]
        self.entry_points = entry_points
        self.only = set(only) if only is not None else None
        self.integrations: dict[str, Integration] = {}
        self.pm = pluggy.PluginManager(HOOK_NAMESPACE)
        self.pm.add_hookspecs(hookspecs)
        self._impls: dict[tuple[str, str], pluggy.HookImpl] = {}
        # The call of a hook that timed out but still runs; the hook is not called again until it ends.
        self._inflight: dict[tuple[str, str], concurrent.futures.Future[Any] | asyncio.Future[Any]] = {}
        self._other_role: set[str] = set()
        self._warned: dict[str, _Dropped] = {}
        # Filled by load(): every integration this manager found (any role), and
        # what is wrong in the config tables of those it loads (see config_problems).
        self.known_domains: set[str] = set()
        self.config_problems: list[str] = []
        self._loaded = False
        self._shut_down = False

    # ----------------------------------------------------------------- loading

    def load(self) -> None:
        """Discover, filter by role and config, import and register each integration.

        Never raises because of an integration: each one that cannot load gets
        a state and a reason instead.
        """
        if self._loaded:
            return
        self._loaded = True
        discovered = discover(self.custom_dirs, entry_points=self.entry_points)
        self.known_domains = set(discovered)
        for domain in self.config:
            if domain not in discovered:
                _LOGGER.warning("config has a table for integration %r but no such integration is installed", domain)
        wanted = self._with_dependencies(self.only, discovered) if self.only is not None else None
        for domain, integ in discovered.items():
            if wanted is not None and domain not in wanted:
                continue
            if integ.state == STATE_SETUP_ERROR:  # broken manifest: shown whatever the role
                self.integrations[domain] = integ
                continue
            if self.role not in integ.manifest.roles:
                self._other_role.add(domain)
                continue
            self.integrations[domain] = integ
        for integ in _order(self.integrations):
            if integ.state == STATE_DISCOVERED:
                self._load_one(integ)

    @staticmethod
    def _with_dependencies(only: set[str], discovered: Mapping[str, Integration]) -> set[str]:
        wanted: set[str] = set()
        todo = list(only)
        while todo:
            domain = todo.pop()
            if domain in wanted:
                continue
            wanted.add(domain)
            if domain in discovered:
                todo.extend(discovered[domain].manifest.dependencies)
        return wanted

    def _load_one(self, integ: Integration) -> None:
        domain = integ.domain
        raw_table = self.config.get(domain, {})
        if raw_table is None:
            raw_table = {}
        if not isinstance(raw_table, Mapping):
            self._fail_load(integ, f"integrations.{domain} must be a table, got {type(raw_table).__name__}")
            return
        table = dict(raw_table)
        enabled = table.pop(CONF_ENABLED, True)
        timeout = table.pop(CONF_TIMEOUT, DEFAULT_COLLECT_TIMEOUT)
        if enabled is False:
            integ.set_state(STATE_DISABLED, f"disabled in config (integrations.{domain}.enabled = false)")
            _LOGGER.info("integration %s is disabled in config", domain)
            return
        if not isinstance(enabled, bool):
            self.config_problems.append(f"integrations.{domain}.enabled: expected true or false (got {enabled!r})")
            self._fail_load(integ, f"integrations.{domain}.enabled: expected true or false, got {enabled!r}")
            return
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= MAX_TIMEOUT:
            self.config_problems.append(
                f"integrations.{domain}.timeout: expected seconds between 0 and {MAX_TIMEOUT:g} (got {timeout!r})"
            )
            self._fail_load(
                integ, f"integrations.{domain}.timeout: expected seconds between 0 and {MAX_TIMEOUT:g}, got {timeout!r}"
            )
            return
        integ.timeout = float(timeout)
        for dep in integ.manifest.dependencies:
            dep_integ = self.integrations.get(dep)
            if dep_integ is None or dep_integ.state != STATE_DISCOVERED:
                if dep_integ is not None:
                    why = f"is {dep_integ.state}" + (f" ({dep_integ.reason})" if dep_integ.reason else "")
                elif dep in self._other_role:
                    why = f"does not run in the {self.role} role"
                else:
                    why = "is not installed"
                self._fail_load(integ, f"depends on integration {dep!r}, which {why}")
                return
        # A two-role integration's requirements are its collector's (the docker SDK, proxmoxer); its hub half
        # only shapes the state agents report, so the hub loads it without them.
        hub_half_only = self.role == ROLE_HUB and ROLE_AGENT in integ.manifest.roles
        missing = [] if hub_half_only else _missing_requirements(integ.manifest.requirements)
        if missing:
            integ.set_state(
                STATE_NOT_AVAILABLE,
                "missing requirement(s): %s — install with: pip install %s"
                % (", ".join(missing), " ".join(repr(r) for r in integ.manifest.requirements)),
            )
            _LOGGER.warning("integration %s not available: %s", domain, integ.reason)
            return
        try:
            if integ.source == SOURCE_BUILTIN:
                module = importlib.import_module(f"roost.integrations.{domain}")
            elif integ.source == SOURCE_CUSTOM:
                module = _import_custom(domain, Path(integ.path))
            else:
                module = importlib.import_module(integ.path)
        except (Exception, SystemExit) as err:  # an import error in one integration must not spread
            _LOGGER.exception("integration %s failed to import", domain)
            integ.set_state(STATE_SETUP_ERROR, f"import failed: {type(err).__name__}: {err}")
            return
        config = self._validate_config(integ, module, table)
        if config is None:
            return
        hooks_module = module
        if self.role == ROLE_HUB:
            try:
                hooks_module = self._hub_half(module)
            except (Exception, SystemExit) as err:
                _LOGGER.exception("integration %s: its hub half failed to import", domain)
                integ.set_state(STATE_SETUP_ERROR, f"import of {HUB_MODULE}.py failed: {type(err).__name__}: {err}")
                return
        problem = self._register(integ, hooks_module, in_hub_half=hooks_module is not module)
        if problem:
            self._fail_load(integ, f"invalid hook implementation: {problem} (see roost.core.hookspecs)")
            return
        reads = getattr(module, "READS", None)
        if reads is None:
            reads = default_reads(domain)
            if self.has_hook(integ, "roost_collect"):
                _LOGGER.warning(
                    "integration %s declares no READS; nothing it collects is sent until capability %s is granted "
                    "(declare READS = roost.core.reads.Reads(...) next to its collector)",
                    domain,
                    f"{domain}.read",
                )
        elif not isinstance(reads, Reads) or reads.problems():
            why = "; ".join(reads.problems()) if isinstance(reads, Reads) else f"READS must be a roost.core.reads.Reads, got {type(reads).__name__}"
            self._fail_load(integ, why)
            return
        integ.reads = reads
        integ.module = hooks_module
        context = IntegrationContext(
            domain=domain,
            role=self.role,
            config=config,
            data_dir=self.data_dir,
            logger=logging.getLogger(f"roost.integration.{domain}"),
        )
        if self.context_factory is not None:
            try:
                context = self.context_factory(context)
            except Exception as err:  # a kernel bug, kept to this integration
                _LOGGER.exception("integration %s: cannot build its context", domain)
                integ.set_state(STATE_SETUP_ERROR, f"cannot build its context: {type(err).__name__}: {err}")
                return
        integ.context = context
        _LOGGER.debug("integration %s imported from %s", domain, integ.path)

    @staticmethod
    def _hub_half(module: ModuleType) -> ModuleType:
        """The module whose hooks the hub registers: the folder's hub.py when it has one, else the package itself."""
        name = f"{module.__name__}.{HUB_MODULE}"
        if not getattr(module, "__path__", None):
            return module  # a single-module integration has no halves
        # Asked of the import system, not of the folder: in the one-file executable the
        # modules live in its archive and no hub.py is on disk (only data files are).
        if importlib.util.find_spec(name) is None:
            return module
        return importlib.import_module(name)

    def _fail_load(self, integ: Integration, reason: str) -> None:
        _LOGGER.error("integration %s: %s", integ.domain, reason)
        integ.set_state(STATE_SETUP_ERROR, reason)

    def _validate_config(self, integ: Integration, module: ModuleType, table: dict[str, Any]) -> dict[str, Any] | None:
        domain = integ.domain
        schema = getattr(module, "CONFIG_SCHEMA", None)
        if schema is None:
            if table:
                _LOGGER.warning(
                    "integration %s has no CONFIG_SCHEMA; its config keys %s are passed through unchecked",
                    domain,
                    ", ".join(sorted(map(str, table))),
                )
            return table
        if not callable(schema):
            self._fail_load(integ, f"CONFIG_SCHEMA must be a voluptuous Schema, got {type(schema).__name__}")
            return None
        try:
            config = schema(table)
        except vol.Invalid as err:
            self.config_problems.extend(_table_problems(domain, schema, err, table))
            self._fail_load(integ, f"bad config in [integrations.{domain}]: {humanize_invalid(err, table)}")
            return None
        except Exception as err:  # a validator that crashes is the integration's bug, not the core's
            _LOGGER.exception("integration %s: CONFIG_SCHEMA raised", domain)
            integ.set_state(STATE_SETUP_ERROR, f"CONFIG_SCHEMA raised {type(err).__name__}: {err}")
            return None
        if not isinstance(config, Mapping):
            self._fail_load(integ, f"CONFIG_SCHEMA must return a mapping, got {type(config).__name__}")
            return None
        return dict(config)

    def _register(self, integ: Integration, module: ModuleType, *, in_hub_half: bool = False) -> str:
        """Check the module's hook implementations against the hookspecs and register it; return a problem or ''."""
        domain = integ.domain
        problems = []
        two_roles = ROLE_AGENT in integ.manifest.roles and ROLE_HUB in integ.manifest.roles
        for attr in sorted(dir(module)):
            if not attr.startswith(f"{HOOK_NAMESPACE}_"):
                continue
            func = getattr(module, attr, None)
            opts = self.pm.parse_hookimpl_opts(module, attr)
            if opts is None:
                if attr in HOOK_NAMES and callable(func):
                    _LOGGER.warning(
                        "integration %s defines %s without @hookimpl, so Roost never calls it; "
                        "decorate it with roost.core.hookimpl",
                        domain,
                        attr,
                    )
                continue
            hook_name = opts.get("specname") or attr
            if hook_name not in HOOK_NAMES:
                close = difflib.get_close_matches(hook_name, HOOK_NAMES, n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                problems.append(f"unknown hook {hook_name!r}{hint}")
                continue
            if opts.get("hookwrapper") or opts.get("wrapper"):
                problems.append(f"{hook_name}: hook wrappers are not supported")
                continue
            if hook_name in HUB_HOOKS and self.role == ROLE_AGENT:
                problems.append(
                    f"{hook_name} is a hub hook in the module agents load; move it to {HUB_MODULE}.py "
                    "beside __init__.py, which agents never import"
                )
                continue
            if hook_name in AGENT_HOOKS and in_hub_half:
                problems.append(f"{hook_name} is an agent hook in {HUB_MODULE}.py; agent hooks belong in __init__.py")
                continue
            if hook_name in HUB_HOOKS and two_roles and not in_hub_half:
                problems.append(f"{hook_name}: a two-role integration keeps its hub hooks in {HUB_MODULE}.py")
                continue
            allowed = _required_args(getattr(hookspecs, hook_name))
            extra = [a for a in _required_args(func) if a not in allowed]
            if extra:
                problems.append(
                    f"{hook_name}: unknown argument(s) {', '.join(map(repr, extra))}; "
                    f"the hook offers {', '.join(allowed) or 'no arguments'}"
                )
        if problems:
            return "; ".join(problems)
        try:
            self.pm.register(module, name=domain)
            self.pm.check_pending()
        except (pluggy.PluginValidationError, ValueError) as err:
            if self.pm.is_registered(module):
                self.pm.unregister(module)
            return str(err).replace("\n", " ")
        for caller in self.pm.get_hookcallers(module) or []:
            for impl in caller.get_hookimpls():
                if impl.plugin is module:
                    self._impls[(domain, caller.name)] = impl
        return ""

    # ----------------------------------------------------------------- calling

    def has_hook(self, integ: Integration, hook: str) -> bool:
        return (integ.domain, hook) in self._impls

    async def call(
        self,
        integ: Integration,
        hook: str,
        *,
        timeout: float | None = None,
        thread: bool = False,
        args: Mapping[str, Any] | None = None,
    ) -> Any:
        """Call one integration's implementation of a hook, awaiting what is awaitable.

        Returns ``None`` when the integration does not implement the hook.
        Raises what the hook raised, or ``TimeoutError``. A call that times out
        is abandoned, not waited for: an ``async`` hook is cancelled, a plain
        function run in a thread (``thread=True``) keeps its thread. Until an
        abandoned call has really ended, later calls of the same hook of the
        same integration raise ``TimeoutError`` at once instead of piling up.
        ``args`` are the hook's arguments other than ``ctx``.
        """
        impl = self._impls.get((integ.domain, hook))
        if impl is None:
            return None
        key = (integ.domain, hook)
        pending = self._inflight.get(key)
        if pending is not None:
            if not pending.done():
                raise TimeoutError(f"the previous {hook} call has not returned yet")
            del self._inflight[key]
        kwargs = self._kwargs(integ, impl, args)
        func = impl.function
        deadline = None if timeout is None else time.monotonic() + timeout
        if inspect.iscoroutinefunction(func):
            return await self._await(key, func(**kwargs), deadline)
        if thread:
            future = _run_in_thread(func, kwargs, f"roost-{integ.domain}-{hook}")
            wrapped = asyncio.wrap_future(future)
            try:
                done, _ = await asyncio.wait({wrapped}, timeout=timeout)
            except asyncio.CancelledError:
                wrapped.cancel()
                raise
            if not done:
                self._inflight[key] = future
                wrapped.cancel()  # the thread runs on; nobody waits for it
                raise TimeoutError(f"{hook} did not return within {_format_seconds(timeout or 0)}")
            result = wrapped.result()
        else:
            result = func(**kwargs)
        if inspect.isawaitable(result):
            result = await self._await(key, result, deadline)
        return result

    @staticmethod
    def _kwargs(integ: Integration, impl: pluggy.HookImpl, args: Mapping[str, Any] | None) -> dict[str, Any]:
        args = args or {}
        return {name: args[name] if name in args else integ.context for name in impl.argnames}

    def call_now(self, integ: Integration, hook: str, *, args: Mapping[str, Any] | None = None) -> Any:
        """Call a declaration hook that must be a plain function, on this thread (the hub's pages and routes,
        asked for while the web application is built). Returns ``None`` when not implemented; raises what
        the hook raised, or ``TypeError`` for an ``async`` implementation."""
        impl = self._impls.get((integ.domain, hook))
        if impl is None:
            return None
        if inspect.iscoroutinefunction(impl.function):
            raise TypeError(f"{hook} must be a plain function (it is called while the hub builds its routes), not async def")
        result = impl.function(**self._kwargs(integ, impl, args))
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            raise TypeError(f"{hook} returned an awaitable; it must return its declarations directly")
        return result

    async def _await(self, key: tuple[str, str], awaitable: Any, deadline: float | None) -> Any:
        task = asyncio.ensure_future(awaitable)
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not done:
            # Cancel, but do not wait: a hook that swallows the cancellation
            # would otherwise hang the caller. _inflight keeps it from being
            # called again while it lingers.
            task.cancel()
            self._inflight[key] = task
            raise TimeoutError(f"{key[1]} did not return within {_format_seconds(timeout or 0)}")
        if task.cancelled():
            raise RuntimeError(f"{key[1]} was cancelled from inside the integration")
        return task.result()

    async def setup_all(self) -> None:
        """Run roost_setup for every loaded integration, in dependency order."""
        for integ in _order(self.integrations):
            if integ.state == STATE_DISCOVERED:
                await self._setup_one(integ)

    async def _setup_one(self, integ: Integration) -> None:
        for dep in integ.manifest.dependencies:
            dep_integ = self.integrations.get(dep)
            if dep_integ is not None and dep_integ.state == STATE_SETUP_RETRY and dep_integ.retry_at is not None:
                # Wait for the dependency rather than giving up on it; retry_due
                # visits dependencies first, so this one goes right after it.
                integ.retry_at = dep_integ.retry_at
                integ.set_state(STATE_SETUP_RETRY, f"waiting for integration {dep!r} to set up")
                return
            if dep_integ is None or not dep_integ.active:
                state = "missing" if dep_integ is None else dep_integ.state
                self._fail_setup(integ, f"depends on integration {dep!r}, which did not set up ({state})")
                return
        try:
            await self.call(integ, "roost_setup", timeout=max(integ.timeout, MIN_SETUP_TIMEOUT), thread=True)
            if self.role == ROLE_HUB:
                await self.call(integ, "roost_hub_setup", timeout=max(integ.timeout, MIN_SETUP_TIMEOUT), thread=True)
        except NotAvailable as err:
            integ.retry_at = None
            integ.set_state(STATE_NOT_AVAILABLE, str(err) or "not available on this host")
            _LOGGER.info("integration %s not available: %s", integ.domain, integ.reason)
            return
        except NotReady as err:
            integ.retries += 1
            delay = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** (integ.retries - 1))
            integ.retry_at = time.time() + delay
            integ.set_state(STATE_SETUP_RETRY, f"{err or 'not ready'} — retry {integ.retries} in {_format_seconds(delay)}")
            # Warn on the first failure only; a long wait for a service is not news every time.
            log = _LOGGER.warning if integ.retries == 1 else _LOGGER.debug
            log("integration %s not ready (%s); retry %d in %s", integ.domain, err, integ.retries, _format_seconds(delay))
            return
        except TimeoutError as err:
            self._fail_setup(integ, f"setup timed out: {err}")
            return
        except Exception as err:
            _LOGGER.exception("integration %s: setup failed", integ.domain)
            integ.retry_at = None
            integ.set_state(STATE_SETUP_ERROR, f"setup failed: {type(err).__name__}: {err}")
            return
        integ.retry_at = None
        integ.set_state(STATE_LOADED)
        await self._describe(integ)
        if self.role == ROLE_HUB:
            await self._describe_hub(integ)
        _LOGGER.debug("integration %s set up", integ.domain)

    def _fail_setup(self, integ: Integration, reason: str) -> None:
        integ.retry_at = None
        self._fail_load(integ, reason)

    async def _describe(self, integ: Integration) -> None:
        """Ask a freshly set-up integration for its metric fields and capabilities."""
        fields = await self._call_logged(integ, "roost_metric_fields")
        if isinstance(fields, Mapping):
            integ.fields = {
                str(name): {str(k): str(v) for k, v in meta.items()}
                for name, meta in fields.items()
                if isinstance(meta, Mapping)
            }
        elif fields is not None:
            _LOGGER.warning(
                "integration %s: roost_metric_fields must return a mapping, got %s", integ.domain, type(fields).__name__
            )
        capabilities = await self._call_logged(integ, "roost_capabilities")
        if isinstance(capabilities, (list, tuple, set, frozenset)):
            integ.capabilities = sorted({str(c) for c in capabilities})
        elif capabilities is not None:
            _LOGGER.warning(
                "integration %s: roost_capabilities must return a list of names, got %s",
                integ.domain,
                type(capabilities).__name__,
            )

        specs = await self._call_logged(integ, "roost_actions")
        integ.actions = {}
        if specs is not None and not isinstance(specs, (list, tuple)):
            _LOGGER.warning("integration %s: roost_actions must return a list of ActionSpec, got %s", integ.domain, type(specs).__name__)
            specs = []
        taken = {name for other in self.integrations.values() if other is not integ for name in getattr(other, "actions", {})}
        for spec in specs or []:
            if not isinstance(spec, ActionSpec):
                _LOGGER.warning("integration %s: roost_actions returned %r, not an ActionSpec; left out", integ.domain, spec)
            elif spec.name in taken or spec.name in integ.actions:
                _LOGGER.warning("integration %s: action %s is already declared; left out", integ.domain, spec.name)
            else:
                integ.actions[spec.name] = spec

    async def _describe_hub(self, integ: Integration) -> None:
        """Ask a freshly set-up hub half for its headline figures and the extension points it provides."""
        found = {
            "headline_figures": await self._call_logged(integ, "roost_hub_headline_figures"),
            "notification_receivers": await self._call_logged(integ, "roost_hub_notification_receivers"),
            "alert_rule_kinds": await self._call_logged(integ, "roost_hub_alert_rule_kinds"),
            "automation_triggers": await self._call_logged(integ, "roost_hub_automation_triggers"),
            "automation_actions": await self._call_logged(integ, "roost_hub_automation_actions"),
        }
        integ.hub_declarations = {}
        for kind, declared in found.items():
            if declared is not None and not isinstance(declared, (list, tuple)):
                _LOGGER.warning("integration %s: roost_hub_%s must return a list, got %s", integ.domain, kind, type(declared).__name__)
                declared = None
            integ.hub_declarations[kind] = list(declared or [])

    async def _call_logged(self, integ: Integration, hook: str) -> Any:
        try:
            return await self.call(integ, hook, timeout=integ.timeout)
        except Exception:
            _LOGGER.exception("integration %s: %s failed", integ.domain, hook)
            return None

    async def retry_due(self) -> None:
        """Retry the setups whose backoff has passed."""
        now = time.time()
        for integ in _order(self.integrations):
            if integ.state == STATE_SETUP_RETRY and integ.retry_at is not None and integ.retry_at <= now:
                await self._setup_one(integ)

    async def collect_all(self, permitted: Collection[str] | None = None) -> dict[str, Any]:
        """One collection cycle over every active integration, concurrently.

        Returns ``{"data": {domain: state}, "metrics": {name: value}}``; each
        integration's outcome is reflected in its state. With ``permitted``
        (the node's effective capabilities), only the parts of each report
        whose read capability is in it are kept (see roost.core.reads), the
        others are named in ``"withheld": {domain: {part: capability}}``, and
        an integration none of whose parts is permitted is not called at all.
        """
        await self.retry_due()
        active = [i for i in self.integrations.values() if i.active and self.has_hook(i, "roost_collect")]
        withheld: dict[str, dict[str, str]] = {}
        if permitted is not None:
            for integ in active:
                # A part whose capability the integration does not offer on this host (services without
                # systemd) is not there to grant: it is left out without a "grant it" note.
                offered = self._offered_reads(integ)
                parts = {p: c for p, c in self._reads(integ).withheld(permitted).items() if c in offered}
                if parts:
                    withheld[integ.domain] = parts
            active = [i for i in active if self._reads(i).anything_permitted(permitted)]
        results = await asyncio.gather(*(self._collect_one(i, permitted) for i in active), return_exceptions=True)
        data: dict[str, Any] = {}
        metrics: dict[str, float] = {}
        for integ, result in zip(active, results):
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                # _collect_one catches everything; this is a kernel bug, kept to one integration.
                self._collect_failed(integ, f"collect failed: {type(result).__name__}: {result}", exc=result)
                continue
            if result is None:
                continue
            state, integ_metrics = result
            if state is not None:
                data[integ.domain] = state
            metrics.update(integ_metrics)
        out: dict[str, Any] = {"data": data, "metrics": metrics}
        if permitted is not None:
            out["withheld"] = withheld
        return out

    def _offered_reads(self, integ: Integration) -> set[str]:
        """The read capabilities an integration offers here: what roost_capabilities names, else all its READS need."""
        if self.has_hook(integ, "roost_capabilities") and getattr(integ.module, "READS", None) is not None:
            return set(integ.capabilities) & self._reads(integ).capabilities()
        return self._reads(integ).capabilities()

    @staticmethod
    def _reads(integ: Integration) -> Reads:
        return integ.reads if isinstance(integ.reads, Reads) else default_reads(integ.domain)

    def _keep_permitted(self, integ: Integration, state: Any, metrics: Any, permitted: Collection[str]) -> tuple[Any, Any]:
        """Leave out every part whose read capability is not effective, before anything else looks at it."""
        reads = self._reads(integ)
        undeclared: list[str] = []
        if state is not None:
            state, undeclared = reads.filter_state(state, permitted)
        if isinstance(metrics, Mapping):
            metrics, dropped = reads.filter_metrics({k: v for k, v in metrics.items() if isinstance(k, str)}, permitted)
            undeclared += dropped
        for part in undeclared:
            # An author's oversight, the same every cycle: say it once.
            if self._once(integ).first(f"undeclared:{part}"):
                _LOGGER.warning("integration %s: %s is not declared in READS, so it is never sent", integ.domain, part)
        return state, metrics

    async def _collect_one(self, integ: Integration, permitted: Collection[str] | None = None) -> tuple[Any, dict[str, float]] | None:
        assert integ.context is not None
        try:
            result = await self.call(integ, "roost_collect", timeout=integ.timeout, thread=True)
            if result is None:
                state, metrics = None, {}
            elif not isinstance(result, Mapping):
                raise TypeError(f"roost_collect must return a mapping or None, got {type(result).__name__}")
            else:
                unknown = sorted(str(k) for k in result if k not in ("state", "metrics"))
                if unknown and self._once(integ).first("keys:" + ",".join(unknown)):
                    _LOGGER.warning(
                        "integration %s: roost_collect returned unknown key(s) %s; only 'state' and 'metrics' are used",
                        integ.domain,
                        ", ".join(unknown),
                    )
                state, raw_metrics = result.get("state"), result.get("metrics")
                if permitted is not None:
                    state, raw_metrics = self._keep_permitted(integ, state, raw_metrics, permitted)
                state = _snapshot_state(state)
                metrics = _clean_metrics(integ.domain, raw_metrics, integ.context.logger, self._once(integ))
        except TimeoutError as err:
            self._collect_failed(integ, f"collect timed out: {err}")
            return None
        except Exception as err:
            self._collect_failed(integ, f"collect failed: {type(err).__name__}: {err}", exc=err)
            return None
        if integ.state == STATE_COLLECT_ERROR:
            _LOGGER.info("integration %s: collect recovered", integ.domain)
        integ.set_state(STATE_LOADED)
        return state, metrics

    def _once(self, integ: Integration) -> _Dropped:
        return self._warned.setdefault(integ.domain, _Dropped())

    def _collect_failed(self, integ: Integration, reason: str, exc: BaseException | None = None) -> None:
        # Log a repeating failure once at error level, then at debug until it recovers.
        if integ.state != STATE_COLLECT_ERROR:
            _LOGGER.error("integration %s: %s", integ.domain, reason, exc_info=exc)
        else:
            _LOGGER.debug("integration %s: %s", integ.domain, reason)
        integ.set_state(STATE_COLLECT_ERROR, reason)

    async def shutdown_all(self) -> None:
        """Run roost_shutdown for every integration that set up, in reverse dependency order."""
        if self._shut_down:
            return
        self._shut_down = True
        for integ in reversed(_order(self.integrations)):
            if not integ.active:
                continue
            if self.role == ROLE_HUB:
                try:
                    await self.call(integ, "roost_hub_shutdown", timeout=SHUTDOWN_TIMEOUT, thread=True)
                except Exception:
                    _LOGGER.exception("integration %s: hub shutdown failed", integ.domain)
            try:
                await self.call(integ, "roost_shutdown", timeout=SHUTDOWN_TIMEOUT, thread=True)
            except Exception:
                _LOGGER.exception("integration %s: shutdown failed", integ.domain)
        # Abandoned async calls that still linger would be destroyed pending when the loop closes.
        for pending in self._inflight.values():
            if isinstance(pending, asyncio.Future) and not pending.done():
                pending.cancel()

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
        """What the active integrations offer: what they name, and the read capabilities of what they collect.

        An integration that collects offers the capabilities its READS need
        unless its roost_capabilities says which of them apply on this host;
        one with no READS offers ``<domain>.read``.
        """
        out = {c for i in self.integrations.values() if i.active for c in i.capabilities}
        out.update(c for i in self.integrations.values() if i.active and self.has_hook(i, "roost_collect") for c in self._offered_reads(i))
        return sorted(out)

    def actions(self) -> dict[str, tuple[Integration, ActionSpec]]:
        """Every action of an active integration, by name."""
        return {name: (i, spec) for i in self.integrations.values() if i.active for name, spec in i.actions.items()}
