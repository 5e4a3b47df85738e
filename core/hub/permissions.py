"""Who may see and do what on the hub: one table for the JSON API and the dashboard's pages alike, enforced by one middleware.

Each permission names the lowest role that has it, says in words what it
allows, and lists the dashboard pages and API routes it covers (routes as
registered, ``"METHOD /path/{param}"``). A page shows what its API
counterparts return, so both sit under the same permission and a user
sees on a page exactly what the API would give them.

``permission_middleware`` refuses a request below the permission its route
needs before the handler runs (403, or the dashboard's "Not allowed" page).
Views decide which controls to render with ``can(request, name)``; the API
checks again on every change. Handlers may still check a role themselves
(``@requires``) as a floor; a test keeps every route in this table and
every page equal to its API counterpart for each role.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from roost.core.store.users import ROLE_ADMIN, ROLE_OPERATOR, ROLE_VIEWER


@dataclass(frozen=True)
class Permission:
    role: str  # the lowest role that has it
    what: str  # what it allows, as the refusal says it ("seeing join tokens")
    pages: tuple[str, ...] = ()
    api: tuple[str, ...] = ()


PERMISSIONS: dict[str, Permission] = {
    "nodes.view": Permission(
        ROLE_VIEWER,
        "seeing nodes, their state, history, grants and integrations",
        pages=(
            "/", "/nodes/{node_id}", "/integrations", "/search", "/containers", "/containers/{node_id}/{container}", "/proxmox", "/proxmox/{node_id}/guests/{vmid}",
            "/storage", "/storage/{node_id}/{device}", "/storage/manifest/{node_id}",
        ),
        api=(
            "GET /api/v1/nodes",
            "GET /api/v1/nodes/{node_id}",
            "GET /api/v1/nodes/{node_id}/series",
            "GET /api/v1/nodes/{node_id}/metrics",
            "GET /api/v1/nodes/{node_id}/grants",
            "GET /api/v1/nodes/{node_id}/wake",
            "GET /api/v1/integrations",
            "GET /api/v1/events",
            "GET /api/v1/prometheus/targets",
            "GET /api/agents/docker/hosts",
            "GET /api/agents/docker/hosts/{host_id}/containers",
            "GET /api/agents/docker/hosts/{host_id}/containers/{container_id}",
            "GET /api/v1/integrations/storage",
            "GET /api/v1/integrations/storage/nodes/{node_id}",
            "GET /api/v1/integrations/storage/devices/{node_id}/{device}",
            "GET /api/v1/integrations/storage/manifests/{node_id}",
        ),
    ),
    "storage.acknowledge": Permission(
        ROLE_OPERATOR,
        "acknowledging a disk's SMART reasons",
        api=("POST /api/v1/integrations/storage/acknowledgements", "DELETE /api/v1/integrations/storage/acknowledgements"),
    ),
    # A manifest says where storage.mount may mount a drive.
    "storage.manifest": Permission(ROLE_ADMIN, "changing a node's expected storage targets", api=("PUT /api/v1/integrations/storage/manifests/{node_id}",)),
    "jobs.view": Permission(
        ROLE_VIEWER,
        "seeing jobs, schedules and the actions nodes offer",
        pages=("/jobs", "/jobs/{job_id}", "/schedules"),
        api=("GET /api/v1/jobs", "GET /api/v1/jobs/{job_id}", "GET /api/v1/schedules", "GET /api/v1/nodes/{node_id}/actions"),
    ),
    "jobs.run": Permission(
        ROLE_OPERATOR,
        "running actions, cancelling jobs and changing schedules",
        api=(
            "POST /api/v1/nodes/{node_id}/actions/{action}",
            "POST /api/v1/nodes/{node_id}/actions/{action}/envelope",
            "POST /api/v1/jobs/{job_id}/cancel",
            "POST /api/v1/schedules",
            "PATCH /api/v1/schedules/{schedule_id}",
            "DELETE /api/v1/schedules/{schedule_id}",
        ),
    ),
    "automations.view": Permission(
        ROLE_VIEWER,
        "seeing automations, their runs, traces and approvals",
        pages=("/automations", "/automations/runs/{run_id}", "/automations/approvals/{approval_id}"),
        api=(
            "GET /api/v1/automations",
            "GET /api/v1/automations/kinds",
            "GET /api/v1/automations/blueprints",
            "GET /api/v1/automations/{automation_id}",
            "GET /api/v1/automations/{automation_id}/runs",
            "GET /api/v1/automation-runs",
            "GET /api/v1/automation-runs/{run_id}",
            "GET /api/v1/approvals",
            "GET /api/v1/approvals/{approval_id}",
        ),
    ),
    "automations.manage": Permission(
        ROLE_OPERATOR,
        "creating, changing, running and cancelling automations",
        pages=("/automations/edit/{automation_id}",),
        api=(
            "POST /api/v1/automations",
            "POST /api/v1/automations/validate",
            "POST /api/v1/automations/blueprints/{name}",
            "PUT /api/v1/automations/{automation_id}",
            "DELETE /api/v1/automations/{automation_id}",
            "POST /api/v1/automations/{automation_id}/enable",
            "POST /api/v1/automations/{automation_id}/disable",
            "POST /api/v1/automations/{automation_id}/run",
            "POST /api/v1/automation-runs/{run_id}/cancel",
        ),
    ),
    "automations.approve": Permission(ROLE_OPERATOR, "deciding automations' approvals", api=("POST /api/v1/approvals/{approval_id}",)),
    "alerts.view": Permission(
        ROLE_VIEWER,
        "seeing alerts, their history, rules, silences, maintenance windows and node labels",
        pages=("/alerts",),
        api=(
            "GET /api/v1/alerts",
            "GET /api/v1/alerts/history",
            "GET /api/v1/alerts/events",
            "GET /api/v1/alerts/kinds",
            "GET /api/v1/alerts/rules",
            "GET /api/v1/alerts/rules/{rule_id}",
            "GET /api/v1/alerts/silences",
            "GET /api/v1/alerts/maintenance",
            "GET /api/v1/nodes/{node_id}/labels",
        ),
    ),
    "alerts.respond": Permission(
        ROLE_OPERATOR,
        "acknowledging and snoozing alerts, and adding or expiring silences",
        api=(
            "POST /api/v1/alerts/instances/{instance_id}/ack",
            "POST /api/v1/alerts/instances/{instance_id}/snooze",
            "POST /api/v1/alerts/silences",
            "DELETE /api/v1/alerts/silences/{silence_id}",
        ),
    ),
    "alerts.configure": Permission(
        ROLE_ADMIN,
        "changing alert rules, maintenance windows and node labels",
        api=(
            "POST /api/v1/alerts/rules",
            "POST /api/v1/alerts/rules/preview",
            "PUT /api/v1/alerts/rules/{rule_id}",
            "DELETE /api/v1/alerts/rules/{rule_id}",
            "POST /api/v1/alerts/maintenance",
            "PUT /api/v1/alerts/maintenance/{window_id}",
            "DELETE /api/v1/alerts/maintenance/{window_id}",
            "PUT /api/v1/nodes/{node_id}/labels",
        ),
    ),
    "nodes.wake": Permission(ROLE_OPERATOR, "waking nodes", api=("POST /api/v1/nodes/{node_id}/wake",)),
    "pairing.view": Permission(
        ROLE_ADMIN,
        "seeing pairing requests, their codes and the agents announcing themselves",
        pages=("/pairing",),
        api=("GET /api/v1/pairing",),
    ),
    "pairing.decide": Permission(
        ROLE_ADMIN,
        "approving and rejecting pairing requests",
        api=("POST /api/v1/pairing/{request_id}/approve", "POST /api/v1/pairing/{request_id}/reject"),
    ),
    "join_tokens.view": Permission(ROLE_ADMIN, "seeing join tokens", pages=("/join-tokens",), api=("GET /api/v1/join-tokens",)),
    "join_tokens.manage": Permission(
        ROLE_ADMIN, "creating and revoking join tokens", api=("POST /api/v1/join-tokens", "DELETE /api/v1/join-tokens/{token_id}")
    ),
    "pings.view": Permission(
        ROLE_VIEWER,
        "seeing ping checks, where they stand and when they were pinged",
        pages=("/pings", "/pings/{check_id}"),
        api=("GET /api/v1/integrations/ping/checks", "GET /api/v1/integrations/ping/checks/{check_id}"),
    ),
    "pings.manage": Permission(
        ROLE_OPERATOR,
        "creating, changing and deleting ping checks and their ping URLs",
        api=(
            "POST /api/v1/integrations/ping/checks",
            "PATCH /api/v1/integrations/ping/checks/{check_id}",
            "POST /api/v1/integrations/ping/checks/{check_id}/rotate",
            "DELETE /api/v1/integrations/ping/checks/{check_id}",
        ),
    ),
    "api.reference": Permission(
        ROLE_VIEWER,
        "reading the API reference",
        pages=("/api-reference",),
        api=("GET /api/v1/openapi.json",),
    ),
    "updates.view": Permission(ROLE_VIEWER, "seeing node versions against the newest release", pages=("/updates",), api=("GET /api/v1/updates",)),
    "updates.run": Permission(ROLE_OPERATOR, "starting agent updates", api=("POST /api/v1/updates",)),
    "notifications.view": Permission(
        ROLE_VIEWER,
        "seeing notification receivers (never their secrets) and the outbox",
        pages=("/notifications",),
        api=("GET /api/v1/alerts/receivers", "GET /api/v1/alerts/receivers/{receiver}", "GET /api/v1/alerts/outbox"),
    ),
    "notifications.send": Permission(
        ROLE_OPERATOR, "sending a one-off message to the notification receivers", api=("POST /api/v1/alerts/notifications",)
    ),
    "notifications.manage": Permission(
        ROLE_ADMIN,
        "creating, changing, testing and deleting notification receivers and retrying dead notifications",
        api=(
            "POST /api/v1/alerts/receivers",
            "PATCH /api/v1/alerts/receivers/{receiver}",
            "DELETE /api/v1/alerts/receivers/{receiver}",
            "POST /api/v1/alerts/receivers/{receiver}/test",
            "POST /api/v1/alerts/outbox/{outbox_id}/retry",
        ),
    ),
    "grants.change": Permission(ROLE_ADMIN, "changing what a node is granted", api=("PUT /api/v1/nodes/{node_id}/grants",)),
    "nodes.revoke": Permission(ROLE_ADMIN, "revoking nodes", api=("POST /api/v1/nodes/{node_id}/revoke",)),
    "backups.view": Permission(
        ROLE_VIEWER,
        "seeing backup policies, repositories, snapshots and their verdicts",
        pages=("/backups", "/backups/{node_id}/{repository}"),
        api=(
            "GET /api/v1/integrations/backup/overview",
            "GET /api/v1/integrations/backup/policies",
            "GET /api/v1/integrations/backup/policies/{policy_id}",
            "GET /api/v1/integrations/backup/nodes/{node_id}/repositories/{repository}",
        ),
    ),
    "backups.manage": Permission(
        ROLE_OPERATOR,
        "changing backup policies and running backups, checks, restore tests, retention and restores",
        api=(
            "POST /api/v1/integrations/backup/policies",
            "PUT /api/v1/integrations/backup/policies/{policy_id}",
            "DELETE /api/v1/integrations/backup/policies/{policy_id}",
            "POST /api/v1/integrations/backup/nodes/{node_id}/repositories/{repository}/run",
            "POST /api/v1/integrations/backup/nodes/{node_id}/repositories/{repository}/snapshots",
            "POST /api/v1/integrations/backup/nodes/{node_id}/repositories/{repository}/verify",
            "POST /api/v1/integrations/backup/nodes/{node_id}/repositories/{repository}/restore-test",
            "POST /api/v1/integrations/backup/nodes/{node_id}/repositories/{repository}/prune/preview",
            "POST /api/v1/integrations/backup/nodes/{node_id}/repositories/{repository}/prune",
            "POST /api/v1/integrations/backup/nodes/{node_id}/repositories/{repository}/retention/approve",
            "POST /api/v1/integrations/backup/nodes/{node_id}/repositories/{repository}/retention/revoke",
            "POST /api/v1/integrations/backup/nodes/{node_id}/repositories/{repository}/restore",
        ),
    ),
    "push_tokens.manage": Permission(
        ROLE_ADMIN,
        "seeing, creating and revoking push tokens",
        api=("GET /api/v1/push-tokens", "POST /api/v1/push-tokens", "DELETE /api/v1/push-tokens/{token_id}"),
    ),
    "audit.view": Permission(
        ROLE_ADMIN, "reading the audit log", pages=("/audit",), api=("GET /api/v1/audit", "GET /api/v1/audit/head", "GET /api/v1/audit/verify")
    ),
    "users.manage": Permission(
        ROLE_ADMIN,
        "seeing and changing users",
        pages=("/users",),
        api=("GET /api/v1/users", "POST /api/v1/users", "PATCH /api/v1/users/{user_id}", "DELETE /api/v1/users/{user_id}", "POST /users", "POST /users/{user_id}"),
    ),
    "account.own": Permission(
        ROLE_VIEWER,
        "using one's own account: session, password and API tokens",
        pages=("/account",),
        api=(
            "GET /api/v1/session",
            "DELETE /api/v1/session",
            "POST /api/v1/account/password",
            "GET /api/v1/tokens",
            "POST /api/v1/tokens",
            "DELETE /api/v1/tokens/{token_id}",
            "POST /logout",
            "POST /account/password",
            "POST /account/tokens",
            "POST /account/tokens/{token_id}/revoke",
        ),
    ),
}


def _index() -> dict[str, str]:
    routes: dict[str, str] = {}
    for name, permission in PERMISSIONS.items():
        for route in (*(f"GET {page}" for page in permission.pages), *permission.api):
            if route in routes:
                raise ValueError(f"{route} is listed under both {routes[route]} and {name}")
            routes[route] = name
    return routes


ROUTES: dict[str, str] = _index()


def route_key(request: web.Request) -> str:
    """``"METHOD /registered/{path}"`` of the route that matched (HEAD as GET), or '' when none did."""
    route = request.match_info.route
    resource = getattr(route, "resource", None)
    if resource is None:
        return ""
    method = "GET" if request.method == "HEAD" else request.method
    return f"{method} {resource.canonical}"


def permission_for(request: web.Request) -> str | None:
    return ROUTES.get(route_key(request))


def allows(identity: Any, name: str) -> bool:
    """Whether this identity (``roost.core.hub.auth.Identity``) has the permission."""
    return identity is not None and identity.allows(PERMISSIONS[name].role)


def can(request: web.Request, name: str) -> bool:
    """For views: whether to render what needs this permission."""
    from .auth import IDENTITY_KEY

    return allows(request.get(IDENTITY_KEY), name)


def check(request: web.Request, name: str) -> None:
    """Raise 401/403 (the same way ``require`` does) unless the request has the permission."""
    from .auth import AccessDenied, require

    permission = PERMISSIONS[name]
    identity = require(request, ROLE_VIEWER)
    if allows(identity, name):
        return
    who = "this API token acts as" if identity.token is not None and identity.user.role != identity.role else f"{identity.name} is"
    raise AccessDenied(request, f"{permission.what} needs the {permission.role} role and {who} {identity.role}; ask an admin")


@web.middleware
async def permission_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    name = permission_for(request)
    if name is not None:
        check(request, name)
    return await handler(request)


def setup(app: web.Application) -> None:
    """Enforce the table on every request; call right after ``auth.setup`` (its middleware must run first)."""
    app.middlewares.append(permission_middleware)
