"""Backup policies on the hub (what, when, how long to keep, how often to prove it) and the verdicts judged from what agents report.

A verdict is a pure function of a policy (or a repository's defaults), the
repository as its agent last reported it, and the clock, so it is the same
after a hub restart: the agent keeps every result until the hub has it, and
the results themselves live in the agent's report.
"""

from __future__ import annotations

import fnmatch
import re
import secrets
from collections.abc import Mapping
from typing import Any

import voluptuous as vol

from roost.core.hub_integration import as_dict, as_list

from .const import RETENTION_KEYS

HOUR = 3600.0
# A repository that no policy covers is still judged: stale after this long without a snapshot.
DEFAULT_MAX_AGE_HOURS = 48.0

FRESH = "fresh"
STALE = "stale"
FAILED = "failed"
UNVERIFIED = "unverified"
RESTORE_TEST_FAILED = "restore_test_failed"
UNKNOWN = "unknown"
# Worst first.
VERDICT_ORDER = {FAILED: 0, RESTORE_TEST_FAILED: 1, STALE: 2, UNVERIFIED: 3, UNKNOWN: 4, FRESH: 5}
VERDICT_TONES = {FAILED: "bad", RESTORE_TEST_FAILED: "bad", STALE: "warn", UNVERIFIED: "warn", UNKNOWN: "muted", FRESH: "ok"}
VERDICT_LABELS = {FAILED: "failed", RESTORE_TEST_FAILED: "restore test failed", STALE: "stale", UNVERIFIED: "unverified", UNKNOWN: "unknown", FRESH: "fresh"}

KIND_REPOSITORY = "repository"
KIND_VZDUMP = "vzdump"
KIND_PBS = "pbs"
POLICY_KINDS = (KIND_REPOSITORY, KIND_VZDUMP, KIND_PBS)

_ID_RE = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_REPO_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_PATH = vol.All(str, vol.Length(min=1, max=4096), vol.Match(r"^/", msg="must be an absolute path"))


def _cron(value: Any) -> str:
    from roost.core.hub.jobs import valid_cron

    if not isinstance(value, str) or not valid_cron(value):
        raise vol.Invalid("must be a cron expression such as '30 2 * * *' (minute hour day month weekday, the hub's time zone)")
    return value


