"""Notifications: alert events routed to receivers, grouped, and delivered through a persisted outbox that loses nothing.

``Notifier`` (``hub.notifications``) reads ``alert_events`` after a cursor kept
in the store and, in the same transaction that moves the cursor, files each
event into the groups of the receivers whose route matches it. A group is
flushed after ``group_wait`` (first alert), ``group_interval`` (a change) or
``repeat_interval`` (nothing changed, alerts still firing, at most
``max_repeats`` times); a flush writes one outbox row in the same
transaction that records what the receiver was told, so a hub killed at any
point neither loses a notification nor queues one twice. The outbox keeps
each receiver's rows in order: the oldest pending one is tried (with
exponential backoff) until it is delivered or, after ``RETRY_FOR``
seconds, dead-lettered; the rows behind it wait their turn.

Receiver kinds are the hub halves' ``NotificationReceiver`` declarations
(``hub.plugins.registry.notification_receivers``); receivers are rows an admin
creates through ``/api/v1/alerts/receivers``, their secret settings sealed
with the hub's ``SecretBox`` and never shown back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import voluptuous as vol
from aiohttp import web

from roost.core.config import duration
from roost.core.integration import humanize_invalid
from roost.core.store.notify import OUTBOX_DEAD, OUTBOX_DELIVERED, OUTBOX_PENDING, OUTBOX_STATES

from .auth import ROLE_ADMIN, ROLE_OPERATOR, ROLE_VIEWER, actor_of, requires
from .secretbox import SecretBox, SecretError, is_sealed
from .security import read_json
from .state import HUB_KEY, Hub

_LOGGER = logging.getLogger(__name__)

CURSOR_KEY = "notify_cursor"
STATUS_FIRING = "firing"
STATUS_RESOLVED = "resolved"
STATUS_INFO = "info"
SEVERITIES = ("info", "warning", "critical")
# Routing defaults, as Alertmanager's.
DEFAULT_GROUP_BY = ("alertname", "node")
DEFAULT_GROUP_WAIT = 30.0
DEFAULT_GROUP_INTERVAL = 300.0
DEFAULT_REPEAT_INTERVAL = 4 * 3600.0
# Delivery: backoff doubles from RETRY_FIRST up to RETRY_MAX; a row still failing RETRY_FOR after it was queued is dead.
RETRY_FIRST = 5.0
RETRY_MAX = 300.0
RETRY_FOR = 24 * 3600.0
MIN_ATTEMPTS_BEFORE_DEAD = 3
DELIVERY_TIMEOUT = 30.0
KEEP_DELIVERED = 7 * 86400.0
PRUNE_EVERY = 3600.0
# How long a stopping hub waits for a pass in progress (a delivery has DELIVERY_TIMEOUT) before cutting it.
STOP_GRACE = 5.0
EVENT_BATCH = 500
# How long the worker sleeps at most between looks at the clock (an injected clock may jump).
IDLE_WAKE = 1.0
RECEIVER_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
# Settings keys the hub fills in for a handler; a receiver's own settings may not use them.
RESERVED_SETTINGS = ("allow_private", "hub_broker")
MQTT_KIND = "notify.mqtt"


class NotifyError(ValueError):
    """A receiver or message that cannot be accepted as given; the text says what to change."""


# ------------------------------------------------------------------ routes (which receiver gets what)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and 0 < len(v) <= 200 for v in value) or len(value) > 50:
        raise vol.Invalid("must be a list of names")
    return value


def _labels(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > 50 or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise vol.Invalid("must be an object of label names to values, e.g. {\"site\": \"attic\"}")
    return dict(value)


ROUTE_SCHEMA = vol.Schema(
    {
        # False: this receiver gets one-off messages only, no alerts.
        vol.Optional("alerts", default=True): bool,
        vol.Optional("severities", default=list): vol.All(_strings, [vol.In(SEVERITIES[1:], msg="must be warning or critical")]),
        vol.Optional("rules", default=list): _strings,
        vol.Optional("nodes", default=list): _strings,
        vol.Optional("node_labels", default=dict): _labels,
        vol.Optional("labels", default=dict): _labels,
        vol.Optional("group_by", default=list(DEFAULT_GROUP_BY)): _strings,
        vol.Optional("group_wait", default=DEFAULT_GROUP_WAIT): duration(0, 86400),
        vol.Optional("group_interval", default=DEFAULT_GROUP_INTERVAL): duration(0, 7 * 86400),
        vol.Optional("repeat_interval", default=DEFAULT_REPEAT_INTERVAL): duration(60, 30 * 86400),
        # 0: repeat for as long as the alert fires.
        vol.Optional("max_repeats", default=0): vol.All(int, vol.Range(min=0, max=10_000)),
    }
)


def route_matches(route: Mapping[str, Any], event: Mapping[str, Any], node_labels: Mapping[str, str]) -> bool:
    """Whether an alert event goes to a receiver with this route (every condition given must hold; none given: all alerts)."""
    if not route.get("alerts", True):
        return False
    labels = event.get("labels") or {}
    if route.get("severities") and event.get("severity") not in route["severities"]:
        return False
    if route.get("rules") and not ({event.get("rule_id"), event.get("rule_name"), labels.get("alertname")} & set(route["rules"])):
        return False
    if route.get("nodes") and not ({event.get("node_id"), labels.get("node_name")} & set(route["nodes"])):
        return False
    if any(node_labels.get(k) != v for k, v in (route.get("node_labels") or {}).items()):
        return False
    return all(labels.get(k) == v for k, v in (route.get("labels") or {}).items())


def group_of(route: Mapping[str, Any], labels: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """The group key and group labels of an alert for a route: the values of its group_by labels."""
    group_labels = {name: str(labels.get(name, "")) for name in route.get("group_by") or DEFAULT_GROUP_BY}
    return json.dumps(group_labels, sort_keys=True, separators=(",", ":")), group_labels


def _iso(ts: float | None) -> str:
    if ts is None:
        return "0001-01-01T00:00:00Z"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int((ts % 1) * 1000):03d}Z"


def webhook_alert(alert: Mapping[str, Any]) -> dict[str, Any]:
    """One alert as Alertmanager's webhook payload has it."""
    return {
        "status": alert["status"],
        "labels": dict(alert.get("labels") or {}),
        "annotations": {k: str(v) for k, v in (alert.get("annotations") or {}).items() if v is not None},
        "startsAt": _iso(alert.get("starts_at")),
        "endsAt": _iso(alert.get("ends_at")) if alert["status"] == STATUS_RESOLVED else "0001-01-01T00:00:00Z",
        "generatorURL": str((alert.get("annotations") or {}).get("url") or ""),
        "fingerprint": str(alert.get("fingerprint") or ""),
    }


