"""Constants shared by the hub and the agent."""

from typing import Final

__version__: Final = "0.1.0"

PROJECT_NAME: Final = "roost"
HOOK_NAMESPACE: Final = "roost"
ENTRY_POINT_GROUP: Final = "roost"

# Wire protocol between agent and hub.
PROTOCOL_VERSION: Final = 1
WS_PATH: Final = "/api/v1/agent/ws"
ENROLL_PATH: Final = "/api/v1/enroll"
HUB_IDENTITY_PATH: Final = "/api/v1/hub-identity"
MAX_MESSAGE_BYTES: Final = 1024 * 1024

DEFAULT_HUB_PORT: Final = 8765
DEFAULT_HUB_BIND: Final = "0.0.0.0"  # safe with login, LAN-only mode and TLS on by default
DEFAULT_COLLECT_INTERVAL: Final = 10.0
DEFAULT_COLLECT_TIMEOUT: Final = 8.0
DEFAULT_STALE_AFTER: Final = 30.0
DEFAULT_OFFLINE_AFTER: Final = 120.0
DEFAULT_SPOOL_MAX_REPORTS: Final = 50_000
DEFAULT_HEARTBEAT_INTERVAL: Final = 15.0

# Integration states, shown by the API and the dashboard.
STATE_LOADED: Final = "loaded"
STATE_SETUP_ERROR: Final = "setup_error"
STATE_SETUP_RETRY: Final = "setup_retry"
STATE_DISABLED: Final = "disabled"
STATE_NOT_AVAILABLE: Final = "not_available"
STATE_COLLECT_ERROR: Final = "collect_error"
INTEGRATION_STATES: Final = (
    STATE_LOADED,
    STATE_SETUP_ERROR,
    STATE_SETUP_RETRY,
    STATE_DISABLED,
    STATE_NOT_AVAILABLE,
    STATE_COLLECT_ERROR,
)

ROLE_HUB: Final = "hub"
ROLE_AGENT: Final = "agent"

# Node liveness.
NODE_ONLINE: Final = "online"
NODE_STALE: Final = "stale"
NODE_OFFLINE: Final = "offline"
NODE_NEW: Final = "new"
