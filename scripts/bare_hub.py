#!/usr/bin/env python3
"""The floor bench_hub compares the hub with: a bare aiohttp WebSocket handler that stores each report through aiosqlite.

Per text message: ``json.loads`` of the report, one upsert of its state and
metrics (re-encoded with ``json.dumps``) into a WAL-mode SQLite file through
aiosqlite in autocommit mode (one statement, so one transaction and one trip
to aiosqlite's thread per report), then an ack of the same shape as the hub's,
sent only after that statement returned. No authentication, no validation, no
series, no history: what any Python hub on this stack must at least spend per
report. SQLite settings as the hub's store (WAL, synchronous = NORMAL).

    python scripts/bare_hub.py PORT DB_PATH
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator

import aiosqlite
from aiohttp import WSMsgType, web

UPSERT = """
    INSERT INTO node_state (node_id, collected_at, data, metrics) VALUES (?, ?, ?, ?)
    ON CONFLICT (node_id) DO UPDATE
        SET collected_at = excluded.collected_at, data = excluded.data, metrics = excluded.metrics
"""
DB = web.AppKey("db", aiosqlite.Connection)


async def socket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=8 * 1024 * 1024)
    await ws.prepare(request)
    db = request.app[DB]
    async for msg in ws:
        if msg.type != WSMsgType.TEXT:
            continue
        report = json.loads(msg.data)
        await db.execute(UPSERT, (report["node_id"], report["collected_at"], json.dumps(report["data"]), json.dumps(report["metrics"])))
        await ws.send_str('{"v":1,"type":"ack","seq":%d}' % report["seq"])
    return ws


async def open_db(app: web.Application) -> AsyncIterator[None]:
    db = await aiosqlite.connect(app["path"], isolation_level=None)
    await db.execute("PRAGMA journal_mode = WAL")
    await db.execute("PRAGMA synchronous = NORMAL")
    await db.execute("CREATE TABLE IF NOT EXISTS node_state (node_id TEXT PRIMARY KEY, collected_at REAL, data TEXT, metrics TEXT)")
    app[DB] = db
    yield
    await db.close()


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    app = web.Application()
    app["path"] = path
    app.cleanup_ctx.append(open_db)
    app.router.add_get("/ws", socket)
    app.router.add_get("/health", lambda request: web.Response(text="ok"))
    web.run_app(app, host="127.0.0.1", port=port, print=None, handle_signals=True)


if __name__ == "__main__":
    main()
