"""Names and defaults of the built-in notification receivers."""

from typing import Final

from roost.core.reads import Reads

# A hub-only integration: it reports nothing.
READS: Final = Reads()

DOMAIN = "notify"
KIND_WEBHOOK = "notify.webhook"
KIND_EMAIL = "notify.email"
KIND_MQTT = "notify.mqtt"
KIND_ALERTMANAGER = "notify.alertmanager"

# The webhook's signature: hex HMAC-SHA256 of "<timestamp>.<body>" with the receiver's key.
HEADER_SIGNATURE = "X-Roost-Signature"
HEADER_TIMESTAMP = "X-Roost-Timestamp"
HEADER_ID = "X-Roost-Notification-Id"
USER_AGENT = "Roost-Notifications"
DEFAULT_MQTT_TOPIC = "roost/notifications"
# How long Alertmanager keeps a firing alert without hearing of it again; Roost's repeat_interval should be shorter.
DEFAULT_FIRING_TTL = 24 * 3600.0
SMTP_TIMEOUT = 20.0
