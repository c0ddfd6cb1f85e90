"""Every row of a SQLite data dir, table by table, for `router db copy` (router/storage/copy.py).

Rows come out as plain dicts in the backend-neutral shape the PostgreSQL loader takes: signals
with their claim state (a stopped data dir has no live claims, so running ones are pending
again), records as (type, id, timestamps, fields) with JSON-text values decoded.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from router.storage.sqlite.records import TABLE_PREFIX, _decode

TABLES = (
    "signals",
    "dedup",
    "runs",
    "step_effects",
    "sources",
    "schedule_state",
    "schedule_slots",
    "records",
    "signal_bodies",
    "refused",
)


def _rows(conn: sqlite3.Connection, sql: str) -> Iterator[dict[str, Any]]:
    cur = conn.execute(sql)
    names = [d[0] for d in cur.description]
    for row in cur:
        yield dict(zip(names, row, strict=True))


def open_readonly(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    conn.execute("BEGIN")  # one snapshot for the whole copy
    return conn


def export(conn: sqlite3.Connection, table: str) -> Iterator[dict[str, Any]]:
    if table == "signals":
        for r in _rows(conn, "SELECT * FROM signals ORDER BY id"):
            yield {**r, "owner": None, "lease_until": None}
    elif table == "runs":
        yield from _rows(
            conn,
            "SELECT signal_id, workflow, attempt, status, started_at, duration_ms, error, trace"
            " FROM runs ORDER BY id",
        )
    elif table == "sources":
        for r in _rows(conn, "SELECT * FROM sources"):
            yield {**r, "active": None if r["active"] is None else bool(r["active"])}
    elif table == "records":
        types = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'record\\_%' ESCAPE '\\' ORDER BY name"
            )
        ]
        for name in types:
            for r in _rows(conn, f'SELECT * FROM "{name}" ORDER BY id'):
                fields = {
                    k: _decode(v)
                    for k, v in r.items()
                    if k not in ("id", "created_at", "updated_at") and v is not None
                }
                yield {
                    "type": name[len(TABLE_PREFIX) :],
                    "id": r["id"],
                    "created_at": r["created_at"],
                    "updated_at": r["updated_at"],
                    "fields": fields,
                }
    elif table in TABLES:
        yield from _rows(conn, f"SELECT * FROM {table}")
    else:
        raise ValueError(f"unknown table {table!r}")
