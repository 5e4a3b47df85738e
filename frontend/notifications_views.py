"""The dashboard's Notifications page: receivers (with "send test"), the outbox's pending and dead notifications, retry."""

from __future__ import annotations

from aiohttp import web

from .views import _hub, _render


async def notifications_page(request: web.Request) -> web.Response:
    from roost.core.hub.notify import outbox_view
    from roost.core.hub.permissions import can

    hub = _hub(request)
    notifier = hub.notifications
    counts = await hub.store.outbox_counts()
    receivers = [notifier.receiver_view(r, counts.get(r["name"])) for r in notifier.receivers.values()]
    dead = [outbox_view(r) for r in await hub.store.outbox_list(states=["dead"], limit=200)]
    pending = [outbox_view(r) for r in await hub.store.outbox_list(states=["pending"], limit=200)]
    context = {
        "page": "notifications",
        "receivers": receivers,
        "kinds": notifier.kinds_view(),
        "dead": dead,
        "pending": pending,
        "can_manage": can(request, "notifications.manage"),
    }
    return _render(request, "notifications/page.html", context)


def setup(app: web.Application) -> None:
    app.router.add_get("/notifications", notifications_page, name="notifications")
