"""The storage alert rule kinds: a disk failing or warning, a failure counter that rose, a pool degraded or faulted, scrub errors,
a scrub overdue, an md array degraded, a listed target missing, and a target below its minimum free space.

Each handler reads the node's storage state as the hub holds it and names
each disk, pool, array or target it finds wrong (labels ``device``,
``attribute``, ``pool``, ``array``, ``target``), so one rule covers a whole
host and each thing fires and clears on its own. Disk reasons that an
operator acknowledged stay quiet until the value changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import voluptuous as vol

from roost.core.hub_integration import AlertFinding, AlertRuleKind, as_dict, as_list

from .smart import COUNTER_LABELS
from .views import TARGET_BAD, node_id_of, node_view, pool_problems, storage_state

DAY = 86400.0
HEALTH_SCHEMA = vol.Schema({vol.Optional("min_verdict", default="warning"): vol.In(["warning", "failing"], msg="min_verdict must be warning or failing")})
ATTRIBUTE_SCHEMA = vol.Schema({vol.Optional("attributes", default=list): [vol.In(sorted(COUNTER_LABELS), msg=f"must be one of {', '.join(sorted(COUNTER_LABELS))}")]})
EMPTY_SCHEMA = vol.Schema({})
OVERDUE_SCHEMA = vol.Schema({vol.Optional("max_age_days", default=35.0): vol.All(vol.Coerce(float), vol.Range(min=1, max=3650, msg="max_age_days must be between 1 and 3650"))})
TARGET_SCHEMA = vol.Schema({vol.Optional("include_elsewhere", default=True): bool})
FREE_SCHEMA = vol.Schema({vol.Optional("min_free_bytes"): vol.All(int, vol.Range(min=0, msg="min_free_bytes must be 0 or more"))})

AcksOf = Callable[[str], Mapping[str, Mapping[str, Any]]]


def _device_name(dev: Mapping[str, Any]) -> str:
    model, name = dev.get("model") or "disk", dev.get("name") or ""
    return f"{model} {dev.get('serial') or ''}".strip() + (f" ({name})" if name else "")


def device_health(acks_of: AcksOf) -> Callable[[Mapping[str, Any], Mapping[str, Any]], list[AlertFinding]]:
    def handler(settings: Mapping[str, Any], node: Mapping[str, Any]) -> list[AlertFinding]:
        found = []
        for dev in node_view(node, acks_of(node_id_of(node)))["devices"]:
            verdict = dev["verdict"]
            if verdict not in ("failing", "warning") or (settings["min_verdict"] == "failing" and verdict != "failing") or not dev.get("key"):
                continue
            why = "; ".join(r["text"] for r in dev["reasons"] if not r["acknowledged"])
            found.append(AlertFinding(f"disk {_device_name(dev)} is {verdict}: {why}", {"device": str(dev["key"])}, "critical" if verdict == "failing" else "warning"))
        return found

    return handler


def attribute_increased(acks_of: AcksOf) -> Callable[[Mapping[str, Any], Mapping[str, Any]], list[AlertFinding]]:
    def handler(settings: Mapping[str, Any], node: Mapping[str, Any]) -> list[AlertFinding]:
        wanted = set(settings["attributes"] or COUNTER_LABELS)
        found = []
        for dev in node_view(node, acks_of(node_id_of(node)))["devices"]:
            for reason in dev["reasons"]:
                if reason.get("attribute") in wanted and "baseline" in reason and not reason["acknowledged"] and dev.get("key"):
                    found.append(AlertFinding(f"disk {_device_name(dev)}: {reason['text']}", {"device": str(dev["key"]), "attribute": str(reason["attribute"])}, value=float(reason["value"])))
        return found

    return handler


def pool_degraded(settings: Mapping[str, Any], node: Mapping[str, Any]) -> list[AlertFinding]:
    found = []
    state = storage_state(node)
    for pool in as_list(as_dict(state.get("zfs")).get("pools")):
        for severity, text in pool_problems(pool):
            if text.startswith(f"pool {pool.get('name')} is "):
                found.append(AlertFinding(text, {"pool": str(pool.get("name"))}, severity))
    for fs in node_view(node, {})["pools"]:
        if fs["kind"] == "btrfs" and fs["state"] == "DEGRADED":
            found.append(AlertFinding("; ".join(fs["reasons"]), {"pool": str(fs["name"])}, "critical"))
    return found


def scrub_errors(settings: Mapping[str, Any], node: Mapping[str, Any]) -> list[AlertFinding]:
    found = []
    for pool in as_list(as_dict(storage_state(node).get("zfs")).get("pools")):
        scan = as_dict(pool.get("scan"))
        errors = scan.get("errors") if isinstance(scan.get("errors"), int) else 0
        data_errors = pool.get("data_errors") if isinstance(pool.get("data_errors"), int) else 0
        if errors or data_errors:
            what = f"the last {scan.get('function', 'scrub')} found {errors} errors" if errors else f"{data_errors} data errors"
            found.append(AlertFinding(f"pool {pool.get('name')}: {what}", {"pool": str(pool.get("name"))}, "critical", float(errors or data_errors)))
    return found


def scrub_overdue(settings: Mapping[str, Any], node: Mapping[str, Any]) -> list[AlertFinding]:
    now = float(node.get("collected_at") or 0.0)
    limit = float(settings["max_age_days"]) * DAY
    found = []
    for pool in as_list(as_dict(storage_state(node).get("zfs")).get("pools")):
        scan = as_dict(pool.get("scan"))
        if scan.get("state") == "scanning":
            continue
        ended = scan.get("ended_at") if scan.get("function") == "scrub" else None
        if not isinstance(ended, (int, float)):
            found.append(AlertFinding(f"pool {pool.get('name')} has no finished scrub on record", {"pool": str(pool.get("name"))}))
        elif now - ended > limit:
            days = (now - ended) / DAY
            found.append(AlertFinding(f"pool {pool.get('name')} was last scrubbed {days:.0f} days ago (more than {settings['max_age_days']:g})", {"pool": str(pool.get("name"))}, value=round(days, 1)))
    return found


def array_degraded(settings: Mapping[str, Any], node: Mapping[str, Any]) -> list[AlertFinding]:
    from . import mdraid

    found = []
    for array in as_list(storage_state(node).get("mdraid")):
        problems = mdraid.problems(array)
        if problems:
            severity = "critical" if any(s == "critical" for s, _ in problems) else "warning"
            found.append(AlertFinding("; ".join(t for _, t in problems), {"array": str(array.get("name"))}, severity, float(array.get("degraded_disks") or 0)))
    return found


def target_missing(settings: Mapping[str, Any], node: Mapping[str, Any]) -> list[AlertFinding]:
    found = []
    for target in as_list(storage_state(node).get("targets")):
        status = target.get("status")
        if target.get("state") != "attached" or status not in TARGET_BAD or (status == "mounted_elsewhere" and not settings["include_elsewhere"]):
            continue
        why = f": {target['reason']}" if target.get("reason") else ""
        found.append(AlertFinding(f"storage target {target.get('id')} ({target.get('durable_id')}) is {str(status).replace('_', ' ')}{why}", {"target": str(target.get("id"))}))
    return found


def target_low_free(settings: Mapping[str, Any], node: Mapping[str, Any]) -> list[AlertFinding]:
    found = []
    for target in as_list(storage_state(node).get("targets")):
        free = target.get("free_bytes")
        floor = settings.get("min_free_bytes", target.get("min_free_bytes"))
        if isinstance(free, (int, float)) and isinstance(floor, (int, float)) and free < floor:
            found.append(AlertFinding(f"storage target {target.get('id')} has {int(free)} bytes free, below its minimum of {int(floor)}", {"target": str(target.get("id"))}, value=float(free)))
    return found


def rule_kinds(acks_of: AcksOf) -> list[AlertRuleKind]:
    return [
        AlertRuleKind("storage.device_health", "a disk's SMART verdict is warning or failing (acknowledged reasons set aside until they change)", HEALTH_SCHEMA, device_health(acks_of)),
        AlertRuleKind("storage.attribute_increased", "a disk's failure counter (reallocated, pending, uncorrectable sectors, CRC or media errors) rose", ATTRIBUTE_SCHEMA, attribute_increased(acks_of)),
        AlertRuleKind("storage.pool_degraded", "a ZFS pool is degraded or faulted, or a btrfs filesystem is missing a device", EMPTY_SCHEMA, pool_degraded),
        AlertRuleKind("storage.scrub_errors", "a ZFS pool's last scrub or resilver found errors, or it has data errors", EMPTY_SCHEMA, scrub_errors),
        AlertRuleKind("storage.scrub_overdue", "a ZFS pool was not scrubbed within max_age_days", OVERDUE_SCHEMA, scrub_overdue),
        AlertRuleKind("storage.array_degraded", "an md array is degraded, has failed members or is inactive", EMPTY_SCHEMA, array_degraded),
        AlertRuleKind("storage.target_missing", "an expected storage target (attached in the manifest) is missing, unmounted, elsewhere or unreachable", TARGET_SCHEMA, target_missing),
        AlertRuleKind("storage.target_low_free", "an expected storage target has less free space than its minimum", FREE_SCHEMA, target_low_free),
    ]
