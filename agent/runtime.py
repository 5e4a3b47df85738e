"""The agent runtime: load integrations, collect on an interval into the spool, and let an uplink drain it."""

from __future__ import annotations

import asyncio
import json
import threading
import logging
import platform
import socket
import time
from pathlib import Path
from typing import Any, Protocol

from roost.core import protocol
from roost.core.audit import ACTION_AGENT_CONNECTED, ACTION_AGENT_REJECTED, ACTION_AGENT_STARTED, ACTION_AGENT_STOPPED, OUTCOME_FAILED, OUTCOMES, escape
from roost.core.capabilities import effective
from roost.core.config import AgentSettings
from roost.core.const import ROLE_AGENT, __version__
from roost.core.identity import Identity
from roost.core.integration import humanize_invalid
from roost.core.plugins import IntegrationManager
from roost.core.signing import NONCE_FILE, NonceCache

from .audit import AUDIT_FILE, AgentAudit
from .executor import Executor
from .spool import Spool, SpooledReport

_LOGGER = logging.getLogger(__name__)

KEY_FILE = "node_key.pem"
SPOOL_FILE = "spool.db"
STATE_FILE = "agent.json"
# The hub's last grant, so reports collected while the hub is away follow it too.
GRANTS_FILE = "grants.json"
# The hub's settings per integration (a storage manifest), so they hold across restarts while the hub is away.
SETTINGS_FILE = "integration_settings.json"


class Uplink(Protocol):
    async def run(self, rt: AgentRuntime) -> None:
        """Deliver spooled reports until cancelled."""


def base_facts() -> dict[str, Any]:
    """What any host can say about itself without an integration."""
    uname = platform.uname()
    return {"hostname": socket.gethostname(), "system": uname.system, "kernel": uname.release, "arch": uname.machine}


def load_state(data_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((data_dir / STATE_FILE).read_text())
    except FileNotFoundError:
        return {}


def save_state(data_dir: Path, state: dict[str, Any]) -> None:
    path = data_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)


# A report must fit in one protocol message (1 MiB) with room for the envelope.
MAX_REPORT_BYTES = 900 * 1024


def _fit(body: dict[str, Any]) -> None:
    """Leave out the largest integration states until the report fits one message.

    An oversized report would be refused by the hub and resent forever; this
    keeps every other integration's data flowing and says what was left out.
    """
    size = len(json.dumps(body, separators=(",", ":")))
    if size <= MAX_REPORT_BYTES:
        return
    sizes = sorted(((len(json.dumps(v, separators=(",", ":"))), k) for k, v in body["data"].items()), reverse=True)
    for domain_size, domain in sizes:
        body["data"][domain] = {"error": f"state of {domain_size} bytes left out: the report must fit in 1 MiB"}
        _LOGGER.warning("integration %s: state of %d bytes left out of this report (too large)", domain, domain_size)
        size = len(json.dumps(body, separators=(",", ":")))
        if size <= MAX_REPORT_BYTES:
            return
    body["metrics"] = {}
    _LOGGER.warning("metrics left out of this report: it would not fit in 1 MiB")


