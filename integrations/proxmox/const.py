"""Constants of the proxmox integration: config keys, defaults, capabilities, metric fields and the privileges each read needs."""

from __future__ import annotations

from typing import Final

from roost.core.reads import Reads

DOMAIN: Final = "proxmox"

CAP_READ: Final = "proxmox.readonly"
CAP_MANAGE: Final = "proxmox.manage"
# Everything a report carries about the cluster, its guests and backups needs proxmox.readonly.
READS: Final = Reads.every(CAP_READ)

# Config keys of [integrations.proxmox]. The core keeps `timeout` (the whole
# collection's limit) for itself, so the HTTP limit is `api_timeout`.
CONF_HOST: Final = "host"
CONF_PORT: Final = "port"
CONF_TOKEN_ID: Final = "token_id"
CONF_TOKEN_SECRET: Final = "token_secret"
CONF_TOKEN_SECRET_FILE: Final = "token_secret_file"
CONF_VERIFY_SSL: Final = "verify_ssl"
CONF_CA_FILE: Final = "ca_file"
CONF_API_TIMEOUT: Final = "api_timeout"
CONF_NODES: Final = "nodes"
CONF_READ_ONLY: Final = "read_only"
CONF_BACKUP_WARN_DAYS: Final = "backup_warn_days"
CONF_BACKUP_REFRESH: Final = "backup_refresh"
CONF_BACKUP_EXCLUDE: Final = "backup_exclude"
CONF_TASKS: Final = "tasks"
CONF_PBS: Final = "pbs"
CONF_DATASTORES: Final = "datastores"

DEFAULT_PORT: Final = 8006
DEFAULT_PBS_PORT: Final = 8007
# The kernel abandons a collection after integrations.proxmox.timeout (8 s by
# default); one request may take api_timeout and a whole collection stops
# reading at twice that, so a slow API yields a partial snapshot in time.
DEFAULT_API_TIMEOUT: Final = 3.0
DEADLINE_FACTOR: Final = 2.0
DEFAULT_BACKUP_WARN_DAYS: Final = 7.0
DEFAULT_BACKUP_REFRESH: Final = 300.0
DEFAULT_TASKS: Final = 25
MAX_TASKS: Final = 200
# vzdump tasks read per node for backup history.
BACKUP_TASKS_PER_NODE: Final = 200
# On a Proxmox node the local API's certificate is signed by this CA.
PVE_LOCAL_CA: Final = "/etc/pve/pve-root-ca.pem"
PVE_CONFIG_DIR: Final = "/etc/pve"
DEFAULT_LOCAL_HOST: Final = "127.0.0.1"

# Action task polling.
POLL_FIRST_SECONDS: Final = 0.25
POLL_MAX_SECONDS: Final = 2.0
# Consecutive failed status reads before an action gives up on a task.
POLL_MAX_ERRORS: Final = 5
# How long a guest may take to reach the state an action asked for after its
# task ended (the HA manager acts a few seconds after its own task).
SETTLE_SECONDS: Final = 120.0

# What each read needs, for messages that name the missing privilege.
# (privilege, ACL path, what goes missing without it)
READ_PRIVILEGES: Final = (
    ("Sys.Audit", "/nodes", "node status, versions and the task history"),
    ("VM.Audit", "/vms", "guests (VMs and containers)"),
    ("Datastore.Audit", "/storage", "storage usage"),
)
# The role that holds every privilege above.
AUDITOR_ROLE: Final = "PVEAuditor"

GUEST_TYPES: Final = ("qemu", "lxc")

METRIC_FIELDS: Final = {
    "cluster_quorate": {"unit": "", "description": "1 while the cluster has quorum, 0 when it lost it.", "label": "Quorate"},
    "nodes_online": {"unit": "count", "description": "Proxmox nodes online.", "label": "Nodes online"},
    "guests_running": {"unit": "count", "description": "Guests (VMs and containers) running.", "label": "Guests running"},
    "guests_total": {"unit": "count", "description": "Guests (VMs and containers), templates left out.", "label": "Guests"},
    "backups_overdue": {"unit": "count", "description": "Guests without a successful backup within backup_warn_days.", "label": "Backups overdue"},
    "cpu_percent": {"unit": "percent", "description": "CPU use of a Proxmox node.", "label": "Node CPU"},
    "mem_used_percent": {"unit": "percent", "description": "Memory used on a Proxmox node.", "label": "Node memory"},
    "mem_used_bytes": {"unit": "bytes", "description": "Memory used on a Proxmox node.", "label": "Node memory used"},
    "rootfs_used_percent": {"unit": "percent", "description": "Root filesystem used on a Proxmox node.", "label": "Node root fs"},
    "load_1": {"unit": "", "description": "One-minute load average of a Proxmox node.", "label": "Node load"},
    "guest_cpu_percent": {"unit": "percent", "description": "CPU use of a guest, as a share of its virtual CPUs.", "label": "Guest CPU"},
    "guest_mem_used_bytes": {"unit": "bytes", "description": "Memory used by a guest.", "label": "Guest memory"},
    "guest_mem_used_percent": {"unit": "percent", "description": "Memory used by a guest, as a share of its memory.", "label": "Guest memory"},
    "guest_net_in_bytes_per_s": {"unit": "bytes_per_second", "description": "Network traffic into a guest.", "label": "Guest receive"},
    "guest_net_out_bytes_per_s": {"unit": "bytes_per_second", "description": "Network traffic out of a guest.", "label": "Guest send"},
    "guest_disk_read_bytes_per_s": {"unit": "bytes_per_second", "description": "Disk reads of a guest.", "label": "Guest disk read"},
    "guest_disk_write_bytes_per_s": {"unit": "bytes_per_second", "description": "Disk writes of a guest.", "label": "Guest disk write"},
    "storage_used_percent": {"unit": "percent", "description": "Space used on a Proxmox storage (node/storage for local ones).", "label": "Storage used"},
}
