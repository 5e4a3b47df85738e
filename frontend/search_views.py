"""The dashboard's search from the top bar: nodes, recent jobs and whatever the integrations find (roost_hub_search)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .render import _hub, _render

MAX_QUERY = 100
PER_KIND = 20
# Jobs are searched among the newest ones only: a search must stay quick on a hub with years of history.
RECENT_JOBS = 500


def setup(app: web.Application) -> None:
    app.router.add_get("/search", search_page, name="search")


def _words(query: str) -> list[str]:
    return [w for w in query.casefold().split() if w]


def _matches(words: list[str], *texts: Any) -> bool:
    haystack = " ".join(str(t) for t in texts if t not in (None, "")).casefold()
    return all(w in haystack for w in words)


async def _nodes(hub: Any, words: list[str]) -> list[dict[str, Any]]:
    found = []
    for node in (await hub.nodes_summary()).get("nodes", []):
        facts = node.get("facts") or {}
        if _matches(words, node.get("name"), node.get("hostname"), node.get("id"), node.get("status"), facts.get("os"), facts.get("arch")):
            found.append(node)
    found.sort(key=lambda n: str(n.get("name") or n.get("id")).casefold())
    return found[:PER_KIND]


async def _jobs(hub: Any, words: list[str], names: dict[str, str]) -> list[dict[str, Any]]:
    from roost.core.store.jobs import JobFilter

    store = getattr(hub, "store", None)
    if store is None or not hasattr(store, "list_jobs"):
        return []
    found = []
    for job in await store.list_jobs(JobFilter(limit=RECENT_JOBS)):
        if _matches(words, job.job_id, job.action, job.state, job.created_by, job.node_id, names.get(job.node_id)):
            found.append({"id": job.job_id, "action": job.action, "state": job.state, "node": names.get(job.node_id, job.node_id), "created_at": job.created_at})
        if len(found) >= PER_KIND:
            break
    return found


async def search_page(request: web.Request) -> web.Response:
    """Everything whose name (or id, state, host) holds every word searched for, grouped by kind."""
    hub = _hub(request)
    query = request.query.get("q", "").strip()[:MAX_QUERY]
    words = _words(query)
    nodes: list[dict[str, Any]] = []
    jobs: list[dict[str, Any]] = []
    found: list[dict[str, Any]] = []
    failed: list[str] = []
    if words:
        nodes = await _nodes(hub, words)
        names = {str(n.get("id")): str(n.get("name") or n.get("id")) for n in (await hub.nodes_summary()).get("nodes", [])}
        jobs = await _jobs(hub, words, names)
        plugins = getattr(hub, "plugins", None)
        if plugins is not None:
            found, failed = await plugins.search(query, PER_KIND)
    groups: dict[str, list[dict[str, Any]]] = {}
    for result in found:
        groups.setdefault(result["kind"], []).append(result)
    total = len(nodes) + len(jobs) + len(found)
    return _render(
        request,
        "search/page.html",
        {
            "page": "search",
            "search_query": query,
            "query": query,
            "nodes": nodes,
            "jobs": jobs,
            "groups": sorted(groups.items()),
            "failed": failed,
            "total": total,
        },
    )
