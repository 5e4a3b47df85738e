"""SQLite implementation of the alert store (a mixin of SQLiteStore): rules, instances, the event log, silences, windows, node labels."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

EVENT_COLUMNS = (
    "seq", "instance_id", "fingerprint", "status", "severity", "rule_id", "rule_name", "node_id",
    "labels", "annotations", "starts_at", "ends_at", "silenced", "inhibited", "created_at",
)
META_ALERT_DEFAULTS = "alert_defaults_seeded"


def _event_row(row: Sequence[Any]) -> dict[str, Any]:
    event = dict(zip(EVENT_COLUMNS, row))
    event["labels"] = json.loads(event["labels"])
    event["annotations"] = json.loads(event["annotations"])
    event["silenced"] = bool(event["silenced"])
    event["inhibited"] = bool(event["inhibited"])
    return event


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class SQLiteAlertStore:
    """Relies on SQLiteStore's _transaction and _fetchall."""

    # ------------------------------------------------------------------ load

    async def load_alerts(self) -> dict[str, Any]:
        """Everything the alert engine keeps in memory: rules, live instances, silences, windows, labels, seeded defaults."""
        rows = await self._fetchall("SELECT body FROM alert_rules")  # type: ignore[attr-defined]
        rules = [json.loads(r[0]) for r in rows]
        rows = await self._fetchall("SELECT body FROM alert_instances WHERE state != 'resolved'")  # type: ignore[attr-defined]
        instances = [json.loads(r[0]) for r in rows]
        silences = [json.loads(r[0]) for r in await self._fetchall("SELECT body FROM alert_silences")]  # type: ignore[attr-defined]
        windows = [json.loads(r[0]) for r in await self._fetchall("SELECT body FROM alert_windows")]  # type: ignore[attr-defined]
        labels = {
            node_id: (json.loads(hub), json.loads(agent))
            for node_id, hub, agent in await self._fetchall("SELECT node_id, labels, agent_labels FROM node_labels")  # type: ignore[attr-defined]
        }
        seeded = await self._fetchall("SELECT value FROM meta WHERE key = ?", (META_ALERT_DEFAULTS,))  # type: ignore[attr-defined]
        return {
            "rules": rules,
            "instances": instances,
            "silences": silences,
            "windows": windows,
            "labels": labels,
            "seeded_defaults": set(json.loads(seeded[0][0])) if seeded else set(),
        }

    # ----------------------------------------------------------------- rules

    async def seed_alert_rules(self, rules: Sequence[Mapping[str, Any]], seeded: set[str], now: float) -> None:
        """Create default rules and remember their keys, so a default a user deleted is never made again."""
        async with self._transaction() as db:  # type: ignore[attr-defined]
            for rule in rules:
                await db.execute(
                    "INSERT OR IGNORE INTO alert_rules (rule_id, body, default_key, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                    (rule["id"], _dumps(rule), rule.get("default_key"), now, now),
                )
            await db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (META_ALERT_DEFAULTS, _dumps(sorted(seeded))),
            )

    async def save_alert_rule(self, rule: Mapping[str, Any], now: float) -> None:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            await db.execute(
                "INSERT INTO alert_rules (rule_id, body, default_key, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (rule_id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
                (rule["id"], _dumps(rule), rule.get("default_key"), now, now),
            )

    async def delete_alert_rule(self, rule_id: str) -> bool:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            cur = await db.execute("DELETE FROM alert_rules WHERE rule_id = ?", (rule_id,))
            return cur.rowcount > 0

    # ------------------------------------------------------ instances, events

    async def apply_alert_changes(
        self, instances: Sequence[Mapping[str, Any]], events: Sequence[Mapping[str, Any]], dropped: Sequence[str] = ()
    ) -> list[int]:
        """Write instance changes and their events in one transaction; returns the events' seqs in order.

        ``dropped`` are instance ids that end without history (a pending one whose condition went away).
        """
        seqs: list[int] = []
        async with self._transaction() as db:  # type: ignore[attr-defined]
            for inst in instances:
                await db.execute(
                    "INSERT INTO alert_instances (instance_id, fingerprint, rule_id, node_id, state, severity, started_at, resolved_at, body) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (instance_id) DO UPDATE SET state = excluded.state, "
                    "severity = excluded.severity, resolved_at = excluded.resolved_at, body = excluded.body",
                    (
                        inst["id"], inst["fingerprint"], inst["rule_id"], inst["node_id"], inst["state"], inst["severity"],
                        inst["started_at"], inst.get("resolved_at"), _dumps(inst),
                    ),
                )
            for instance_id in dropped:
                await db.execute("DELETE FROM alert_instances WHERE instance_id = ?", (instance_id,))
            for ev in events:
                cur = await db.execute(
                    "INSERT INTO alert_events (instance_id, fingerprint, status, severity, rule_id, rule_name, node_id, labels, "
                    "annotations, starts_at, ends_at, silenced, inhibited, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        ev["instance_id"], ev["fingerprint"], ev["status"], ev["severity"], ev["rule_id"], ev["rule_name"],
                        ev["node_id"], _dumps(ev["labels"]), _dumps(ev["annotations"]), ev["starts_at"], ev.get("ends_at"),
                        int(bool(ev.get("silenced"))), int(bool(ev.get("inhibited"))), ev["created_at"],
                    ),
                )
                seqs.append(int(cur.lastrowid or 0))
        return seqs

    async def alert_events_after(self, seq: int, limit: int = 500) -> list[dict[str, Any]]:
        rows = await self._fetchall(  # type: ignore[attr-defined]
            f"SELECT {', '.join(EVENT_COLUMNS)} FROM alert_events WHERE seq > ? ORDER BY seq LIMIT ?", (int(seq), int(limit))
        )
        return [_event_row(r) for r in rows]

    async def alert_history(
        self,
        *,
        node_id: str | None = None,
        rule_id: str | None = None,
        state: str | None = None,
        severity: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 200,
    ) -> list[dict[str, Any]]:
        """Instances newest first, filtered; values are bound, never spliced into the SQL."""
        where, params = [], []
        for column, value in (("node_id", node_id), ("rule_id", rule_id), ("state", state), ("severity", severity)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("started_at >= ?")
            params.append(since)
        if until is not None:
            where.append("started_at <= ?")
            params.append(until)
        sql = "SELECT body FROM alert_instances" + (" WHERE " + " AND ".join(where) if where else "")
        rows = await self._fetchall(sql + " ORDER BY started_at DESC LIMIT ?", (*params, int(limit)))  # type: ignore[attr-defined]
        return [json.loads(r[0]) for r in rows]

    async def prune_alerts(self, before: float) -> int:
        """Drop resolved instances and events older than ``before`` (the alert history's retention)."""
        async with self._transaction() as db:  # type: ignore[attr-defined]
            cur = await db.execute("DELETE FROM alert_instances WHERE state = 'resolved' AND resolved_at < ?", (before,))
            # Keep the newest event whatever its age: AUTOINCREMENT never reuses a seq, but a reader's cursor stays meaningful.
            await db.execute(
                "DELETE FROM alert_events WHERE created_at < ? AND seq < (SELECT COALESCE(MAX(seq), 0) FROM alert_events)", (before,)
            )
            await db.execute("DELETE FROM alert_silences WHERE ends_at < ?", (before,))
            return cur.rowcount

    # ------------------------------------------------- silences, windows, labels

    async def save_alert_silence(self, silence: Mapping[str, Any]) -> None:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            await db.execute(
                "INSERT INTO alert_silences (silence_id, body, ends_at) VALUES (?, ?, ?) "
                "ON CONFLICT (silence_id) DO UPDATE SET body = excluded.body, ends_at = excluded.ends_at",
                (silence["id"], _dumps(silence), silence["ends_at"]),
            )

    async def delete_alert_silence(self, silence_id: str) -> bool:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            return (await db.execute("DELETE FROM alert_silences WHERE silence_id = ?", (silence_id,))).rowcount > 0

    async def save_alert_window(self, window: Mapping[str, Any]) -> None:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            await db.execute(
                "INSERT INTO alert_windows (window_id, body) VALUES (?, ?) ON CONFLICT (window_id) DO UPDATE SET body = excluded.body",
                (window["id"], _dumps(window)),
            )

    async def delete_alert_window(self, window_id: str) -> bool:
        async with self._transaction() as db:  # type: ignore[attr-defined]
            return (await db.execute("DELETE FROM alert_windows WHERE window_id = ?", (window_id,))).rowcount > 0

    async def set_node_labels(self, node_id: str, *, now: float, labels: Mapping[str, str] | None = None, agent_labels: Mapping[str, str] | None = None) -> None:
        """Set the hub-side labels, the agent's, or both, of one node."""
        async with self._transaction() as db:  # type: ignore[attr-defined]
            await db.execute("INSERT OR IGNORE INTO node_labels (node_id, updated_at) VALUES (?, ?)", (node_id, now))
            if labels is not None:
                await db.execute("UPDATE node_labels SET labels = ?, updated_at = ? WHERE node_id = ?", (_dumps(dict(labels)), now, node_id))
            if agent_labels is not None:
                await db.execute(
                    "UPDATE node_labels SET agent_labels = ?, updated_at = ? WHERE node_id = ?", (_dumps(dict(agent_labels)), now, node_id)
                )
