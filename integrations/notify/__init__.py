"""Built-in notification receivers (hub only): a signed webhook, email over SMTP, MQTT and Prometheus Alertmanager."""

from __future__ import annotations

from roost.core import hookimpl
from roost.core.hub_integration import HubContext, NotificationReceiver

from .receivers import RECEIVERS


@hookimpl
def roost_hub_notification_receivers(ctx: HubContext) -> list[NotificationReceiver]:
    return list(RECEIVERS)