class AgentRuntime:
    """One node's agent: identity, integrations, spool and collection loop."""

    def __init__(
        self,
        *,
        data_dir: Path,
        settings: AgentSettings,
        integrations_config: dict[str, dict[str, Any]],
        node_id: str = "",
        identity: Identity | None = None,
        entry_points: bool = True,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.settings = settings
        self.node_id = node_id
        self.identity = identity or Identity.load_or_create(self.data_dir / KEY_FILE)
        self.spool = Spool(self.data_dir / SPOOL_FILE, settings.spool_max_reports)
        self.audit = AgentAudit(self.data_dir / AUDIT_FILE)
        self._rejected_because = ""
        self.connected_at: float | None = None  # last authenticated connect (the update health window waits for one)
        self.manager = IntegrationManager(
            role=ROLE_AGENT,
            config=integrations_config,
            data_dir=self.data_dir,
            custom_dirs=[self.data_dir / "custom_integrations", *settings.custom_integrations],
            entry_points=entry_points,
        )
        self._base_facts = base_facts()
        # Facts from each integration's latest permitted state, so a withdrawn grant takes them out of the hello too.
        self._integration_facts: dict[str, dict[str, Any]] = {}
        self.grants: list[str] = self._load_grants()
        # What the last cycle left out because its read capability is not effective: {domain: {part: capability}}.
        self.withheld: dict[str, dict[str, str]] = {}
        self._grants_changed = asyncio.Event()
        # Settings the hub sent, as sent (each integration's validated copy is its ctx.settings).
        self.integration_settings: dict[str, dict[str, Any]] = self._load_settings()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._report_lock = threading.Lock()
        self._report_asked = False
        # A new key waiting to replace the current one (roost agent --rotate-key).
        self.next_identity: Identity | None = None
        self.executor = Executor(self, self.data_dir)
        self.nonce_cache: NonceCache | None = None
        self._audit_tasks: set[asyncio.Task[None]] = set()
        self.first_cycle = asyncio.Event()
        self.spooled = asyncio.Event()
        self.cycles = 0

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if (self.data_dir / (KEY_FILE + ".next")).exists():
            self.prepare_key_rotation()  # a rotation that did not finish
        await self.spool.open()
        # Nonces of signed operations already run: what stops a replay, across restarts.
        self.nonce_cache = NonceCache(self.data_dir / NONCE_FILE)
        await self.executor.open()
        await self.note_event(ACTION_AGENT_STARTED, details={"version": __version__, "node_id": self.node_id})
        self._loop = asyncio.get_running_loop()
        self.manager.load()
        for integ in self.manager.integrations.values():
            if integ.context is not None:
                integ.context.report_now = self.report_now
        # The settings kept from the hub's last word hold before the first cycle, hub or no hub.
        for domain, settings in sorted(self.integration_settings.items()):
            self._apply_settings(domain, settings)
        await self.manager.setup_all()
        for status in self.manager.statuses():
            _LOGGER.info("integration %s: %s%s", status["domain"], status["state"], f" ({status['reason']})" if status["reason"] else "")

    async def stop(self) -> None:
        await self.executor.close()
        if self.nonce_cache is not None:
            self.nonce_cache.close()
            self.nonce_cache = None
        await self.manager.shutdown_all()
        await self.spool.close()
        await asyncio.gather(*self._audit_tasks, return_exceptions=True)
        await self.note_event(ACTION_AGENT_STOPPED)
        await self.audit.close()

    # ----------------------------------------------------------------- audit

    async def audit_event(self, action: str, **entry: Any) -> None:
        """Record an event in this host's audit log; raises if it cannot, so an action that needs it fails closed."""
        try:
            await self.audit.record(action, **entry)
        except Exception:
            _LOGGER.error("agent audit log %s: cannot record %s", self.audit.path, action, exc_info=True)
            raise

    async def note_event(self, action: str, **entry: Any) -> None:
        """Record a lifecycle event; if the log cannot take it, say so loudly but keep collecting and reporting.

        Stopping the agent would make nothing safer here; actions use
        audit_event and do fail closed.
        """
        try:
            await self.audit_event(action, **entry)
        except Exception:
            pass  # logged at error level by audit_event

    def audit_job(self, action: str, *, job_id: str, action_name: str, outcome: str, details: dict[str, Any]) -> None:
        """Record a job's request, refusal or result in this host's log, in order, without holding the job up.

        Job states other than ok / refused / failed are recorded as failed with the state in the details.
        """
        if outcome not in OUTCOMES:
            details = {**details, "status": outcome}
            outcome = OUTCOME_FAILED
        entry = self.note_event(action, actor="hub", target=f"job:{job_id}", outcome=outcome, details={"action": action_name, **details})
        task = asyncio.get_running_loop().create_task(entry)
        self._audit_tasks.add(task)
        task.add_done_callback(self._audit_tasks.discard)

    async def on_connected(self, hub_url: str) -> None:
        """The uplink authenticated to the hub."""
        self._rejected_because = ""
        self.connected_at = time.time()
        await self.note_event(ACTION_AGENT_CONNECTED, target=f"node:{self.node_id}", peer=hub_url)

    async def hub_proven(self, hub_url: str, hub_id: str, hub_key: str) -> None:
        """The hub proved its identity on this connect: only now are its URL and key remembered in agent.json."""
        state = load_state(self.data_dir)
        if not state.get("node_id"):
            return  # not enrolled through the CLI (tests, the hub's own in-process agent)
        wanted = {"hub": hub_url, "hub_id": hub_id, "hub_key": hub_key}
        if all(state.get(k) == v for k, v in wanted.items()):
            return
        if state.get("hub") and state.get("hub") != hub_url:
            _LOGGER.info("hub %s proved its identity at %s; remembering that URL (was %s)", hub_id, hub_url, state["hub"])
        state.update(wanted)
        save_state(self.data_dir, state)

    async def on_rejected(self, hub_url: str, reason: str) -> None:
        """The hub refused this node's credentials; recorded once per streak, not on every retry."""
        if reason == self._rejected_because:
            return
        self._rejected_because = reason
        _LOGGER.debug("hub %s rejected this node: %s", hub_url, escape(reason))
        await self.note_event(ACTION_AGENT_REJECTED, target=f"node:{self.node_id}", outcome="refused", peer=hub_url, details={"reason": reason})

    async def run(self, uplink: Uplink, stop: asyncio.Event) -> None:
        """Collect and deliver until stop is set."""
        tasks = [asyncio.create_task(self.collect_loop(stop)), asyncio.create_task(uplink.run(self))]
        stop_task = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait({*tasks, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stop_task:
                    task.result()
        finally:
            for task in (*tasks, stop_task):
                task.cancel()
            await asyncio.gather(*tasks, stop_task, return_exceptions=True)

    async def collect_loop(self, stop: asyncio.Event) -> None:
        interval = self.settings.interval
        next_at = time.monotonic()
        while not stop.is_set():
            self._grants_changed.clear()
            await self.collect_once()
            # Keep to a fixed schedule; a slow cycle skips ahead rather than piling up.
            next_at += interval
            now = time.monotonic()
            if next_at < now:
                next_at = now + interval - ((now - next_at) % interval)
            # A changed grant starts a cycle at once, so what it allows (or takes away) shows without waiting.
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._grants_changed.wait())]
            try:
                await asyncio.wait(waits, timeout=next_at - now, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
            if self._grants_changed.is_set():
                next_at = time.monotonic()

    async def collect_once(self) -> int:
        """One cycle: collect from every integration, spool the report, wake the uplink."""
        collected_at = time.time()
        # Only what the hub granted and this host's ceiling allows leaves the agent (roost.core.reads).
        out = await self.manager.collect_all(permitted=frozenset(self.effective))
        self.withheld = out["withheld"]
        for domain in list(self._integration_facts):
            if domain in self.withheld and domain not in out["data"]:
                # Not collected for want of a grant: its facts come back only with a permitted state.
                del self._integration_facts[domain]
        for domain, state in out["data"].items():
            if isinstance(state, dict) and isinstance(state.get("facts"), dict):
                self._integration_facts[domain] = dict(state["facts"])
            else:
                self._integration_facts.pop(domain, None)
        body = {
            "collected_at": collected_at,
            "interval": self.settings.interval,
            "integrations": self.statuses(),
            "data": out["data"],
            "metrics": out["metrics"],
        }
        _fit(body)
        seq = await self.spool.append(collected_at, body)
        self.cycles += 1
        self.first_cycle.set()
        self.spooled.set()
        return seq

    def prepare_key_rotation(self) -> None:
        """Make the next key now (kept beside the current one until the hub accepts it)."""
        path = self.data_dir / (KEY_FILE + ".next")
        self.next_identity = Identity.load_or_create(path)

    def key_rotated(self, public_key: str) -> None:
        """The hub took the new key: it becomes this node's key, the old one is gone."""
        if self.next_identity is None or self.next_identity.public_key != public_key:
            _LOGGER.warning("hub confirmed a key rotation this agent did not ask for; ignored")
            return
        (self.data_dir / (KEY_FILE + ".next")).replace(self.data_dir / KEY_FILE)
        self.identity, self.next_identity = self.next_identity, None
        _LOGGER.info("node key rotated; the old key no longer works")

    @property
    def effective(self) -> list[str]:
        """What may run here: the hub's grant intersected with this host's ceiling (enforced here, not on the hub)."""
        return effective(self.grants, self.settings.ceiling)

    @property
    def facts(self) -> dict[str, Any]:
        """What this host says about itself in its hello: the basics, and the facts of permitted integration states."""
        facts = dict(self._base_facts)
        for domain in sorted(self._integration_facts):
            facts.update(self._integration_facts[domain])
        return facts

    def statuses(self) -> list[dict[str, Any]]:
        """Each integration's status, with the parts of its report this node may not send and the capability each needs."""
        out = self.manager.statuses()
        for status in out:
            withheld = self.withheld.get(status["domain"])
            if withheld:
                status["withheld"] = dict(withheld)
        return out

    def _load_grants(self) -> list[str]:
        try:
            grants = json.loads((self.data_dir / GRANTS_FILE).read_text())
        except (OSError, ValueError):
            return []
        return sorted({g for g in grants if isinstance(g, str)}) if isinstance(grants, list) else []

    def _save_grants(self) -> None:
        path = self.data_dir / GRANTS_FILE
        try:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.grants))
            tmp.replace(path)
        except OSError as err:
            _LOGGER.warning("cannot keep the hub's grants in %s (%s); until the hub is reached again after a restart, nothing is reported", path, err.strerror)

    def set_grants(self, grants: list[str]) -> None:
        if sorted(grants) != self.grants:
            before = self.effective
            self.grants = sorted(grants)
            self._save_grants()
            if self.effective != before:
                self._grants_changed.set()
            refused = sorted(set(self.grants) - set(self.effective))
            _LOGGER.info(
                "hub grants %s; effective here %s%s",
                ", ".join(self.grants) or "nothing",
                ", ".join(self.effective) or "nothing",
                f" (above this host's ceiling: {', '.join(refused)})" if refused else "",
            )

    # ------------------------------------------------------- integration settings

    def _load_settings(self) -> dict[str, dict[str, Any]]:
        try:
            raw = json.loads((self.data_dir / SETTINGS_FILE).read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            _LOGGER.warning("cannot read the hub's integration settings from %s (%s); waiting for the hub to send them again", self.data_dir / SETTINGS_FILE, err)
            return {}
        return {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, dict)} if isinstance(raw, dict) else {}

    def _apply_settings(self, domain: str, settings: dict[str, Any]) -> bool:
        """Hand settings to the integration once its SETTINGS_SCHEMA accepts them; False (and logged) otherwise."""
        integ = self.manager.integrations.get(domain)
        if integ is None or integ.context is None:
            _LOGGER.warning("the hub sent settings for integration %s, which is not loaded on this host; ignored", domain)
            return False
        # The agent half's own module (on the agent, integ.module is the package itself).
        schema = getattr(integ.module, "SETTINGS_SCHEMA", None)
        if schema is None:
            _LOGGER.warning("the hub sent settings for integration %s, which takes none from the hub; ignored", domain)
            return False
        try:
            clean = schema(settings)
        except Exception as err:  # vol.Invalid, or an author's validator raising something else
            why = humanize_invalid(err) if hasattr(err, "path") else f"{type(err).__name__}: {err}"
            _LOGGER.error("the hub sent settings for integration %s that it refuses (%s); keeping the ones it had", domain, why)
            return False
        integ.context.settings = clean
        return True

    def set_integration_settings(self, domain: str, settings: dict[str, Any]) -> None:
        """The hub's settings for one integration: validated by it, kept across restarts, and a cycle at once."""
        if self.integration_settings.get(domain) == settings and domain in self.manager.integrations:
            return
        if not self._apply_settings(domain, settings):
            return
        self.integration_settings[domain] = settings
        path = self.data_dir / SETTINGS_FILE
        try:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.integration_settings))
            tmp.replace(path)
        except OSError as err:
            _LOGGER.warning("cannot keep the hub's integration settings in %s (%s); after a restart they hold only once the hub is reached", path, err.strerror)
        _LOGGER.info("hub settings for integration %s updated", domain)
        self._grants_changed.set()

    def report_now(self) -> None:
        """An integration asks for a cycle at once; callable from any thread, repeated calls before it runs make one."""
        with self._report_lock:
            if self._report_asked or self._loop is None:
                return
            self._report_asked = True
        try:
            self._loop.call_soon_threadsafe(self._report_due)
        except RuntimeError:  # the loop has closed: the agent is stopping
            pass

    def _report_due(self) -> None:
        with self._report_lock:
            self._report_asked = False
        self._grants_changed.set()

    def hello(self) -> dict[str, Any]:
        """What the agent tells the hub about itself on every connect (signature added by the uplink)."""
        return {
            "node_id": self.node_id,
            "agent_version": __version__,
            "epoch": self.spool.epoch,
            "hostname": self.facts.get("hostname", ""),
            "facts": self.facts,
            "integrations": self.statuses(),
            "fields": self.manager.fields(),
            "capabilities": self.manager.capabilities(),
            "ceiling": self.settings.ceiling.as_dict(),
            "actions": [spec.describe() for _, spec in self.manager.actions().values()],
            "labels": dict(getattr(self.settings, "labels", {}) or {}),
        }

    def operator_keys(self) -> list[str]:
        """Operator public keys that may sign destructive actions here: from this host's config and from pairing."""
        keys = list(getattr(self.settings, "operator_keys", []) or [])
        state = load_state(self.data_dir)
        keys.extend(k for k in state.get("operator_keys", []) if k not in keys)
        return keys

    def report_message(self, row: SpooledReport) -> str:
        return protocol.encode(
            protocol.TYPE_REPORT, node_id=self.node_id, seq=row.seq, spool_dropped=self.spool.dropped, **row.body
        )
