"""Proxmox API failures turned into messages a homelab user can act on, with the token secret kept out of them."""

from __future__ import annotations

import re
from typing import Any

# What went wrong, for code that reacts differently (fail over, mark a node, stop collecting).
KIND_AUTH = "auth"
KIND_PERMISSION = "permission"
KIND_UNREACHABLE = "unreachable"
KIND_TIMEOUT = "timeout"
KIND_TLS = "tls"
KIND_QUORUM = "quorum"
KIND_NODE_OFFLINE = "node_offline"
KIND_DEADLINE = "deadline"
KIND_NOT_FOUND = "not_found"
KIND_API = "api"

# Kinds where another host of the cluster may answer.
CONNECTION_KINDS = frozenset({KIND_UNREACHABLE, KIND_TIMEOUT, KIND_TLS})

# A role that holds the privilege, for the hint in the message.
ROLE_FOR_PRIVILEGE = {
    "Sys.Audit": "PVEAuditor",
    "VM.Audit": "PVEAuditor",
    "Datastore.Audit": "PVEAuditor",
    "VM.PowerMgmt": "PVEVMUser",
    "VM.Backup": "PVEVMUser",
    "VM.Console": "PVEVMUser",
    "VM.Snapshot": "PVEVMAdmin",
    "VM.Snapshot.Rollback": "PVEVMAdmin",
    "VM.Allocate": "PVEVMAdmin",
    "VM.Config.Disk": "PVEVMAdmin",
    "Datastore.AllocateSpace": "PVEDatastoreUser",
    "Datastore.Allocate": "PVEDatastoreAdmin",
}

_PERMISSION_RE = re.compile(r"Permission check failed \(([^,()]*),\s*([^()]+)\)")
# urllib3 puts the connection object's repr in front of the reason.
_CONNECTION_REPR_RE = re.compile(r"<[^>]+ object at 0x[0-9a-f]+>:?\s*")
_MAX_MESSAGE = 600


