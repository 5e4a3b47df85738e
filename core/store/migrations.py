"""Numbered schema migrations of the SQLite store, applied in order at open."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiosqlite

_LOGGER = logging.getLogger(__name__)

MigrationStep = str | Callable[[aiosqlite.Connection], Awaitable[None]]


@dataclass(frozen=True)
class Migration:
    """One schema version: the SQL statements (or async callables) that lead to it.

    Steps run one by one inside a single ``BEGIN IMMEDIATE`` transaction together
    with the ``PRAGMA user_version`` bump, so a migration is applied completely
    or not at all. Steps are single statements rather than one script because
    ``sqlite3.executescript`` commits any open transaction first.
    """

    version: int
    description: str
    steps: Sequence[MigrationStep]


class SchemaTooNewError(RuntimeError):
    """The database was written by a newer Roost than the one opening it."""


_ROLLUP_TABLE = """
CREATE TABLE {name} (
    series_id INTEGER NOT NULL REFERENCES metric_series (series_id) ON DELETE CASCADE,
    bucket_ts INTEGER NOT NULL,
    sum REAL NOT NULL,
    count INTEGER NOT NULL,
    min REAL NOT NULL,
    max REAL NOT NULL,
    PRIMARY KEY (series_id, bucket_ts)
) WITHOUT ROWID
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "hub metadata, nodes, join tokens, latest state, metric history",
        (
            """
            CREATE TABLE meta (
                key TEXT PRIMARY KEY,
                value TEXT NOT NULL
            ) WITHOUT ROWID
            """,
            # last_collected_at is the collected_at of the newest accepted
            # report; it keeps late backlog from overwriting integrations and
            # interval with older values.
            """
            CREATE TABLE nodes (
                node_id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                hostname TEXT NOT NULL,
                public_key TEXT NOT NULL UNIQUE,
                created_at REAL NOT NULL,
                last_seen REAL,
                revoked INTEGER NOT NULL DEFAULT 0,
                local INTEGER NOT NULL DEFAULT 0,
                facts TEXT NOT NULL DEFAULT '{}',
                integrations TEXT NOT NULL DEFAULT '[]',
                fields TEXT NOT NULL DEFAULT '{}',
                capabilities TEXT NOT NULL DEFAULT '[]',
                agent_version TEXT NOT NULL DEFAULT '',
                epoch TEXT NOT NULL DEFAULT '',
                last_seq INTEGER NOT NULL DEFAULT 0,
                interval REAL,
                spool_dropped INTEGER NOT NULL DEFAULT 0,
                last_collected_at REAL
            )
            """,
            """
            CREATE TABLE join_tokens (
                token_id TEXT PRIMARY KEY,
                secret_hash TEXT NOT NULL,
                created_at REAL NOT NULL,
                expires_at REAL NOT NULL,
                uses_left INTEGER NOT NULL,
                revoked INTEGER NOT NULL DEFAULT 0,
                note TEXT NOT NULL DEFAULT ''
            )
            """,
            """
            CREATE TABLE node_state (
                node_id TEXT NOT NULL REFERENCES nodes (node_id) ON DELETE CASCADE,
                domain TEXT NOT NULL,
                collected_at REAL NOT NULL,
                data TEXT NOT NULL,
                PRIMARY KEY (node_id, domain)
            )
            """,
            """
            CREATE TABLE node_metrics_latest (
                node_id TEXT PRIMARY KEY REFERENCES nodes (node_id) ON DELETE CASCADE,
                collected_at REAL NOT NULL,
                metrics TEXT NOT NULL
            )
            """,
            # One row per report holding all of its metrics keeps ingest at one
            # insert per report. AUTOINCREMENT because the rollup watermark
            # below relies on ids never being reused after a prune.
            """
            CREATE TABLE metric_raw (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                node_id TEXT NOT NULL REFERENCES nodes (node_id) ON DELETE CASCADE,
                ts REAL NOT NULL,
                "values" TEXT NOT NULL
            )
            """,
            "CREATE INDEX metric_raw_node_ts ON metric_raw (node_id, ts)",
            # The series catalog: metric_series() reads it, and the rollup
            # tables key on its small integer id instead of repeating
            # (node_id, series) text in every row.
            """
            CREATE TABLE metric_series (
                series_id INTEGER PRIMARY KEY,
                node_id TEXT NOT NULL REFERENCES nodes (node_id) ON DELETE CASCADE,
                series TEXT NOT NULL,
                UNIQUE (node_id, series)
            )
            """,
            _ROLLUP_TABLE.format(name="metric_minute"),
            _ROLLUP_TABLE.format(name="metric_hour"),
            # Every metric_raw row with id <= raw_watermark is folded into the
            # rollup tables; rows above it are folded by the next flush.
            """
            CREATE TABLE rollup_state (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                raw_watermark INTEGER NOT NULL
            )
            """,
            "INSERT INTO rollup_state (id, raw_watermark) VALUES (1, 0)",
        ),
    ),
    Migration(
        2,
        "users, sessions, api tokens",
        (
            # Names compare without case: "Admin" and "admin" are one user.
            """
            CREATE TABLE users (
                user_id TEXT PRIMARY KEY,
                name TEXT NOT NULL UNIQUE COLLATE NOCASE,
                role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
                password_hash TEXT NOT NULL,
                created_at REAL NOT NULL,
                password_changed_at REAL NOT NULL,
                disabled INTEGER NOT NULL DEFAULT 0
            )
            """,
            # session_id is the SHA-256 of the cookie; the cookie is never stored.
            """
            CREATE TABLE sessions (
                session_id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
                created_at REAL NOT NULL,
                last_seen REAL NOT NULL,
                expires_at REAL NOT NULL,
                csrf_token TEXT NOT NULL,
                peer TEXT NOT NULL DEFAULT '',
                user_agent TEXT NOT NULL DEFAULT ''
            ) WITHOUT ROWID
            """,
            "CREATE INDEX sessions_user ON sessions (user_id)",
            """
            CREATE TABLE api_tokens (
                token_id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
                name TEXT NOT NULL DEFAULT '',
                scope TEXT NOT NULL CHECK (scope IN ('read', 'operate', 'admin')),
                secret_hash TEXT NOT NULL,
                created_at REAL NOT NULL,
                expires_at REAL,
                last_used REAL,
                revoked INTEGER NOT NULL DEFAULT 0
            )
            """,
            "CREATE INDEX api_tokens_user ON api_tokens (user_id)",
        ),
    ),
    # The audit chain (roost.core.audit, roost.core.store.sqlite_audit).
    Migration(
        3,
        "audit chain",
        (
            # seq is the rowid: entries are read in chain order by primary key.
            # details is canonical JSON (roost.core.audit.canonical_json).
            """
            CREATE TABLE audit_log (
                seq INTEGER PRIMARY KEY,
                ts REAL NOT NULL,
                action TEXT NOT NULL,
                actor TEXT NOT NULL,
                target TEXT NOT NULL DEFAULT '',
                outcome TEXT NOT NULL,
                peer TEXT NOT NULL DEFAULT '',
                details TEXT NOT NULL DEFAULT '{}',
                prev_hash TEXT NOT NULL,
                hash TEXT NOT NULL
            )
            """,
            "CREATE INDEX audit_log_ts ON audit_log (ts)",
            "CREATE INDEX audit_log_action ON audit_log (action)",
            "CREATE INDEX audit_log_actor ON audit_log (actor)",
            "CREATE INDEX audit_log_target ON audit_log (target)",
            # Append-only for every code path; someone who can write the file
            # can drop these, which is what the hash chain is for.
            """
            CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END
            """,
            """
            CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END
            """,
        ),
    ),
    Migration(
        4,
        "pairing requests, grants and ceilings",
        (
            """
            CREATE TABLE pairing_requests (
                request_id TEXT PRIMARY KEY,
                public_key TEXT NOT NULL,
                hostname TEXT NOT NULL,
                code TEXT NOT NULL,
                created_at REAL NOT NULL,
                expires_at REAL NOT NULL,
                facts TEXT NOT NULL DEFAULT '{}',
                offered TEXT NOT NULL DEFAULT '[]',
                ceiling TEXT NOT NULL DEFAULT '{}',
                peer TEXT NOT NULL DEFAULT '',
                key_changed_node TEXT,
                status TEXT NOT NULL DEFAULT 'pending',
                node_id TEXT,
                decided_by TEXT NOT NULL DEFAULT '',
                decided_at REAL
            )
            """,
            "CREATE INDEX pairing_requests_status ON pairing_requests (status, expires_at)",
            "CREATE INDEX pairing_requests_key ON pairing_requests (public_key)",
            """
            CREATE TABLE node_grants (
                node_id TEXT PRIMARY KEY REFERENCES nodes (node_id) ON DELETE CASCADE,
                grants TEXT NOT NULL DEFAULT '[]',
                ceiling TEXT NOT NULL DEFAULT '{}',
                offered TEXT NOT NULL DEFAULT '[]',
                updated_at REAL
            ) WITHOUT ROWID
            """,
            # Capabilities a join token grants at enrolment; none means the
            # read-only part of what the agent offers in its first hello.
            """
            CREATE TABLE join_token_presets (
                token_id TEXT PRIMARY KEY,
                grants TEXT NOT NULL
            ) WITHOUT ROWID
            """,
        ),
    ),
    Migration(
        5,
        "push tokens",
        (
            # One bearer token per script-only node (POST /api/v1/push/...); only the secret's hash is kept.
            """
            CREATE TABLE push_tokens (
                token_id TEXT PRIMARY KEY,
                node_id TEXT NOT NULL REFERENCES nodes (node_id) ON DELETE CASCADE,
                secret_hash TEXT NOT NULL,
                created_at REAL NOT NULL,
                created_by TEXT NOT NULL DEFAULT '',
                note TEXT NOT NULL DEFAULT '',
                last_used REAL,
                revoked INTEGER NOT NULL DEFAULT 0
            ) WITHOUT ROWID
            """,
            "CREATE INDEX push_tokens_node ON push_tokens (node_id)",
        ),
    ),
    Migration(
        6,
        "jobs and schedules",
        (
            """
            CREATE TABLE jobs (
                job_id TEXT PRIMARY KEY,
                node_id TEXT NOT NULL REFERENCES nodes (node_id) ON DELETE CASCADE,
                action TEXT NOT NULL,
                params TEXT NOT NULL DEFAULT '{}',
                state TEXT NOT NULL,
                created_by TEXT NOT NULL,
                created_at REAL NOT NULL,
                schedule_id TEXT,
                idempotent INTEGER NOT NULL DEFAULT 0,
                attempt INTEGER NOT NULL DEFAULT 1,
                max_attempts INTEGER NOT NULL DEFAULT 1,
                timeout REAL NOT NULL,
                envelope TEXT,
                next_attempt_at REAL NOT NULL,
                lease_expires REAL,
                dispatched_at REAL,
                started_at REAL,
                finished_at REAL,
                result TEXT,
                error TEXT NOT NULL DEFAULT '',
                output TEXT NOT NULL DEFAULT '',
                progress TEXT NOT NULL DEFAULT '',
                percent REAL
            )
            """,
            "CREATE INDEX jobs_queue ON jobs (state, next_attempt_at)",
            "CREATE INDEX jobs_node ON jobs (node_id, created_at)",
            """
            CREATE TABLE schedules (
                schedule_id TEXT PRIMARY KEY,
                node_id TEXT NOT NULL REFERENCES nodes (node_id) ON DELETE CASCADE,
                action TEXT NOT NULL,
                params TEXT NOT NULL DEFAULT '{}',
                cron TEXT NOT NULL,
                enabled INTEGER NOT NULL DEFAULT 1,
                next_run REAL,
                last_job_id TEXT,
                created_by TEXT NOT NULL,
                created_at REAL NOT NULL,
                note TEXT NOT NULL DEFAULT ''
            )
            """,
        ),
    ),
    Migration(
        7,
        "push hosts: the hostIds an ArchNest-style push token reports for, each its own node",
        (
            "ALTER TABLE push_tokens ADD COLUMN multi_host INTEGER NOT NULL DEFAULT 0",
            """
            CREATE TABLE push_hosts (
                token_id TEXT NOT NULL REFERENCES push_tokens (token_id) ON DELETE CASCADE,
                host_id TEXT NOT NULL,
                node_id TEXT NOT NULL REFERENCES nodes (node_id) ON DELETE CASCADE,
                created_at REAL NOT NULL,
                PRIMARY KEY (token_id, host_id)
            ) WITHOUT ROWID
            """,
            "CREATE INDEX push_hosts_node ON push_hosts (node_id)",
        ),
    ),
    Migration(
        8,
        "the name a pairing agent asks for",
        # `roost agent --name`: shown with the request and what tells two agents on one host apart.
        ("ALTER TABLE pairing_requests ADD COLUMN name TEXT NOT NULL DEFAULT ''",),
    ),
    Migration(
        9,
        "rate-limit bans and failures that survive a restart",
        (
            # failures: JSON list of wall-clock times; banned_until: wall clock, NULL when not banned.
            """
            CREATE TABLE rate_limits (
                limiter TEXT NOT NULL,
                key TEXT NOT NULL,
                failures TEXT NOT NULL DEFAULT '[]',
                banned_until REAL,
                updated_at REAL NOT NULL,
                PRIMARY KEY (limiter, key)
            ) WITHOUT ROWID
            """,
        ),
    ),
    Migration(
        10,
        "integration data: what an integration's hub half keeps (its settings, manifests, policies)",
        (
            # value: JSON text, at most 1 MiB (checked by the hub before it is written).
            """
            CREATE TABLE integration_data (
                domain TEXT NOT NULL,
                key TEXT NOT NULL,
                value TEXT NOT NULL,
                updated_at REAL NOT NULL,
                PRIMARY KEY (domain, key)
            ) WITHOUT ROWID
            """,
        ),
    ),
    Migration(
        11,
        "alerts: rules, instances and their event log, silences, maintenance windows, node labels",
        (
            # body: the rule as the API shows it (JSON); default_key names the default it came from.
            """
            CREATE TABLE alert_rules (
                rule_id TEXT PRIMARY KEY,
                body TEXT NOT NULL,
                default_key TEXT,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL
            ) WITHOUT ROWID
            """,
            # One row per instance (pending, firing, resolved); resolved rows are the history, pruned by retention.
            """
            CREATE TABLE alert_instances (
                instance_id TEXT PRIMARY KEY,
                fingerprint TEXT NOT NULL,
                rule_id TEXT NOT NULL,
                node_id TEXT NOT NULL,
                state TEXT NOT NULL,
                severity TEXT NOT NULL,
                started_at REAL NOT NULL,
                resolved_at REAL,
                body TEXT NOT NULL
            ) WITHOUT ROWID
            """,
            "CREATE INDEX alert_instances_live ON alert_instances (state) WHERE state != 'resolved'",
            "CREATE INDEX alert_instances_resolved ON alert_instances (resolved_at)",
            "CREATE INDEX alert_instances_node ON alert_instances (node_id, started_at)",
            # Written in the same transaction as the instance change; read by notifications and automations by seq.
            """
            CREATE TABLE alert_events (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                instance_id TEXT NOT NULL,
                fingerprint TEXT NOT NULL,
                status TEXT NOT NULL,
                severity TEXT NOT NULL,
                rule_id TEXT NOT NULL,
                rule_name TEXT NOT NULL,
                node_id TEXT NOT NULL,
                labels TEXT NOT NULL,
                annotations TEXT NOT NULL,
                starts_at REAL NOT NULL,
                ends_at REAL,
                silenced INTEGER NOT NULL DEFAULT 0,
                inhibited INTEGER NOT NULL DEFAULT 0,
                created_at REAL NOT NULL
            )
            """,
            "CREATE INDEX alert_events_created ON alert_events (created_at)",
            """
            CREATE TABLE alert_silences (
                silence_id TEXT PRIMARY KEY,
                body TEXT NOT NULL,
                ends_at REAL NOT NULL
            ) WITHOUT ROWID
            """,
            """
            CREATE TABLE alert_windows (
                window_id TEXT PRIMARY KEY,
                body TEXT NOT NULL
            ) WITHOUT ROWID
            """,
            # labels: set in the dashboard or API; agent_labels: what the agent's config says (hub-set ones win).
            """
            CREATE TABLE node_labels (
                node_id TEXT PRIMARY KEY REFERENCES nodes (node_id) ON DELETE CASCADE,
                labels TEXT NOT NULL DEFAULT '{}',
                agent_labels TEXT NOT NULL DEFAULT '{}',
                updated_at REAL NOT NULL
            ) WITHOUT ROWID
            """,
        ),
    ),
    Migration(
        12,
        "notification receivers, the outbox and the alert groups waiting to be sent",
        (
            # settings: JSON; the values of a kind's secret keys are Fernet tokens, never plain text.
            """
            CREATE TABLE notify_receivers (
                name TEXT PRIMARY KEY,
                kind TEXT NOT NULL,
                settings TEXT NOT NULL DEFAULT '{}',
                route TEXT NOT NULL DEFAULT '{}',
                is_default INTEGER NOT NULL DEFAULT 0,
                allow_private INTEGER NOT NULL DEFAULT 0,
                enabled INTEGER NOT NULL DEFAULT 1,
                created_by TEXT NOT NULL DEFAULT '',
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL
            ) WITHOUT ROWID
            """,
            # state: pending (to send, at next_attempt_at), delivered, dead (gave up; an admin may retry it).
            """
            CREATE TABLE notify_outbox (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                receiver TEXT NOT NULL,
                group_key TEXT NOT NULL DEFAULT '',
                message TEXT NOT NULL,
                state TEXT NOT NULL DEFAULT 'pending',
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at REAL NOT NULL,
                last_error TEXT NOT NULL DEFAULT '',
                created_at REAL NOT NULL,
                delivered_at REAL
            )
            """,
            "CREATE INDEX notify_outbox_pending ON notify_outbox (state, receiver, id)",
            # state: JSON of the group's alerts and what each receiver was already told about them.
            """
            CREATE TABLE notify_groups (
                receiver TEXT NOT NULL,
                group_key TEXT NOT NULL,
                state TEXT NOT NULL,
                next_flush_at REAL,
                PRIMARY KEY (receiver, group_key)
            ) WITHOUT ROWID
            """,
        ),
    ),
    Migration(
        13,
        "automations, their persisted runs and approvals",
        (
            """
            CREATE TABLE automations (
                automation_id TEXT PRIMARY KEY,
                definition TEXT NOT NULL,
                enabled INTEGER NOT NULL DEFAULT 1,
                source TEXT NOT NULL DEFAULT 'api',
                webhook_secret TEXT NOT NULL,
                created_by TEXT NOT NULL,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL
            )
            """,
            """
            CREATE TABLE automation_runs (
                run_id TEXT PRIMARY KEY,
                automation_id TEXT NOT NULL,
                state TEXT NOT NULL,
                trigger TEXT NOT NULL,
                context TEXT NOT NULL,
                trace TEXT NOT NULL,
                depth INTEGER NOT NULL DEFAULT 0,
                started_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                node_id TEXT NOT NULL DEFAULT '',
                throttle_key TEXT NOT NULL DEFAULT '',
                finished_at REAL,
                error TEXT NOT NULL DEFAULT '',
                dry_run INTEGER NOT NULL DEFAULT 0
            )
            """,
            "CREATE INDEX automation_runs_by_automation ON automation_runs (automation_id, started_at)",
            "CREATE INDEX automation_runs_by_state ON automation_runs (state)",
            """
            CREATE TABLE automation_approvals (
                approval_id TEXT PRIMARY KEY,
                run_id TEXT NOT NULL,
                automation_id TEXT NOT NULL,
                step TEXT NOT NULL,
                summary TEXT NOT NULL,
                state TEXT NOT NULL,
                created_at REAL NOT NULL,
                expires_at REAL NOT NULL,
                node_id TEXT NOT NULL DEFAULT '',
                details TEXT,
                decided_by TEXT NOT NULL DEFAULT '',
                decided_at REAL,
                note TEXT NOT NULL DEFAULT '',
                envelope TEXT
            )
            """,
            "CREATE INDEX automation_approvals_by_state ON automation_approvals (state, created_at)",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


async def schema_version(db: aiosqlite.Connection) -> int:
    """Return the schema version recorded in the database (0 for a new one)."""
    rows = await db.execute_fetchall("PRAGMA user_version")
    return int(next(iter(rows))[0])


async def prepare_new_database(db: aiosqlite.Connection) -> bool:
    """Give a brand-new database file incremental auto-vacuum; return True if it was new.

    auto_vacuum can only change before the first table exists and before the
    file switches to WAL, which is why it is not part of migration 1 (that runs
    inside a transaction, after the journal mode is set).
    """
    rows = await db.execute_fetchall("PRAGMA page_count")
    if int(next(iter(rows))[0]) != 0:
        return False
    await db.execute("PRAGMA auto_vacuum = INCREMENTAL")
    return True


def _check_not_newer(version: int, latest: int, where: str) -> None:
    if version > latest:
        raise SchemaTooNewError(
            f"{where}: the database schema is version {version}, but this Roost "
            f"only knows versions up to {latest} — it was written by a newer Roost. "
            "Upgrade Roost, or restore a backup taken before the upgrade."
        )


async def migrate(
    db: aiosqlite.Connection,
    *,
    migrations: Sequence[Migration] = MIGRATIONS,
    where: str = "store",
) -> int:
    """Bring the schema up to the newest migration and return the version reached.

    ``db`` must be in autocommit mode (``isolation_level=None``). Each pending
    migration runs in its own ``BEGIN IMMEDIATE`` transaction; the version is
    re-read inside it, so two processes opening the same new file do not both
    apply a migration. Raises SchemaTooNewError if the database is newer than
    ``migrations`` and ValueError if ``migrations`` is not numbered 1, 2, 3...
    """
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise ValueError(
                f"migrations must be numbered 1, 2, 3... without gaps; found "
                f"{migration.version} at position {expected}"
            )
    latest = migrations[-1].version if migrations else 0
    version = await schema_version(db)
    _check_not_newer(version, latest, where)
    for migration in migrations[version:]:
        await db.execute("BEGIN IMMEDIATE")
        try:
            current = await schema_version(db)
            _check_not_newer(current, latest, where)
            if current >= migration.version:
                # Another process migrated while we waited for the lock.
                await db.execute("COMMIT")
                continue
            for step in migration.steps:
                if isinstance(step, str):
                    await db.execute(step)
                else:
                    await step(db)
            # PRAGMA takes no bound parameters; the version is an int we own.
            await db.execute(f"PRAGMA user_version = {int(migration.version)}")
            await db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                await db.execute("ROLLBACK")
            raise
        _LOGGER.info(
            "%s: applied schema migration %d (%s)", where, migration.version, migration.description
        )
    return await schema_version(db)