def alert_message(receiver: str, group_key: str, group_labels: Mapping[str, str], alerts: list[dict[str, Any]], *, hub_url: str) -> dict[str, Any]:
    """The message a flush of a group sends: status, a title and body for people, the alerts for machines."""
    firing = [a for a in alerts if a["status"] == STATUS_FIRING]
    resolved = [a for a in alerts if a["status"] == STATUS_RESOLVED]
    status = STATUS_FIRING if firing else STATUS_RESOLVED
    shown = firing or resolved
    severity = "critical" if any(a.get("severity") == "critical" for a in firing) else (shown[0].get("severity") or "warning")
    names = sorted({a["labels"].get("alertname", "") for a in shown} - {""})
    nodes = sorted({a["labels"].get("node_name") or a["labels"].get("node", "") for a in shown} - {""})
    counts = f"FIRING:{len(firing)}" if firing else f"RESOLVED:{len(resolved)}"
    if firing and resolved:
        counts += f", RESOLVED:{len(resolved)}"
    title = f"[{counts}] {', '.join(names) or 'alert'}" + (f" on {', '.join(nodes)}" if nodes else "")
    lines = []
    for alert in firing + resolved:
        mark = "resolved" if alert["status"] == STATUS_RESOLVED else alert.get("severity") or "firing"
        summary = (alert.get("annotations") or {}).get("summary") or alert["labels"].get("alertname", "alert")
        where = alert["labels"].get("node_name") or alert["labels"].get("node", "")
        lines.append(f"[{mark}] {summary}" + (f" ({where})" if where else ""))
    node_ids = {a.get("node_id") for a in shown}
    return {
        "title": title,
        "body": "\n".join(lines),
        "severity": severity,
        "node_id": next(iter(node_ids)) if len(node_ids) == 1 else None,
        "url": hub_url.rstrip("/") + "/alerts" if hub_url else None,
        "status": status,
        "alerts": [webhook_alert(a) for a in firing + resolved],
        "group_key": f"{receiver}:{group_key}",
        "group_labels": dict(group_labels),
        "common_labels": _common(a["labels"] for a in shown),
        "receiver": receiver,
        "cause": None,
    }


def _common(label_sets: Iterable[Mapping[str, str]]) -> dict[str, str]:
    sets = [dict(s) for s in label_sets]
    if not sets:
        return {}
    return {k: v for k, v in sets[0].items() if all(s.get(k) == v for s in sets[1:])}


