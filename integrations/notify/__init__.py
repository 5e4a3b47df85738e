"""Built-in notification receivers (hub only): a signed webhook, email over SMTP, MQTT and Prometheus Alertmanager."""

from __future__ import annotations

from roost.core import hookimpl
from roost.core.hub_integration import HubContext, NotificationReceiver

from .const import READS
from .receivers import RECEIVERS

__all__ = ["READS", "roost_hub_notification_receivers"]


@hookimpl
def roost_hub_notification_receivers(ctx: HubContext) -> list[NotificationReceiver]:
    return list(RECEIVERS)
