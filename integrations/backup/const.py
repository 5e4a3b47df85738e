"""Constants of the backup integration: capabilities, config keys, defaults, record names and metric fields."""

from __future__ import annotations

from typing import Final

from roost.core.reads import Reads

DOMAIN: Final = "backup"

CAP_READ: Final = "backup.read"
CAP_RUN: Final = "backup.run"
CAP_RESTORE: Final = "backup.restore"
READS: Final = Reads.every(CAP_READ)

KIND_RESTIC: Final = "restic"
KIND_BORG: Final = "borg"
KINDS: Final = (KIND_RESTIC, KIND_BORG)

# [integrations.backup]
CONF_REPOSITORIES: Final = "repositories"
CONF_NAME: Final = "name"
CONF_KIND: Final = "kind"
CONF_REPOSITORY: Final = "repository"
CONF_PASSWORD_FILE: Final = "password_file"
CONF_PASSWORD_COMMAND: Final = "password_command"
CONF_PATHS: Final = "paths"
CONF_EXCLUDES: Final = "excludes"
CONF_ENV: Final = "env"
CONF_BINARY: Final = "binary"
CONF_UPLOAD_LIMIT: Final = "upload_limit_kib"
CONF_SCRATCH_DIR: Final = "scratch_dir"
# Directories a restore (backup.restore, backup.restore.overwrite) may write into; none: restores are off.
CONF_RESTORE_ROOTS: Final = "restore_roots"
CONF_INVENTORY_REFRESH: Final = "inventory_refresh"
CONF_RESTORE_SAMPLE: Final = "restore_sample_files"
CONF_RESTORE_MAX_BYTES: Final = "restore_max_bytes"
CONF_CHECK_SUBSETS: Final = "check_subsets"
CONF_TICK_SECONDS: Final = "tick_seconds"

DEFAULT_BINARIES: Final = {KIND_RESTIC: "restic", KIND_BORG: "borg"}
DEFAULT_INVENTORY_REFRESH: Final = 900.0
DEFAULT_RESTORE_SAMPLE: Final = 20
# A snapshot whose files add up to less than this is restored whole by a restore test.
DEFAULT_RESTORE_MAX_BYTES: Final = 256 * 1024 * 1024
# restic check --read-data-subset=n/N: the whole repository is read every N verify runs.
DEFAULT_CHECK_SUBSETS: Final = 10
DEFAULT_TICK_SECONDS: Final = 30.0

# Files the agent keeps in <data dir>/backup/.
RECORDS_FILE: Final = "records.json"
APPROVALS_FILE: Final = "approvals.json"
SCRATCH_LEDGER: Final = "scratch.json"
SCRATCH_MARK: Final = ".roost-scratch"

# Snapshots per repository sent in the state (newest first); the count is always whole.
MAX_SNAPSHOTS_IN_STATE: Final = 200
# Progress messages at most this often.
PROGRESS_EVERY_SECONDS: Final = 0.5
ERROR_TAIL_CHARS: Final = 600

RETENTION_KEYS: Final = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")

ACTION_RUN: Final = "backup.run"
ACTION_SNAPSHOTS: Final = "backup.snapshots"
ACTION_VERIFY: Final = "backup.verify"
ACTION_RESTORE_TEST: Final = "backup.restore_test"
ACTION_PRUNE_PREVIEW: Final = "backup.prune.preview"
ACTION_PRUNE: Final = "backup.prune"
ACTION_APPROVE: Final = "backup.retention.approve"
ACTION_REVOKE: Final = "backup.retention.revoke"
ACTION_PRUNE_APPROVED: Final = "backup.prune.approved"
ACTION_RESTORE: Final = "backup.restore"
ACTION_RESTORE_OVERWRITE: Final = "backup.restore.overwrite"

METRIC_FIELDS: Final = {
    "last_backup_age_seconds": {"unit": "seconds", "description": "Age of a repository's newest snapshot.", "label": "Last backup age"},
    "snapshots": {"unit": "count", "description": "Snapshots (archives) in a repository.", "label": "Snapshots"},
    "repository_size_bytes": {"unit": "bytes", "description": "Size of a repository's newest snapshot as restored.", "label": "Backup size"},
    "last_run_ok": {"unit": "", "description": "1 when a repository's last backup run succeeded, 0 when it failed.", "label": "Last run OK"},
}