def backoff(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failed ones: doubling, capped, with ±10 % jitter."""
    base = min(RETRY_MAX, RETRY_FIRST * (2 ** max(0, attempts - 1)))
    return base * random.uniform(0.9, 1.1)


# ------------------------------------------------------------------ the notifier


class Notifier:
    """``hub.notifications``: routes alert events to receivers, keeps the outbox, sends one-off messages."""

    def __init__(self, hub: Hub, *, clock: Callable[[], float] = time.time) -> None:
        self.hub = hub
        self.clock = clock
        self.box: SecretBox | None = None
        self.receivers: dict[str, dict[str, Any]] = {}
        self.groups: dict[tuple[str, str], tuple[dict[str, Any], float | None]] = {}
        self.cursor = 0
        self.started = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._step_lock = asyncio.Lock()
        self._failing: set[str] = set()

    # -------------------------------------------------------------- lifetime

    async def open(self) -> None:
        """Load receivers, groups and the cursor from the store (after it is open)."""
        self.box = await asyncio.to_thread(SecretBox.load_or_create, self.hub.config.data_dir)
        self.receivers = {r["name"]: r for r in await self.hub.store.list_receivers()}
        self.groups = {(r, k): (state, due) for r, k, state, due in await self.hub.store.notify_groups()}
        stored = await self.hub.store.get_meta(CURSOR_KEY)
        self.cursor = int(stored) if stored else 0

    def start(self) -> None:
        if self._task is None:
            self.started = True
            self._task = asyncio.create_task(self._run(), name="roost-notifications")

    async def stop(self) -> None:
        """Let the worker finish its pass (a store transaction cut by a cancellation would stay open), then end it."""
        self.started = False
        task, self._task = self._task, None
        if task is None:
            return
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=STOP_GRACE)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def wake(self) -> None:
        """Look at events, groups and the outbox now (a new alert event, a queued message, a moved clock)."""
        self._wake.set()

    async def _run(self) -> None:
        pruned = 0.0
        while self.started:
            delay = IDLE_WAKE
            try:
                if time.monotonic() - pruned > PRUNE_EVERY:
                    pruned = time.monotonic()
                    await self.prune()
                due = await self.step()
                if due is not None:
                    delay = max(0.0, min(IDLE_WAKE, due - self.clock()))
            except asyncio.CancelledError:
                raise
            except Exception:
                _LOGGER.exception("notifications: a pass over events and the outbox failed; trying again")
            if not self.started:
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self._wake.clear()

    async def step(self) -> float | None:
        """One pass: take new alert events, flush due groups, try due outbox rows. Returns when something is next due."""
        async with self._step_lock:
            await self._consume()
            await self._flush_due()
            await self._deliver_due()
            flushes = [due for _, due in self.groups.values() if due is not None]
            # A disabled receiver's rows wait until it is enabled again; they are not due meanwhile.
            outbox = await self.hub.store.outbox_next_due(skip=[n for n, r in self.receivers.items() if not r["enabled"]])
            candidates = [t for t in (*flushes, outbox) if t is not None]
            return min(candidates) if candidates else None

    # -------------------------------------------------------------- one-off messages

    async def send(
        self,
        *,
        title: str,
        body: str,
        severity: str = "info",
        node_id: str | None = None,
        url: str | None = None,
        receivers: list[str] | None = None,
        cause: dict[str, Any] | None = None,
    ) -> list[str]:
        """Queue a one-off message in the persisted outbox; returns its outbox ids (one per receiver).

        ``receivers`` are receiver names (None: every enabled receiver marked
        default). Never raises because a receiver is down: the outbox retries.
        Raises ``NotifyError`` for a name that is no receiver or a bad severity.
        """
        if severity not in SEVERITIES:
            raise NotifyError(f"severity must be one of {', '.join(SEVERITIES)}, not {severity!r}")
        if not isinstance(title, str) or not title.strip():
            raise NotifyError("a notification needs a title")
        if receivers is None:
            names = [r["name"] for r in self.receivers.values() if r["is_default"] and r["enabled"]]
            if not names:
                _LOGGER.warning("notification %r has no receiver: no receiver is marked default; it is dropped", title[:80])
        else:
            unknown = [n for n in receivers if n not in self.receivers]
            if unknown:
                raise NotifyError(f"no receiver named {', '.join(map(repr, unknown))}; an admin creates receivers under Notifications")
            names = list(dict.fromkeys(receivers))
        now = self.clock()
        rows = [
            {
                "receiver": name,
                "group_key": "",
                "next_attempt_at": now,
                "created_at": now,
                "message": {
                    "title": title[:500],
                    "body": str(body)[:20_000],
                    "severity": severity,
                    "node_id": node_id,
                    "url": url,
                    "status": STATUS_INFO,
                    "alerts": [],
                    "group_key": "",
                    "group_labels": {},
                    "common_labels": {},
                    "receiver": name,
                    "cause": cause,
                },
            }
            for name in names
        ]
        ids = await self.hub.store.notify_commit(outbox=rows) if rows else []
        self.wake()
        return [str(i) for i in ids]

    # -------------------------------------------------------------- alert events -> groups

    def _events_source(self) -> Any:
        return getattr(self.hub, "alerts", None)

    def _node_labels(self, node_id: str) -> dict[str, str]:
        source = self._events_source()
        if source is None or not node_id or not hasattr(source, "node_labels"):
            return {}
        return dict(source.node_labels(node_id))

    async def _consume(self) -> None:
        source = self._events_source()
        if source is None:
            return
        while True:
            events = await source.events_after(self.cursor, EVENT_BATCH)
            if not events:
                return
            now = self.clock()
            changed: dict[tuple[str, str], tuple[dict[str, Any], float | None]] = {}
            for event in events:
                self._file(event, now, changed)
            last = int(events[-1]["seq"])
            await self.hub.store.notify_commit(
                cursor=(CURSOR_KEY, last),
                groups=[(r, k, state if state.get("alerts") else None, due) for (r, k), (state, due) in changed.items()],
            )
            self.cursor = last
            for key, (state, due) in changed.items():
                if state.get("alerts"):
                    self.groups[key] = (state, due)
                else:
                    self.groups.pop(key, None)
            if len(events) < EVENT_BATCH:
                return

    def _file(self, event: Mapping[str, Any], now: float, changed: dict[tuple[str, str], tuple[dict[str, Any], float | None]]) -> None:
        """Put one event into the groups it belongs to (in ``changed``, the groups this batch touched)."""
        status = event.get("status")
        labels = {str(k): str(v) for k, v in (event.get("labels") or {}).items()}
        alert_id = str(event.get("instance_id") or event.get("fingerprint") or "")
        if status not in (STATUS_FIRING, STATUS_RESOLVED) or not alert_id:
            return
        if status == STATUS_FIRING and (event.get("silenced") or event.get("inhibited")):
            return  # never notified, so never resolved either: its resolve finds nothing to tell
        node_labels = self._node_labels(str(event.get("node_id") or ""))
        for name, receiver in self.receivers.items():
            if not receiver["enabled"]:
                continue
            route = receiver["route"]
            key, group_labels = group_of(route, labels)
            slot = (name, key)
            state, due = changed.get(slot) or self.groups.get(slot) or (None, None)
            if status == STATUS_RESOLVED:
                # Only an alert this receiver's group holds (fired and routed here, not silenced) is resolved, once.
                if state is None or alert_id not in state["alerts"] or state["alerts"][alert_id]["status"] == STATUS_RESOLVED:
                    continue
            elif not route_matches(route, {**event, "labels": labels}, node_labels):
                continue
            if state is None:
                # group_wait counts from when the alert fired, not from when this pass read it.
                began = min(now, float(event.get("created_at") or now))
                state = {"labels": group_labels, "alerts": {}, "created_at": began, "last_flush_at": None, "repeats": 0}
                due = began + route["group_wait"]
            else:
                state = json.loads(json.dumps(state))
            alert = state["alerts"].get(alert_id) or {"notified": None}
            alert.update(
                {
                    "status": status,
                    "fingerprint": event.get("fingerprint") or alert_id,
                    "labels": labels,
                    "annotations": dict(event.get("annotations") or {}),
                    "starts_at": event.get("starts_at"),
                    "ends_at": event.get("ends_at") if status == STATUS_RESOLVED else None,
                    "severity": event.get("severity") or labels.get("severity"),
                    "node_id": event.get("node_id"),
                    "seq": event.get("seq"),
                }
            )
            state["alerts"][alert_id] = alert
            if state["last_flush_at"] is not None:
                # A change to a group already told about: at the next group_interval, never before.
                change_due = max(now, state["last_flush_at"] + route["group_interval"])
                due = change_due if due is None else min(due, change_due)
            changed[slot] = (state, due)

    # -------------------------------------------------------------- groups -> outbox

    async def _flush_due(self) -> None:
        now = self.clock()
        for slot, (state, due) in sorted(self.groups.items(), key=lambda item: item[1][1] or 0):
            if due is None or due > now:
                continue
            receiver = self.receivers.get(slot[0])
            if receiver is None:
                continue
            await self._flush(slot, state, receiver, now)

    async def _flush(self, slot: tuple[str, str], state: dict[str, Any], receiver: dict[str, Any], now: float) -> None:
        name, key = slot
        route = receiver["route"]
        state = json.loads(json.dumps(state))
        alerts = state["alerts"]
        fresh = any(a["notified"] != a["status"] for a in alerts.values())
        if not fresh:
            state["repeats"] += 1
        # What to send: a change sends the whole group (firing and newly resolved), a repeat the firing ones.
        chosen = [a for a in alerts.values() if a["status"] == STATUS_FIRING or (fresh and a["notified"] != STATUS_RESOLVED)]
        chosen.sort(key=lambda a: (a.get("starts_at") or 0, a.get("seq") or 0))
        outbox = []
        if chosen:
            message = alert_message(name, key, state["labels"], chosen, hub_url=self._hub_url())
            outbox.append({"receiver": name, "group_key": key, "message": message, "next_attempt_at": now, "created_at": now})
        for alert_id in list(alerts):
            alerts[alert_id]["notified"] = alerts[alert_id]["status"]
            if alerts[alert_id]["status"] == STATUS_RESOLVED:
                del alerts[alert_id]
        state["last_flush_at"] = now
        if fresh:
            state["repeats"] = 0
        firing = any(a["status"] == STATUS_FIRING for a in alerts.values())
        repeats_left = route["max_repeats"] == 0 or state["repeats"] < route["max_repeats"]
        due = now + route["repeat_interval"] if firing and repeats_left else None
        keep = state if alerts else None
        await self.hub.store.notify_commit(groups=[(name, key, keep, due)], outbox=outbox)
        if keep is None:
            self.groups.pop(slot, None)
        else:
            self.groups[slot] = (keep, due)

    def _hub_url(self) -> str:
        try:
            return self.hub.config.url()
        except Exception:
            return ""

    # -------------------------------------------------------------- outbox -> receivers

    async def _deliver_due(self) -> None:
        heads = await self.hub.store.outbox_heads(self.clock())
        if heads:
            await asyncio.gather(*(self._deliver(row) for row in heads))

    async def _deliver(self, row: dict[str, Any]) -> None:
        receiver = self.receivers.get(row["receiver"])
        if receiver is not None and not receiver["enabled"]:
            return
        message = dict(row["message"])
        message["id"] = f"{self.hub.hub_id or 'roost'}-{row['id']}"
        try:
            if receiver is None:
                raise NotifyError(f"receiver {row['receiver']!r} no longer exists")
            await self.deliver_now(receiver, message)
        except Exception as err:
            await self._failed(row, err)
            return
        now = self.clock()
        await self.hub.store.outbox_update(row["id"], state=OUTBOX_DELIVERED, attempts=row["attempts"] + 1, delivered_at=now, last_error="")
        if row["receiver"] in self._failing:
            self._failing.discard(row["receiver"])
            _LOGGER.info("notifications: receiver %s delivers again", row["receiver"])
        self.hub.publish("notification.delivered", {"id": str(row["id"]), "receiver": row["receiver"], "title": message.get("title")})
        self.wake()  # the next row of this receiver may go at once

    async def _failed(self, row: dict[str, Any], err: BaseException) -> None:
        now = self.clock()
        attempts = row["attempts"] + 1
        reason = describe_error(err)
        if row["receiver"] not in self._failing:
            self._failing.add(row["receiver"])
            _LOGGER.error("notifications: receiver %s failed (%s); retrying with backoff", row["receiver"], reason)
        else:
            _LOGGER.debug("notifications: receiver %s still failing: %s", row["receiver"], reason)
        if now - row["created_at"] >= RETRY_FOR and attempts >= MIN_ATTEMPTS_BEFORE_DEAD:
            await self.hub.store.outbox_update(row["id"], state=OUTBOX_DEAD, attempts=attempts, last_error=reason)
            _LOGGER.error("notifications: gave up on notification %s to %s after %d attempts: %s", row["id"], row["receiver"], attempts, reason)
            self.hub.publish("notification.dead", {"id": str(row["id"]), "receiver": row["receiver"], "error": reason})
            self.wake()
            return
        await self.hub.store.outbox_update(row["id"], attempts=attempts, next_attempt_at=now + backoff(attempts), last_error=reason)

    def kind_of(self, receiver: Mapping[str, Any]) -> Any:
        found = self.hub.plugins.registry.notification_receivers.get(receiver["kind"])
        if found is None:
            raise NotifyError(f"receiver kind {receiver['kind']} is not available: the integration that provides it is not loaded")
        return found[1]

    async def deliver_now(self, receiver: Mapping[str, Any], message: dict[str, Any]) -> None:
        """Hand one message to the receiver's handler, with its secrets opened; raises what the handler raised."""
        kind = self.kind_of(receiver)
        settings = self.open_settings(receiver, kind)
        result = kind.handler(settings, message)
        if inspect.isawaitable(result):
            await asyncio.wait_for(result, timeout=DELIVERY_TIMEOUT)

    def open_settings(self, receiver: Mapping[str, Any], kind: Any) -> dict[str, Any]:
        assert self.box is not None
        settings = {k: self.box.open(v) if k in kind_secrets(kind) and is_sealed(v) else v for k, v in receiver["settings"].items()}
        settings["allow_private"] = bool(receiver["allow_private"])
        if receiver["kind"] == MQTT_KIND and not settings.get("url"):
            self._hub_broker(settings)
        return settings

    def _hub_broker(self, settings: dict[str, Any]) -> None:
        """An MQTT receiver without a URL publishes to the broker of the hub's own ``[mqtt]`` table."""
        from .mqtt import Settings as MqttSettings

        hub_mqtt = MqttSettings.from_config(self.hub.config.mqtt or {}, self.hub.hub_id)
        if hub_mqtt is None:
            raise NotifyError("this MQTT receiver has no url and the hub has no [mqtt] url; give the receiver a broker url")
        settings.update(
            {
                "url": f"{'mqtts' if hub_mqtt.tls else 'mqtt'}://{hub_mqtt.host}:{hub_mqtt.port}",
                "username": settings.get("username") or hub_mqtt.username,
                "password": settings.get("password") or hub_mqtt.password or "",
                "ca_file": hub_mqtt.ca_file,
                # The hub's own broker is the hub owner's config, not a URL typed into the dashboard.
                "hub_broker": True,
            }
        )

    # -------------------------------------------------------------- receivers (admin)

    def seal_settings(self, kind: Any, settings: Mapping[str, Any], previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Validate settings with the kind's schema and seal its secrets; an empty or absent secret keeps the stored one."""
        assert self.box is not None
        secrets = kind_secrets(kind)
        given = dict(settings)
        for key in RESERVED_SETTINGS:
            if key in given:
                raise NotifyError(f"settings.{key} is set by the hub; use the receiver's own field instead")
        kept: dict[str, str] = {}
        for key in secrets:
            if given.get(key) in (None, "") and previous and is_sealed(previous.get(key)):
                kept[key] = previous[key]
                given.pop(key, None)
            elif is_sealed(given.get(key)):
                raise NotifyError(f"settings.{key}: give the secret itself (it is stored encrypted)")
        plain_for_check = {**given, **{k: self.box.open(v) for k, v in kept.items()}}
        try:
            checked = kind.schema(plain_for_check)
        except vol.Invalid as err:
            raise NotifyError(f"invalid settings for {kind.name}: {humanize_invalid(err, plain_for_check)}") from None
        sealed = {}
        for key, value in checked.items():
            if key in kept:
                sealed[key] = kept[key]
            elif key in secrets and isinstance(value, str) and value:
                sealed[key] = self.box.seal(value)
            else:
                sealed[key] = value
        return sealed

    async def put_receiver(self, body: Mapping[str, Any], *, actor: str, create: bool) -> dict[str, Any]:
        name = body["name"]
        previous = self.receivers.get(name)
        if create and previous is not None:
            raise NotifyError(f"a receiver named {name!r} exists; change it with PATCH or pick another name")
        if not create and previous is None:
            raise LookupError(name)
        kind_name = body.get("kind") or (previous or {}).get("kind")
        if not create and body.get("kind") not in (None, previous["kind"]):
            raise NotifyError("a receiver's kind cannot change; delete it and create a new one")
        found = self.hub.plugins.registry.notification_receivers.get(kind_name or "")
        if found is None:
            kinds = ", ".join(sorted(self.hub.plugins.registry.notification_receivers)) or "none are loaded"
            raise NotifyError(f"unknown receiver kind {kind_name!r}; kinds: {kinds}")
        kind = found[1]
        settings_in = body.get("settings")
        if settings_in is None:
            settings_in = {k: v for k, v in (previous or {}).get("settings", {}).items()}
            settings_in = {k: ("" if k in kind_secrets(kind) else v) for k, v in settings_in.items()}
        settings = self.seal_settings(kind, settings_in, (previous or {}).get("settings"))
        route_in = body.get("route")
        try:
            route = ROUTE_SCHEMA(route_in if route_in is not None else (previous or {}).get("route") or {})
        except vol.Invalid as err:
            raise NotifyError(f"invalid route: {humanize_invalid(err)}") from None
        now = self.clock()

        def pick(field: str, default: Any) -> Any:
            value = body.get(field)
            return value if value is not None else (previous or {}).get(field, default)

        row = {
            "name": name,
            "kind": kind.name,
            "settings": settings,
            "route": route,
            "is_default": bool(pick("is_default", False)),
            "allow_private": bool(pick("allow_private", False)),
            "enabled": bool(pick("enabled", True)),
            "created_by": (previous or {}).get("created_by") or actor,
            "created_at": (previous or {}).get("created_at") or now,
            "updated_at": now,
        }
        if not await self.hub.store.put_receiver(row, create=create):
            raise NotifyError(f"receiver {name!r} changed meanwhile; try again")
        self.receivers[name] = row
        changed = sorted(k for k in ("settings", "route", "is_default", "allow_private", "enabled") if body.get(k) is not None)
        await self.hub.audit(
            "notifications.receiver_created" if create else "notifications.receiver_changed",
            actor=actor,
            target=f"receiver:{name}",
            details={"kind": kind.name, "allow_private": row["allow_private"], "changed": changed},
        )
        self.wake()
        return row

    async def delete_receiver(self, name: str, *, actor: str) -> bool:
        if not await self.hub.store.delete_receiver(name):
            return False
        self.receivers.pop(name, None)
        for slot in [s for s in self.groups if s[0] == name]:
            self.groups.pop(slot, None)
        await self.hub.audit("notifications.receiver_deleted", actor=actor, target=f"receiver:{name}")
        return True

    async def test_receiver(self, name: str, *, actor: str) -> dict[str, Any]:
        """Deliver a test message to one receiver now (not through the outbox) and say how it went."""
        receiver = self.receivers[name]
        message = {
            "id": f"{self.hub.hub_id or 'roost'}-test-{int(self.clock() * 1000)}",
            "title": "Roost test notification",
            "body": f"{actor} sent this test from the Roost hub to receiver {name}.",
            "severity": "info",
            "node_id": None,
            "url": self._hub_url() or None,
            "status": STATUS_INFO,
            "alerts": [],
            "group_key": "",
            "group_labels": {},
            "common_labels": {},
            "receiver": name,
            "cause": {"test": actor},
        }
        started = time.monotonic()
        try:
            await self.deliver_now(receiver, message)
        except Exception as err:
            outcome = {"ok": False, "error": describe_error(err)}
        else:
            outcome = {"ok": True, "error": ""}
        outcome["seconds"] = round(time.monotonic() - started, 3)
        await self.hub.audit(
            "notifications.receiver_tested",
            actor=actor,
            target=f"receiver:{name}",
            outcome="ok" if outcome["ok"] else "failed",
            details={"error": outcome["error"][:300]} if outcome["error"] else None,
        )
        return outcome

    async def retry(self, outbox_id: int, *, actor: str) -> bool:
        """Put a dead notification back in the queue (tried at once, given RETRY_FOR again)."""
        rows = [r for r in await self.hub.store.outbox_list(states=[OUTBOX_DEAD], limit=100_000) if r["id"] == outbox_id]
        if not rows:
            return False
        now = self.clock()
        # A fresh retry window: counted from now, not from when it was first queued.
        await self.hub.store.outbox_update(outbox_id, state=OUTBOX_PENDING, attempts=0, next_attempt_at=now, last_error="", created_at=now)
        await self.hub.audit("notifications.retried", actor=actor, target=f"outbox:{outbox_id}")
        self.wake()
        return True

    async def prune(self) -> int:
        return await self.hub.store.outbox_prune(self.clock() - KEEP_DELIVERED)

    # -------------------------------------------------------------- views

    def receiver_view(self, receiver: Mapping[str, Any], counts: Mapping[str, int] | None = None) -> dict[str, Any]:
        """A receiver as the API and dashboard show it: secrets are named as set, never given back."""
        found = self.hub.plugins.registry.notification_receivers.get(receiver["kind"])
        secrets = kind_secrets(found[1]) if found else ()
        return {
            "name": receiver["name"],
            "kind": receiver["kind"],
            "available": found is not None,
            "settings": {k: v for k, v in receiver["settings"].items() if k not in secrets and not is_sealed(v)},
            "secrets_set": sorted(k for k, v in receiver["settings"].items() if k in secrets or is_sealed(v)),
            "route": receiver["route"],
            "is_default": receiver["is_default"],
            "allow_private": receiver["allow_private"],
            "enabled": receiver["enabled"],
            "created_by": receiver["created_by"],
            "created_at": receiver["created_at"],
            "updated_at": receiver["updated_at"],
            "outbox": {state: (counts or {}).get(state, 0) for state in OUTBOX_STATES},
        }

    def kinds_view(self) -> list[dict[str, Any]]:
        from voluptuous_serialize import convert

        kinds = []
        for name, (domain, kind) in sorted(self.hub.plugins.registry.notification_receivers.items()):
            try:
                fields = convert(kind.schema)
            except Exception:
                fields = []
            kinds.append({"name": name, "domain": domain, "description": kind.description, "secrets": list(kind_secrets(kind)), "fields": fields})
        return kinds


def kind_secrets(kind: Any) -> tuple[str, ...]:
    return tuple(getattr(kind, "secrets", ()) or ())


def describe_error(err: BaseException) -> str:
    """A failed delivery in one line: what went wrong, without a traceback (and never a secret: handlers' messages only)."""
    if isinstance(err, asyncio.TimeoutError):
        return f"no answer within {DELIVERY_TIMEOUT:g} s"
    cause = err
    # aiohttp wraps the socket factory's refusal: show the refusal itself.
    inner = getattr(err, "os_error", None)
    if inner is not None and str(inner):
        cause = inner
    text = str(cause).strip() or type(cause).__name__
    return f"{type(cause).__name__}: {text}"[:1000]


# ------------------------------------------------------------------ API


def _name(value: Any) -> str:
    if not isinstance(value, str) or not RECEIVER_NAME.match(value):
        raise vol.Invalid("must be 1-63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit")
    return value


_RECEIVER_FIELDS = {
    vol.Optional("kind"): str,
    vol.Optional("settings"): dict,
    vol.Optional("route"): dict,
    vol.Optional("is_default"): bool,
    vol.Optional("allow_private"): bool,
    vol.Optional("enabled"): bool,
}
CREATE_SCHEMA = vol.Schema({vol.Required("name"): _name, vol.Required("kind"): str, **{k: v for k, v in _RECEIVER_FIELDS.items() if str(k) != "kind"}})
CHANGE_SCHEMA = vol.Schema(_RECEIVER_FIELDS)


def _notifier(request: web.Request) -> Notifier:
    return request.app[HUB_KEY].notifications


async def _body(request: web.Request, schema: vol.Schema) -> dict[str, Any]:
    data = await read_json(request, empty={})
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "body must be a JSON object"}), content_type="application/json")
    try:
        return schema(data)
    except vol.Invalid as err:
        raise web.HTTPBadRequest(text=json.dumps({"error": f"invalid request: {humanize_invalid(err, data)}"}), content_type="application/json")


