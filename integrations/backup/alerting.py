"""The backup alert rule kinds: stale, failed, verify failed, restore test failed, judged on each node's reported repositories and PBS datastores."""

from __future__ import annotations

import fnmatch
import time
from typing import Any

import voluptuous as vol

from roost.core.hub_integration import AlertFinding, AlertRuleKind, HubContext, as_dict, as_list

from .policies import DEFAULT_MAX_AGE_HOURS, KIND_REPOSITORY, applies_to, repositories
from .service import POLICY_PREFIX

SETTINGS = vol.Schema(
    {
        vol.Optional("repository", default="*"): vol.All(str, vol.Length(min=1, max=100)),
        vol.Optional("include_pbs", default=True): bool,
    },
    extra=vol.PREVENT_EXTRA,
)
STALE_SETTINGS = SETTINGS.extend({vol.Optional("max_age_hours"): vol.All(vol.Coerce(float), vol.Range(min=0.01, max=24 * 3650))})


def _repos(settings: dict[str, Any], node: Any) -> list[dict[str, Any]]:
    pattern = settings.get("repository") or "*"
    state = as_dict(as_dict(node).get("state"))
    return [r for name, r in repositories(state.get("backup")).items() if fnmatch.fnmatchcase(name, pattern)]


def _datastores(settings: dict[str, Any], node: Any) -> list[dict[str, Any]]:
    if not settings.get("include_pbs", True):
        return []
    pattern = settings.get("repository") or "*"
    proxmox = as_dict(as_dict(as_dict(node).get("state")).get("proxmox"))
    return [s for s in as_list(as_dict(proxmox.get("pbs")).get("datastores")) if fnmatch.fnmatchcase("pbs:" + str(s.get("store")), pattern) or pattern == "*"]


def _label(name: str) -> dict[str, str]:
    return {"repository": name[:200]}


def rule_kinds(ctx: HubContext) -> list[AlertRuleKind]:
    async def max_ages(node: Any) -> dict[str, float]:
        """Per repository, the strictest maximum age of the policies that cover this node."""
        summary = as_dict(as_dict(node).get("node"))
        ages: dict[str, float] = {}
        if ctx.store is None:
            return ages
        for policy in (await ctx.store.items(POLICY_PREFIX)).values():
            if policy.get("kind") == KIND_REPOSITORY and policy.get("enabled", True) and applies_to(policy, summary):
                age = float(policy.get("max_age_hours") or DEFAULT_MAX_AGE_HOURS)
                ages[policy["repository"]] = min(age, ages.get(policy["repository"], age))
        return ages

    async def stale(settings: dict[str, Any], node: Any) -> list[AlertFinding]:
        now = time.time()
        ages = await max_ages(node) if "max_age_hours" not in settings else {}
        found = []
        for repo in _repos(settings, node):
            limit = float(settings.get("max_age_hours") or ages.get(repo["name"], DEFAULT_MAX_AGE_HOURS))
            latest = repo.get("latest_at")
            if not isinstance(latest, (int, float)):
                found.append(AlertFinding(f"{repo['name']} has no snapshot yet", _label(repo["name"])))
            elif now - latest > limit * 3600:
                hours = (now - latest) / 3600
                found.append(AlertFinding(f"{repo['name']}: newest snapshot is {hours:.0f} h old (at most {limit:g} h)", _label(repo["name"]), value=round(hours, 1)))
        limit = float(settings.get("max_age_hours") or DEFAULT_MAX_AGE_HOURS)
        for store in _datastores(settings, node):
            for group in as_list(store.get("backup_groups")):
                last = group.get("last_backup_at")
                if isinstance(last, (int, float)) and now - last > limit * 3600:
                    found.append(AlertFinding(f"PBS {store.get('store')} {group.get('type')}/{group.get('id')}: newest snapshot {(now - last) / 3600:.0f} h old", {"repository": f"pbs:{store.get('store')}", "group": f"{group.get('type')}/{group.get('id')}"}))
        return found

    def failed(settings: dict[str, Any], node: Any) -> list[AlertFinding]:
        found = []
        for repo in _repos(settings, node):
            last = as_dict(repo.get("backup"))
            if last.get("ok") is False:
                found.append(AlertFinding(f"{repo['name']}: the last backup failed: {str(last.get('error') or '')[:300]}", _label(repo["name"]), severity="critical"))
        return found

    def verify_failed(settings: dict[str, Any], node: Any) -> list[AlertFinding]:
        found = []
        for repo in _repos(settings, node):
            verify = as_dict(repo.get("verify"))
            if verify.get("ok") is False:
                found.append(AlertFinding(f"{repo['name']}: the repository check found problems: {str(verify.get('error') or '')[:300]}", _label(repo["name"]), severity="critical"))
        for store in _datastores(settings, node):
            bad = [s for s in as_list(store.get("snapshots")) if as_dict(s.get("verification")).get("state") == "failed"]
            if bad:
                found.append(AlertFinding(f"PBS {store.get('store')}: {len(bad)} snapshot(s) failed verification", {"repository": f"pbs:{store.get('store')}"}, severity="critical", value=len(bad)))
        return found

    def restore_test_failed(settings: dict[str, Any], node: Any) -> list[AlertFinding]:
        found = []
        for repo in _repos(settings, node):
            test = as_dict(repo.get("restore_test"))
            if test.get("ok") is False:
                found.append(AlertFinding(f"{repo['name']}: the restore test failed: {str(test.get('error') or '')[:300]}", _label(repo["name"]), severity="critical", value=len(as_list(test.get("mismatches")))))
        # vzdump and PBS backups restore-tested into scratch guests by the proxmox integration, as proxmox:<vmid>.
        pattern = settings.get("repository") or "*"
        proxmox = as_dict(as_dict(as_dict(node).get("state")).get("proxmox"))
        for vmid, test in sorted(as_dict(proxmox.get("restore_tests")).items()):
            name = f"proxmox:{vmid}"
            if as_dict(test).get("ok") is False and fnmatch.fnmatchcase(name, pattern):
                found.append(AlertFinding(f"guest {vmid}: the restore test of {test.get('archive') or 'its backup'} failed: {str(test.get('error') or '')[:300]}", _label(name), severity="critical", value=len(as_list(test.get("mismatches")))))
        return found

    return [
        AlertRuleKind("backup.stale", "a repository's (or PBS group's) newest snapshot is older than its policy's maximum age", STALE_SETTINGS, stale),
        AlertRuleKind("backup.failed", "a repository's last backup run failed", SETTINGS, failed),
        AlertRuleKind("backup.verify_failed", "a repository check (restic check, borg check) or a PBS verification found damage", SETTINGS, verify_failed),
        AlertRuleKind("backup.restore_test_failed", "a restore test did not bring back every sampled file intact (or a vzdump/PBS backup restored into a scratch guest differs from its archive)", SETTINGS, restore_test_failed),
    ]