class ProxmoxApiError(Exception):
    """A failed Proxmox API call; ``str()`` is the message for the user, ``kind`` says what failed."""

    def __init__(
        self,
        message: str,
        *,
        kind: str = KIND_API,
        status: int | None = None,
        privilege: str | None = None,
        acl_path: str | None = None,
        detail: str = "",
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.privilege = privilege
        self.acl_path = acl_path
        # What Proxmox itself said, without Roost's advice around it.
        self.detail = detail

    @property
    def message(self) -> str:
        return str(self)


def redact(text: str, *secrets: str | None) -> str:
    """The text with every secret replaced by ***, and cut to a readable length."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    if len(text) > _MAX_MESSAGE:
        text = text[: _MAX_MESSAGE - 1] + "…"
    return text


def parse_permission(text: str) -> tuple[str, str] | None:
    """(ACL path, privilege) from PVE's 'Permission check failed (/vms/100, VM.Audit)', or None."""
    match = _PERMISSION_RE.search(text)
    if not match:
        return None
    path = match.group(1).strip() or "/"
    privilege = match.group(2).strip()
    return path, privilege


def permission_hint(token_id: str, privilege: str, acl_path: str) -> str:
    """How to grant a privilege to the token, in Proxmox's own terms."""
    first = privilege.split("|")[0]
    role = ROLE_FOR_PRIVILEGE.get(first)
    role_text = f" (the {role} role has it)" if role else ""
    return (
        f"grant {privilege} on {acl_path} to {token_id}{role_text} under Datacenter → Permissions; "
        "a token with privilege separation needs the permission on the token itself"
    )


def _reason(err: BaseException) -> str:
    """The innermost useful reason of a requests/urllib3 error, without object reprs and URLs."""
    seen = 0
    current: Any = err
    while seen < 5:
        seen += 1
        inner = getattr(current, "reason", None)
        if isinstance(inner, BaseException):
            current = inner
            continue
        args = getattr(current, "args", ())
        if args and isinstance(args[0], BaseException):
            current = args[0]
            continue
        break
    text = str(current) or type(current).__name__
    text = _CONNECTION_REPR_RE.sub("", text)
    return text.strip().strip("'\"()") or type(current).__name__


def translate(
    err: BaseException,
    *,
    what: str,
    token_id: str,
    host: str,
    port: int,
    secret: str | None = None,
    timeout: float | None = None,
    node: str | None = None,
    service: str = "Proxmox",
) -> ProxmoxApiError:
    """Turn an exception from proxmoxer or requests into a ProxmoxApiError that says what to do.

    ``what`` names the read or action ("read the guests", "start guest 100") for the message.
    """
    import requests
    from proxmoxer.core import AuthenticationError, ResourceException

    where = f"{host}:{port}"

    def make(message: str, **kwargs: Any) -> ProxmoxApiError:
        kwargs["detail"] = redact(kwargs.get("detail", ""), secret)
        return ProxmoxApiError(redact(message, secret), **kwargs)

    if isinstance(err, ProxmoxApiError):
        return err
    if isinstance(err, ResourceException):
        status = int(err.status_code or 0)
        said = " ".join(str(part) for part in (err.content or "", err.errors or "") if part).strip()
        said = said or (err.status_message or "")
        permission = parse_permission(said)
        if status == 401:
            return make(
                f"{service}: {where} refused the API token {token_id} ({status} {said.strip()}) — it may have "
                "expired, been deleted or disabled, or token_secret is wrong; check it under Datacenter → "
                "Permissions → API Tokens",
                kind=KIND_AUTH,
                status=status,
                detail=said,
            )
        if status == 403 or permission:
            if permission:
                acl_path, privilege = permission
                return make(
                    f"{service}: cannot {what}: the API token {token_id} lacks {privilege} on {acl_path} — "
                    + permission_hint(token_id, privilege, acl_path),
                    kind=KIND_PERMISSION,
                    status=status,
                    privilege=privilege,
                    acl_path=acl_path,
                    detail=said,
                )
            return make(
                f"{service}: cannot {what}: permission denied for the API token {token_id} ({said}) — check its "
                "permissions under Datacenter → Permissions",
                kind=KIND_PERMISSION,
                status=status,
                detail=said,
            )
        if "no quorum" in said:
            return make(
                f"{service}: cannot {what}: the cluster has lost quorum, so Proxmox refuses changes until enough "
                f"nodes are back online ({said})",
                kind=KIND_QUORUM,
                status=status,
                detail=said,
            )
        if status == 595 or "No route to host" in said:
            target = f"node {node}" if node else "the node"
            return make(
                f"{service}: cannot {what}: {target} is unreachable from {host} ({status} {said}) — it may be "
                "offline or cut off from the cluster",
                kind=KIND_NODE_OFFLINE,
                status=status,
                detail=said,
            )
        if "does not exist" in said or status == 404:
            return make(f"{service}: cannot {what}: {said}", kind=KIND_NOT_FOUND, status=status, detail=said)
        return make(f"{service}: cannot {what}: {where} answered {status} {said}", kind=KIND_API, status=status, detail=said)
    if isinstance(err, AuthenticationError):
        return make(f"{service}: {where} refused the login of {token_id}: {err}", kind=KIND_AUTH)
    if isinstance(err, requests.exceptions.SSLError):
        return make(
            f"{service}: cannot verify the TLS certificate of {where}: {_reason(err)} — set ca_file to the "
            "cluster's CA (/etc/pve/pve-root-ca.pem on a Proxmox node), or verify_ssl = false on a trusted network",
            kind=KIND_TLS,
        )
    if isinstance(err, requests.exceptions.Timeout):
        # The limit may be what was left of the cycle's deadline: no need for microseconds.
        limit = f" within {round(timeout, 2):g} s" if timeout else " in time"
        return make(
            f"{service}: {where} did not answer{limit} while trying to {what} — the API is overloaded or the "
            "network is slow; api_timeout sets the limit",
            kind=KIND_TIMEOUT,
        )
    if isinstance(err, requests.exceptions.ConnectionError):
        return make(
            f"{service}: cannot reach {where} to {what}: {_reason(err)} — check host and port, and that "
            "pveproxy runs there",
            kind=KIND_UNREACHABLE,
        )
    if isinstance(err, requests.exceptions.RequestException):
        return make(f"{service}: request to {where} failed while trying to {what}: {_reason(err)}", kind=KIND_API)
    if isinstance(err, ValueError):  # a body that is not JSON: not a Proxmox API at that address
        return make(f"{service}: {where} did not answer like a Proxmox API while trying to {what}: {err}", kind=KIND_API)
    return make(f"{service}: cannot {what}: {type(err).__name__}: {err}", kind=KIND_API)