def _error(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)


@requires(ROLE_VIEWER)
async def list_receivers(request: web.Request) -> web.Response:
    notifier = _notifier(request)
    counts = await request.app[HUB_KEY].store.outbox_counts()
    return web.json_response(
        {
            "receivers": [notifier.receiver_view(r, counts.get(r["name"])) for r in notifier.receivers.values()],
            "kinds": notifier.kinds_view(),
        }
    )


@requires(ROLE_VIEWER)
async def get_receiver(request: web.Request) -> web.Response:
    notifier = _notifier(request)
    receiver = notifier.receivers.get(request.match_info["receiver"])
    if receiver is None:
        return _error(f"no receiver named {request.match_info['receiver']!r}", 404)
    counts = await request.app[HUB_KEY].store.outbox_counts()
    return web.json_response(notifier.receiver_view(receiver, counts.get(receiver["name"])))


@requires(ROLE_ADMIN)
async def create_receiver(request: web.Request) -> web.Response:
    body = await _body(request, CREATE_SCHEMA)
    notifier = _notifier(request)
    try:
        row = await notifier.put_receiver(body, actor=actor_of(request), create=True)
    except NotifyError as err:
        return _error(str(err), 409 if "exists" in str(err) else 400)
    return web.json_response(notifier.receiver_view(row), status=201)


