"""Names of the self-update integration."""

from typing import Final

from roost.core.reads import Reads

DOMAIN: Final = "self_update"
CAP_AGENT_UPDATE: Final = "agent.update"
CAP_AGENT_UPDATE_READ: Final = "agent.update.read"
ACTION_UPDATE: Final = "self_update.update"
# Downloading 35 MB over a slow link, checking and staging it.
ACTION_TIMEOUT_SECONDS: Final = 900.0
# A rolled-back update is told to the hub that may ask for updates here.
READS: Final = Reads(state={"facts": CAP_AGENT_UPDATE_READ}, metrics={})
# Time for the job result to reach the hub before the agent exits to restart as the new version.
RESTART_DELAY_SECONDS: Final = 2.0
