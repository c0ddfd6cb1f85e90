"""Helpers shared by the security tests: read the daemon's journal directly (a `router` CLI call
costs a whole interpreter start, seconds on a busy box)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from tests.daemon import RouterProcess


def journal_entities(router: RouterProcess, source: str) -> list[dict[str, Any]]:
    """Every journaled entity of `source`, oldest first."""
    conn = sqlite3.connect(router.data_dir / "router.db", timeout=10)
    try:
        rows = conn.execute(
            "SELECT entity FROM signals WHERE source = ? ORDER BY rowid", (source,)
        ).fetchall()
    finally:
        conn.close()
    return [json.loads(entity) for (entity,) in rows]


def journal_count(router: RouterProcess, source: str | None = None) -> int:
    conn = sqlite3.connect(router.data_dir / "router.db", timeout=10)
    try:
        if source is None:
            return int(conn.execute("SELECT count(*) FROM signals").fetchone()[0])
        return int(conn.execute("SELECT count(*) FROM signals WHERE source = ?", (source,)).fetchone()[0])
    finally:
        conn.close()