@requires(ROLE_ADMIN)
async def change_receiver(request: web.Request) -> web.Response:
    body = await _body(request, CHANGE_SCHEMA)
    body["name"] = request.match_info["receiver"]
    notifier = _notifier(request)
    try:
        row = await notifier.put_receiver(body, actor=actor_of(request), create=False)
    except LookupError:
        return _error(f"no receiver named {body['name']!r}", 404)
    except NotifyError as err:
        return _error(str(err))
    return web.json_response(notifier.receiver_view(row))


@requires(ROLE_ADMIN)
async def delete_receiver(request: web.Request) -> web.Response:
    name = request.match_info["receiver"]
    if not await _notifier(request).delete_receiver(name, actor=actor_of(request)):
        return _error(f"no receiver named {name!r}", 404)
    return web.json_response({"deleted": True})


@requires(ROLE_ADMIN)
async def test_receiver(request: web.Request) -> web.Response:
    name = request.match_info["receiver"]
    notifier = _notifier(request)
    if name not in notifier.receivers:
        return _error(f"no receiver named {name!r}", 404)
    return web.json_response(await notifier.test_receiver(name, actor=actor_of(request)))


def outbox_view(row: Mapping[str, Any]) -> dict[str, Any]:
    message = row["message"]
    return {
        "id": str(row["id"]),
        "receiver": row["receiver"],
        "state": row["state"],
        "title": message.get("title", ""),
        "status": message.get("status", ""),
        "severity": message.get("severity", ""),
        "alerts": len(message.get("alerts") or ()),
        "attempts": row["attempts"],
        "next_attempt_at": row["next_attempt_at"] if row["state"] == OUTBOX_PENDING else None,
        "last_error": row["last_error"],
        "created_at": row["created_at"],
        "delivered_at": row["delivered_at"],
    }


