"""The Backups pages: every policy, repository and PBS datastore of the fleet with its verdict (worst first), one repository's
snapshots with restore and the retention dry run, and the panel on a node's page.

Part of the hub half (imported from hub.py only). Hub data is never trusted
to have any key or type; what a source lacks renders as "—".
"""

from __future__ import annotations

import time
from typing import Any

from roost.core.hub_integration import PageRequest, as_dict, as_list

from .policies import VERDICT_LABELS, VERDICT_TONES, judge_repository, repositories

# Where external backup scripts report (the pings integration's endpoint), for the page's hint.
PING_PAGE = "/pings"
SPARK_POINTS = 30


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def api_row(row: dict[str, Any]) -> dict[str, Any]:
    """One overview row as the API gives it: verdict, reasons and the figures, without the whole snapshot list."""
    repo = as_dict(row.get("repository"))
    store = as_dict(row.get("datastore"))
    out = {
        "kind": row.get("kind"),
        "name": row.get("name"),
        "node": row.get("node"),
        "policy": {"id": row["policy"]["id"], "name": row["policy"]["name"]} if row.get("policy") else None,
        "verdict": row.get("verdict"),
        "reasons": row.get("reasons", []),
        "next_backup_at": as_dict(row.get("sched")).get("next_backup_at"),
        "last_error": as_dict(row.get("sched")).get("last_error"),
        "jobs": as_dict(as_dict(row.get("sched")).get("jobs")),
    }
    if repo:
        out.update(
            latest_at=repo.get("latest_at"),
            snapshot_count=repo.get("snapshot_count"),
            latest_size_bytes=repo.get("latest_size_bytes"),
            last_backup=_brief(repo.get("backup")),
            last_verify=_brief(repo.get("verify")),
            last_restore_test=_brief(repo.get("restore_test")),
            approved_retention=repo.get("approved_retention"),
            busy=bool(repo.get("busy")),
        )
    if store:
        out.update(latest_at=store.get("last_backup_at"), snapshot_count=len(as_list(store.get("snapshots"))), used_bytes=store.get("used_bytes"), gc=store.get("gc"))
    return out


def _brief(value: Any) -> dict[str, Any] | None:
    value = as_dict(value)
    if not value:
        return None
    keep = ("ok", "at", "finished_at", "error", "snapshot_id", "files", "bytes", "bytes_added", "files_checked", "bytes_checked", "read_data_subset", "duration_seconds", "job_id")
    return {k: value[k] for k in keep if k in value} | ({"mismatches": len(as_list(value.get("mismatches")))} if "mismatches" in value else {})


def _trend(snapshots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sizes of the newest snapshots, oldest first, as bar heights in tenths of the largest."""
    sized = [s for s in snapshots if _num(s.get("size_bytes")) is not None][:SPARK_POINTS]
    sized.reverse()
    top = max((s["size_bytes"] for s in sized), default=0) or 1
    # Heights in tenths, as classes: the dashboard's content security policy allows no inline styles.
    return [{"step": max(1, round(s["size_bytes"] / top * 10)), "size": s["size_bytes"], "time": s.get("time")} for s in sized]


def _view(row: dict[str, Any]) -> dict[str, Any]:
    repo = as_dict(row.get("repository"))
    store = as_dict(row.get("datastore"))
    snaps = as_list(repo.get("snapshots")) or as_list(store.get("snapshots"))
    return {
        **row,
        "api": api_row(row),
        "trend": _trend(snaps),
        "latest_at": repo.get("latest_at") or store.get("last_backup_at"),
        "last_backup": as_dict(repo.get("backup")),
        "last_verify": as_dict(repo.get("verify")),
        "last_restore_test": as_dict(repo.get("restore_test")),
        "busy": bool(repo.get("busy")),
        "jobs": as_dict(as_dict(row.get("sched")).get("jobs")),
    }


async def backups_page(page: PageRequest) -> Any:
    from .hub import service

    data = await service(page.hub).overview()
    rows = [_view(r) for r in data["rows"]]
    return page.render(
        "page.html",
        {
            "page": "backups",
            "rows": rows,
            "counts": data["counts"],
            "labels": VERDICT_LABELS,
            "tones": VERDICT_TONES,
            "policies": data["policies"],
            "can_operate": page.user_role in ("operator", "admin"),
            "ping_page": PING_PAGE,
        },
        fragments={"rows": "_rows.html"},
    )


async def repository_page(page: PageRequest) -> Any:
    from .hub import service

    node_id, name = page.match_info["node_id"], page.match_info["repository"]
    detail = await page.hub.nodes.get(node_id)
    repo = repositories(as_dict(as_dict(detail).get("state")).get("backup")).get(name) if detail else None
    if repo is None:
        return page.render("not_found.html", {"node_id": node_id, "name": name}, status=404)
    policies = [p for p in await service(page.hub).policies() if p.get("repository") == name and node_id in (p.get("nodes") or [])]
    judged = judge_repository(repo, policies[0] if policies else None, time.time())
    return page.render(
        "repository.html",
        {
            "node": as_dict(detail.get("node")),
            "node_id": node_id,
            "repo": repo,
            "snapshots": as_list(repo.get("snapshots")),
            "policy": policies[0] if policies else None,
            "verdict": judged["verdict"],
            "verdict_label": VERDICT_LABELS.get(judged["verdict"], judged["verdict"]),
            "tone": VERDICT_TONES.get(judged["verdict"], "muted"),
            "reasons": judged["reasons"],
            "can_operate": page.user_role in ("operator", "admin"),
            "retention": (policies[0].get("retention") if policies else None) or {"keep_daily": 7, "keep_weekly": 4, "keep_monthly": 6},
        },
    )


def panel_context(node: dict[str, Any], state: Any) -> dict[str, Any]:
    now = time.time()
    rows = []
    for name, repo in repositories(state).items():
        judged = judge_repository(repo, None, now)
        rows.append({"name": name, "repo": repo, "tone": VERDICT_TONES.get(judged["verdict"]), "verdict_label": VERDICT_LABELS.get(judged["verdict"]), **judged})
    return {"node": node, "rows": rows}
