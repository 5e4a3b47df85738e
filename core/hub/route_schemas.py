"""What each core route of the API takes and answers, for the OpenAPI document: the voluptuous schemas its handler
validates with, by the same ``"METHOD /path/{param}"`` key as the permission table (roost.core.hub.permissions).

Adding a route: put it in the permission table (who may call it), then here
with its summary, ``query`` and/or ``body`` (the very schema object the
handler calls, imported, never a copy) and ``content`` when it answers
other than JSON. An integration's
``ApiRoute`` needs nothing here: its ``schema`` is used. A route missing
here is still in the document, marked ``x-roost-undescribed``, and
tests/core/hub/test_openapi.py names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import voluptuous as vol

from roost.integrations.docker.archnest import REPORT_SCHEMA

from . import alert_rules, alerts_api, api, audit, auth, automations_api, gateway, jobs_api, jointokens, notify, pairing, push, wake

TEXT = "text/plain"


@dataclass(frozen=True)
class RouteSchema:
    summary: str = ""
    # The voluptuous schema of the query string (GET, DELETE) and of the JSON body (POST, PUT, PATCH).
    query: Any = None
    body: Any = None
    body_required: bool = True
    # The success answer (any 2xx): its media type and (for JSON) a JSON Schema dict or a voluptuous schema.
    content: str = "application/json"
    response: Any = None


# Query parameters a handler reads one by one (no schema of its own), stated once here.
NODE_FILTER = vol.Schema({vol.Optional("node_id"): vol.All(str, vol.Length(max=64))})
SCHEDULE_FILTER = vol.Schema({vol.Optional("node"): vol.All(str, vol.Length(max=64))})
TOKENS_FILTER = vol.Schema({vol.Optional("all"): vol.In(["1", "true", "0", "false"])})
NONCE = vol.Schema({vol.Required("nonce"): vol.All(str, vol.Length(min=16, max=128))})
UPDATES = vol.Schema({vol.Optional("nodes"): vol.All([str], vol.Length(max=10_000))})
S = RouteSchema

SCHEMAS: dict[str, RouteSchema] = {
    # api.py
    "GET /api/v1/health": S("liveness: {\"status\": \"ok\"}, plus the version for a logged-in caller"),
    "GET /api/v1/nodes": S("every node with its status and headline metrics"),
    "GET /api/v1/nodes/{node_id}": S("one node: facts, integration states, capabilities, latest state and metrics"),
    "GET /api/v1/nodes/{node_id}/series": S("the metric series the node has history for"),
    "GET /api/v1/nodes/{node_id}/metrics": S("history of some series as [ts, avg, min, max] points", query=api.HISTORY_QUERY),
    "GET /api/v1/integrations": S("integration states on the hub and on every node"),
    "GET /api/v1/events": S("server-sent events: node, pairing, job, alert… and a ping every 15 s", content="text/event-stream"),
    "GET /api/v1/ca.pem": S("the hub's CA certificate", content="application/x-pem-file"),
    # gateway.py: agents
    "POST /api/v1/enroll": S("an agent trades a join token for a node id, signed by the key it enrols", body=gateway.ENROLL_SCHEMA),
    "GET /api/v1/hub-identity": S("the hub signs the caller's nonce with its identity key", query=NONCE),
    "GET /api/v1/agent/ws": S("the agent WebSocket (docs/protocol.md)", content="application/octet-stream"),
    # auth.py: session, account, users, tokens
    "POST /api/v1/session": S("log in: sets the session cookie, answers the user and the CSRF token", body=auth.LOGIN_SCHEMA),
    "GET /api/v1/session": S("who is logged in, and the CSRF token"),
    "DELETE /api/v1/session": S("log out"),
    "POST /api/v1/account/password": S("change one's own password; other sessions end", body=auth.PASSWORD_SCHEMA),
    "GET /api/v1/users": S("every user (admins)"),
    "POST /api/v1/users": S("add a user (admins)", body=auth.NEW_USER_SCHEMA),
    "PATCH /api/v1/users/{user_id}": S("change a user's role, state or password (admins)", body=auth.CHANGE_USER_SCHEMA),
    "DELETE /api/v1/users/{user_id}": S("delete a user (admins)"),
    "GET /api/v1/tokens": S("one's API tokens (admins: all=1 for everyone's)", query=TOKENS_FILTER),
    "POST /api/v1/tokens": S("create an API token, answered once", body=auth.NEW_TOKEN_SCHEMA),
    "DELETE /api/v1/tokens/{token_id}": S("revoke an API token"),
    # pairing.py
    "GET /api/v1/pairing": S("pending pairing requests, unpaired agents seen over zeroconf, the CA fingerprint"),
    "POST /api/v1/pairing/{request_id}/approve": S("approve a pairing request", body=pairing.APPROVE_SCHEMA, body_required=False),
    "POST /api/v1/pairing/{request_id}/reject": S("reject a pairing request", body=pairing.REJECT_SCHEMA, body_required=False),
    "GET /api/v1/nodes/{node_id}/grants": S("a node's grant, ceiling and effective set"),
    "PUT /api/v1/nodes/{node_id}/grants": S("change what a node is granted (pushed to its agent at once)", body=pairing.GRANTS_SCHEMA),
    "POST /api/v1/nodes/{node_id}/revoke": S("revoke a node: its socket closes and it cannot come back"),
    # jointokens.py, push.py
    "GET /api/v1/join-tokens": S("join tokens"),
    "POST /api/v1/join-tokens": S("create a join token, answered once with the agent command", body=jointokens.CREATE_SCHEMA),
    "DELETE /api/v1/join-tokens/{token_id}": S("revoke a join token"),
    "GET /api/v1/push-tokens": S("script-only push nodes' tokens"),
    "POST /api/v1/push-tokens": S("create a push token, answered once", body=push.CREATE_SCHEMA),
    "DELETE /api/v1/push-tokens/{token_id}": S("revoke a push token"),
    "POST /api/v1/push/{domain}": S("a push node's report, with Authorization: Bearer rpt_... instead of a login", body=push._body_schema("docker")),
    "POST /api/agents/docker/report": S("an ArchNest-style push agent's report, Authorization: Bearer rpt_...", body=REPORT_SCHEMA),
    "GET /api/agents/docker/hosts": S("ArchNest push hosts", response={"type": "array"}),
    "GET /api/agents/docker/hosts/{host_id}/containers": S("one push host's containers", response={"type": "array"}),
    "GET /api/agents/docker/hosts/{host_id}/containers/{container_id}": S("one container of a push host"),
    # jobs_api.py
    "GET /api/v1/nodes/{node_id}/actions": S("the node's actions with parameter forms, and whether its grant and ceiling allow each"),
    "POST /api/v1/nodes/{node_id}/actions/{action}": S("run an action as a job; a destructive one needs a signed envelope", body=jobs_api.RUN_SCHEMA),
    "POST /api/v1/nodes/{node_id}/actions/{action}/envelope": S("the unsigned envelope of one run of a destructive action", body=jobs_api.ENVELOPE_SCHEMA),
    "GET /api/v1/jobs": S("jobs, newest first", query=jobs_api.LIST_QUERY),
    "GET /api/v1/jobs/{job_id}": S("one job with its output"),
    "POST /api/v1/jobs/{job_id}/cancel": S("cancel a job"),
    "GET /api/v1/schedules": S("cron schedules with their next run", query=SCHEDULE_FILTER),
    "POST /api/v1/schedules": S("add a cron schedule", body=jobs_api.SCHEDULE_SCHEMA),
    "PATCH /api/v1/schedules/{schedule_id}": S("enable or disable a schedule", body=jobs_api.PATCH_SCHEDULE),
    "DELETE /api/v1/schedules/{schedule_id}": S("delete a schedule"),
    # wake.py
    "GET /api/v1/nodes/{node_id}/wake": S("the node's MACs, possible relays and where the hub may send"),
    "POST /api/v1/nodes/{node_id}/wake": S("wake a node from the hub or through a relay", body=wake.WAKE_SCHEMA, body_required=False),
    # audit.py
    "GET /api/v1/audit": S("audit entries, newest first", query=audit.QUERY_SCHEMA),
    "GET /api/v1/audit/head": S("the audit log's head"),
    "GET /api/v1/audit/verify": S("verify the whole audit chain"),
    # downloads.py
    "GET /api/v1/updates": S("every node's agent version against the newest release"),
    "POST /api/v1/updates": S("start self_update.update jobs on the nodes named, or every outdated one", body=UPDATES, body_required=False),
    "GET /install.sh": S("the agent install script for this hub", content="text/x-shellscript"),
    "GET /download/{name}": S("the signed release the hub holds: executable, manifest or signature", content="application/octet-stream"),
    # prometheus.py, mcp_http.py
    "GET /metrics": S("Prometheus exposition of every node", content=TEXT),
    "GET /metrics/nodes/{node_id}": S("Prometheus exposition of one node", content=TEXT),
    "GET /api/v1/prometheus/targets": S("Prometheus HTTP service discovery: one target per node", response={"type": "array"}),
    "POST /mcp": S("MCP over streamable HTTP for AI assistants (docs/mcp.md)", body=dict),
    # alerts_api.py
    "GET /api/v1/alerts": S("firing and pending alerts", query=NODE_FILTER),
    "GET /api/v1/alerts/history": S("alert instances, with filters", query=alerts_api.HISTORY_QUERY),
    "GET /api/v1/alerts/events": S("the alert event log after a sequence number", query=alerts_api.EVENTS_QUERY),
    "POST /api/v1/alerts/instances/{instance_id}/ack": S("acknowledge an alert, with a note", body=alerts_api.ACK, body_required=False),
    "POST /api/v1/alerts/instances/{instance_id}/snooze": S("snooze an alert until a time or for a while", body=alerts_api.SNOOZE),
    "GET /api/v1/alerts/kinds": S("the rule kinds the hub and its integrations judge"),
    "GET /api/v1/alerts/rules": S("alert rules"),
    "POST /api/v1/alerts/rules": S("create an alert rule", body=alert_rules.RULE),
    "POST /api/v1/alerts/rules/preview": S("what a rule would match right now", body=alert_rules.RULE),
    "GET /api/v1/alerts/rules/{rule_id}": S("one alert rule"),
    "PUT /api/v1/alerts/rules/{rule_id}": S("replace an alert rule", body=alert_rules.RULE),
    "DELETE /api/v1/alerts/rules/{rule_id}": S("delete an alert rule"),
    "GET /api/v1/alerts/silences": S("silences"),
    "POST /api/v1/alerts/silences": S("add a silence", body=alert_rules.SILENCE),
    "DELETE /api/v1/alerts/silences/{silence_id}": S("expire a silence"),
    "GET /api/v1/alerts/maintenance": S("maintenance windows"),
    "POST /api/v1/alerts/maintenance": S("add a maintenance window", body=alert_rules.WINDOW),
    "PUT /api/v1/alerts/maintenance/{window_id}": S("replace a maintenance window", body=alert_rules.WINDOW),
    "DELETE /api/v1/alerts/maintenance/{window_id}": S("delete a maintenance window"),
    "GET /api/v1/nodes/{node_id}/labels": S("a node's labels, set here and from its agent's config"),
    "PUT /api/v1/nodes/{node_id}/labels": S("set a node's labels", body=alerts_api.NODE_LABELS),
    # notify.py
    "GET /api/v1/alerts/receivers": S("notification receivers and the routes that send to them (admins)"),
    "POST /api/v1/alerts/receivers": S("add a notification receiver (admins)", body=notify.CREATE_SCHEMA),
    "GET /api/v1/alerts/receivers/{receiver}": S("one receiver, its secrets never shown"),
    "PATCH /api/v1/alerts/receivers/{receiver}": S("change a receiver (admins)", body=notify.CHANGE_SCHEMA),
    "DELETE /api/v1/alerts/receivers/{receiver}": S("delete a receiver (admins)"),
    "POST /api/v1/alerts/receivers/{receiver}/test": S("send a test notification through a receiver"),
    "POST /api/v1/alerts/notifications": S("queue a one-off notification in the outbox", body=notify.SEND_SCHEMA),
    "GET /api/v1/alerts/outbox": S("the notification outbox: queued, sent and dead-lettered messages"),
    "POST /api/v1/alerts/outbox/{outbox_id}/retry": S("retry a dead-lettered notification"),
    # automations_api.py
    "GET /api/v1/automations": S("automations with their state, and the files of the config dir that were refused"),
    "POST /api/v1/automations": S("create an automation (operators): a definition, or the editor's YAML/TOML text", body=automations_api.DEFINITION_BODY),
    "GET /api/v1/automations/kinds": S("the trigger, condition and step kinds automations may use, with their settings"),
    "POST /api/v1/automations/validate": S("check a definition without saving it; answers it in every text format", body=automations_api.DEFINITION_BODY),
    "GET /api/v1/automations/blueprints": S("the built-in blueprints and the inputs each takes"),
    "POST /api/v1/automations/blueprints/{name}": S("make an automation from a blueprint (operators)", body=automations_api.BLUEPRINT_BODY),
    "POST /api/v1/automations/webhook/{secret}": S("start the automations whose webhook trigger has this unguessable URL", body=vol.Schema(dict, extra=vol.ALLOW_EXTRA), body_required=False),
    "GET /api/v1/automations/{automation_id}": S("one automation"),
    "PUT /api/v1/automations/{automation_id}": S("replace an automation (operators)", body=automations_api.DEFINITION_BODY),
    "DELETE /api/v1/automations/{automation_id}": S("delete an automation (operators)"),
    "POST /api/v1/automations/{automation_id}/enable": S("enable an automation (operators)", body_required=False),
    "POST /api/v1/automations/{automation_id}/disable": S("disable an automation (operators)", body_required=False),
    "POST /api/v1/automations/{automation_id}/run": S("run an automation now with test trigger data, or dry-run it", body=automations_api.RUN_SCHEMA, body_required=False),
    "GET /api/v1/automations/{automation_id}/runs": S("an automation's runs, newest first", query=automations_api.RUNS_QUERY),
    "GET /api/v1/automation-runs": S("every automation's runs, newest first", query=automations_api.RUNS_QUERY),
    "GET /api/v1/automation-runs/{run_id}": S("one run with its trace: trigger data, each step's input, result and duration"),
    "POST /api/v1/automation-runs/{run_id}/cancel": S("stop a run (operators)", body_required=False),
    "GET /api/v1/approvals": S("approvals automations wait for", query=automations_api.APPROVALS_QUERY),
    "GET /api/v1/approvals/{approval_id}": S("one approval with what it would let run"),
    "POST /api/v1/approvals/{approval_id}": S("approve or deny (an operator or admin logged in to the dashboard; never an API token)", body=automations_api.DECIDE_SCHEMA),
    # openapi.py
    "GET /api/v1/openapi.json": S("this document"),
}