SEND_SCHEMA = vol.Schema(
    {
        vol.Required("title"): vol.All(str, vol.Length(min=1, max=500)),
        vol.Optional("body", default=""): vol.All(str, vol.Length(max=20_000)),
        vol.Optional("severity", default="info"): vol.In(SEVERITIES, msg=f"must be one of {', '.join(SEVERITIES)}"),
        vol.Optional("node_id", default=None): vol.Any(None, vol.All(str, vol.Length(max=100))),
        vol.Optional("url", default=None): vol.Any(None, vol.All(str, vol.Length(max=2000))),
        vol.Optional("receivers", default=None): vol.Any(None, [str]),
    }
)


@requires(ROLE_OPERATOR)
async def send_message(request: web.Request) -> web.Response:
    """Queue a one-off message (a script's "backup done", a test of routing) for the default or named receivers."""
    body = await _body(request, SEND_SCHEMA)
    actor = actor_of(request)
    try:
        ids = await _notifier(request).send(**body, cause={"actor": actor})
    except NotifyError as err:
        return _error(str(err))
    await request.app[HUB_KEY].audit("notifications.sent", actor=actor, target="outbox", details={"title": body["title"][:100], "ids": ids})
    return web.json_response({"queued": ids}, status=202)


@requires(ROLE_VIEWER)
async def list_outbox(request: web.Request) -> web.Response:
    states = [s for s in request.query.get("state", "").split(",") if s] or list(OUTBOX_STATES)
    bad = [s for s in states if s not in OUTBOX_STATES]
    if bad:
        return _error(f"state must be among {', '.join(OUTBOX_STATES)}, not {', '.join(bad)}")
    try:
        limit = max(1, min(1000, int(request.query.get("limit", "100"))))
    except ValueError:
        return _error("limit must be a whole number")
    rows = await request.app[HUB_KEY].store.outbox_list(states=states, receiver=request.query.get("receiver") or None, limit=limit)
    return web.json_response({"outbox": [outbox_view(r) for r in rows]})