def _hours(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 24 * 3650:
        raise vol.Invalid("must be a number of hours above 0")
    return float(value)


def _keeps_something(rule: dict[str, Any]) -> dict[str, Any]:
    if rule and not any(rule.get(k) for k in RETENTION_KEYS):
        raise vol.Invalid("a retention rule must keep something: set at least one of " + ", ".join(RETENTION_KEYS))
    return {k: v for k, v in rule.items() if v}


RETENTION = vol.All(vol.Schema({vol.Optional(k): vol.All(int, vol.Range(min=0, max=100000)) for k in RETENTION_KEYS}, extra=vol.PREVENT_EXTRA), _keeps_something)


def _target(policy: dict[str, Any]) -> dict[str, Any]:
    if not policy.get("nodes") and not policy.get("labels"):
        raise vol.Invalid("name the nodes (node ids) or the node labels this policy applies to")
    if policy["kind"] == KIND_REPOSITORY and not policy.get("repository"):
        raise vol.Invalid("a repository policy names the repository (as configured on the agent)")
    if policy["kind"] == KIND_VZDUMP and (not policy.get("guests") or not policy.get("storage")):
        raise vol.Invalid("a vzdump policy names its guests (vmids) and the storage to write to")
    if policy["kind"] == KIND_PBS and not policy.get("datastore"):
        raise vol.Invalid("a PBS policy names its datastore")
    return policy


POLICY = vol.All(
    vol.Schema(
        {
            vol.Required("name"): vol.All(str, vol.Length(min=1, max=100), vol.Match(r"^[^\x00-\x1f\x7f]+$", msg="must not contain control characters")),
            vol.Optional("kind", default=KIND_REPOSITORY): vol.In(POLICY_KINDS, msg="must be repository, vzdump or pbs"),
            vol.Optional("nodes", default=list): vol.All([vol.Match(r"^[A-Za-z0-9_-]{1,64}$", msg="must be a node id")], vol.Length(max=1000)),
            vol.Optional("labels", default=dict): {vol.Match(r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$"): vol.All(str, vol.Length(max=200))},
            vol.Optional("repository"): vol.All(str, vol.Match(_REPO_RE, msg="must be a repository name as configured on the agent")),
            vol.Optional("paths", default=list): vol.All([_PATH], vol.Length(max=100)),
            vol.Optional("excludes", default=list): vol.All([vol.All(str, vol.Length(min=1, max=1000))], vol.Length(max=200)),
            vol.Optional("guests", default=list): vol.All([vol.All(int, vol.Range(min=100, max=999_999_999))], vol.Length(max=500)),
            vol.Optional("storage"): vol.All(str, vol.Match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")),
            vol.Optional("datastore"): vol.All(str, vol.Match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")),
            vol.Optional("schedule"): _cron,
            vol.Optional("retention", default=dict): RETENTION,
            # When true, retention runs after each scheduled backup, by the rule the operator signed for the repository.
            vol.Optional("prune_after_backup", default=False): bool,
            vol.Optional("verify_interval_hours"): _hours,
            vol.Optional("verify_data_interval_hours"): _hours,
            vol.Optional("restore_test_interval_hours"): _hours,
            vol.Optional("max_age_hours", default=DEFAULT_MAX_AGE_HOURS): _hours,
            vol.Optional("enabled", default=True): bool,
        },
        extra=vol.PREVENT_EXTRA,
    ),
    _target,
)


def new_policy_id() -> str:
    return "p" + secrets.token_hex(5)


def valid_policy_id(value: str) -> bool:
    return bool(re.match(_ID_RE, value or ""))


def applies_to(policy: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """The policy covers this node summary: named by id, or carrying every one of the policy's labels (values may be globs)."""
    if node.get("id") in (policy.get("nodes") or ()):
        return True
    wanted = policy.get("labels") or {}
    if not wanted:
        return False
    labels = as_dict(node.get("labels"))
    return all(isinstance(labels.get(k), str) and fnmatch.fnmatchcase(labels[k], v) for k, v in wanted.items())


def repositories(state: Any) -> dict[str, dict[str, Any]]:
    """The repositories in a node's backup state, by name."""
    return {r["name"]: r for r in as_list(as_dict(state).get("repositories")) if isinstance(r.get("name"), str)}


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _ago(seconds: float) -> str:
    if seconds < 2 * HOUR:
        return f"{seconds / 60:.0f} min"
    if seconds < 72 * HOUR:
        return f"{seconds / HOUR:.0f} h"
    return f"{seconds / 86400:.0f} days"


def judge_repository(repo: Mapping[str, Any] | None, policy: Mapping[str, Any] | None, now: float) -> dict[str, Any]:
    """The verdict of one repository under a policy (or the defaults): worst first, with every reason."""
    policy = policy or {}
    if repo is None:
        return {"verdict": UNKNOWN, "reasons": ["the repository is not in the node's report (not configured there, or backup.read not granted)"], "problems": []}
    problems: list[tuple[str, str]] = []
    last = as_dict(repo.get("backup"))
    if last and last.get("ok") is False:
        problems.append((FAILED, f"the last backup failed: {str(last.get('error') or '')[:300]}"))
    verify = as_dict(repo.get("verify"))
    if verify and verify.get("ok") is False:
        problems.append((FAILED, f"the last check found problems: {str(verify.get('error') or verify.get('output') or '')[:300]}"))
    test = as_dict(repo.get("restore_test"))
    if test and test.get("ok") is False:
        problems.append((RESTORE_TEST_FAILED, f"the last restore test failed: {str(test.get('error') or '')[:300]}"))
    latest = _num(repo.get("latest_at"))
    max_age = (_num(policy.get("max_age_hours")) or DEFAULT_MAX_AGE_HOURS) * HOUR
    if latest is None:
        problems.append((STALE, "no snapshot yet"))
    elif now - latest > max_age:
        problems.append((STALE, f"the newest snapshot is {_ago(now - latest)} old (at most {_ago(max_age)} allowed)"))
    interval = _num(policy.get("verify_interval_hours"))
    if interval:
        verified = _num(as_dict(repo.get("last_verified")).get("at"))
        if verified is None:
            problems.append((UNVERIFIED, "never checked"))
        elif now - verified > interval * HOUR:
            problems.append((UNVERIFIED, f"last good check {_ago(now - verified)} ago (every {_ago(interval * HOUR)} wanted)"))
    interval = _num(policy.get("restore_test_interval_hours"))
    if interval:
        tested = _num(as_dict(repo.get("last_restore_test_ok")).get("at"))
        if tested is None:
            problems.append((UNVERIFIED, "never restore-tested"))
        elif now - tested > interval * HOUR:
            problems.append((UNVERIFIED, f"last good restore test {_ago(now - tested)} ago (every {_ago(interval * HOUR)} wanted)"))
    verdict = min((p[0] for p in problems), key=VERDICT_ORDER.__getitem__, default=FRESH)
    return {"verdict": verdict, "reasons": [p[1] for p in problems], "problems": [p[0] for p in problems]}


def judge_pbs(store: Mapping[str, Any], policy: Mapping[str, Any] | None, now: float, restore_tests: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A PBS datastore: its snapshots' verification states and the newest backup of each group against the maximum age."""
    policy = policy or {}
    problems: list[tuple[str, str]] = []
    max_age = (_num(policy.get("max_age_hours")) or DEFAULT_MAX_AGE_HOURS) * HOUR
    guests = set(policy.get("guests") or ())
    failed = [s for s in as_list(store.get("snapshots")) if as_dict(s.get("verification")).get("state") == "failed"]
    if failed:
        names = ", ".join(f"{s.get('type')}/{s.get('id')}" for s in failed[:5])
        problems.append((FAILED, f"{len(failed)} snapshot(s) failed verification ({names})"))
    for job in as_list(store.get("verify_jobs")):
        if job.get("last_run_state") not in (None, "ok", "OK"):
            problems.append((FAILED, f"verify job {job.get('id')} ended: {str(job.get('last_run_state'))[:200]}"))
    for group in as_list(store.get("backup_groups")):
        if guests and not (str(group.get("id")).isdigit() and int(group["id"]) in guests):
            continue
        last = _num(group.get("last_backup_at"))
        if last is not None and now - last > max_age:
            problems.append((STALE, f"{group.get('type')}/{group.get('id')}: newest snapshot {_ago(now - last)} old"))
    seen = {int(g["id"]) for g in as_list(store.get("backup_groups")) if str(g.get("id")).isdigit()}
    for vmid in sorted(guests - seen):
        problems.append((STALE, f"guest {vmid} has no snapshot in {store.get('store')}"))
    interval = _num(policy.get("verify_interval_hours"))
    if interval:
        unverified = [s for s in as_list(store.get("snapshots")) if not as_dict(s.get("verification")).get("state")]
        if unverified:
            problems.append((UNVERIFIED, f"{len(unverified)} snapshot(s) not verified"))
    if store.get("error"):
        problems.append((FAILED, f"datastore error: {str(store['error'])[:200]}"))
    if policy.get("storage"):
        problems.extend(judge_guest_restore_tests(restore_tests, policy, now))
    verdict = min((p[0] for p in problems), key=VERDICT_ORDER.__getitem__, default=FRESH)
    return {"verdict": verdict, "reasons": [p[1] for p in problems], "problems": [p[0] for p in problems]}


def judge_guest_restore_tests(restore_tests: Mapping[str, Any] | None, policy: Mapping[str, Any], now: float) -> list[tuple[str, str]]:
    """The policy's guests' last restore tests into scratch guests (the proxmox state's restore_tests, per vmid)."""
    problems: list[tuple[str, str]] = []
    tests = as_dict(restore_tests)
    interval = _num(policy.get("restore_test_interval_hours"))
    for vmid in policy.get("guests") or ():
        test = as_dict(tests.get(str(vmid)))
        if test and test.get("ok") is False:
            problems.append((RESTORE_TEST_FAILED, f"guest {vmid}: the last restore test failed: {str(test.get('error') or '')[:300]}"))
        if interval:
            tested = _num(test.get("last_ok_at"))
            if tested is None:
                problems.append((UNVERIFIED, f"guest {vmid}: never restore-tested"))
            elif now - tested > interval * HOUR:
                problems.append((UNVERIFIED, f"guest {vmid}: last good restore test {_ago(now - tested)} ago (every {_ago(interval * HOUR)} wanted)"))
    return problems


def judge_vzdump(guests_state: list[dict[str, Any]], policy: Mapping[str, Any], now: float, restore_tests: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The guests of a vzdump policy, from the proxmox state's per-guest backup status (last success, last task) and restore tests."""
    problems: list[tuple[str, str]] = []
    max_age = (_num(policy.get("max_age_hours")) or DEFAULT_MAX_AGE_HOURS) * HOUR
    by_id = {g.get("vmid"): g for g in guests_state}
    for vmid in policy.get("guests") or ():
        guest = by_id.get(vmid)
        if guest is None:
            problems.append((UNKNOWN, f"guest {vmid} is not in the cluster's report"))
            continue
        backup = as_dict(guest.get("backup"))
        task = as_dict(backup.get("last_task"))
        if task.get("state") not in (None, "ok", "warning", "running"):
            problems.append((FAILED, f"guest {vmid}: the last vzdump ended {task.get('exit_status') or task.get('state')}"))
        last = _num(backup.get("last_ok_at"))
        if last is None:
            problems.append((STALE, f"guest {vmid}: no successful backup found"))
        elif now - last > max_age:
            problems.append((STALE, f"guest {vmid}: last backup {_ago(now - last)} old"))
    problems.extend(judge_guest_restore_tests(restore_tests, policy, now))
    verdict = min((p[0] for p in problems), key=VERDICT_ORDER.__getitem__, default=FRESH)
    return {"verdict": verdict, "reasons": [p[1] for p in problems], "problems": [p[0] for p in problems]}