@requires(ROLE_ADMIN)
async def retry_outbox(request: web.Request) -> web.Response:
    try:
        outbox_id = int(request.match_info["outbox_id"])
    except ValueError:
        return _error("outbox ids are whole numbers", 404)
    if not await _notifier(request).retry(outbox_id, actor=actor_of(request)):
        return _error(f"no dead notification with id {outbox_id}", 404)
    return web.json_response({"retried": True})


async def notifications_ctx(app: web.Application) -> Any:
    """The notifier's lifetime: after the store and the integrations (receiver kinds), before requests."""
    notifier = app[HUB_KEY].notifications
    await notifier.open()
    notifier.start()
    yield
    await notifier.stop()


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/alerts/receivers", list_receivers)
    app.router.add_post("/api/v1/alerts/receivers", create_receiver)
    app.router.add_get("/api/v1/alerts/receivers/{receiver}", get_receiver)
    app.router.add_patch("/api/v1/alerts/receivers/{receiver}", change_receiver)
    app.router.add_delete("/api/v1/alerts/receivers/{receiver}", delete_receiver)
    app.router.add_post("/api/v1/alerts/receivers/{receiver}/test", test_receiver)
    app.router.add_post("/api/v1/alerts/notifications", send_message)
    app.router.add_get("/api/v1/alerts/outbox", list_outbox)
    app.router.add_post("/api/v1/alerts/outbox/{outbox_id}/retry", retry_outbox)


__all__ = [
    "NotifyError",
    "Notifier",
    "ROUTE_SCHEMA",
    "alert_message",
    "backoff",
    "group_of",
    "notifications_ctx",
    "route_matches",
    "setup",
    "webhook_alert",
]
