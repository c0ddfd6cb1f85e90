"""Refused requests on SQLite: a small ring per source (see router/ops/refusals.py).

Part of `SqliteTx` (tx.py). Rows arrive in batches from one flush; the bound is applied in the
same transaction, so the table never holds more than `keep` rows of a source for longer than
that transaction.
"""

from __future__ import annotations

import json
import sqlite3

from router.storage import from_row
from router.storage.from_row import REFUSED_COLUMNS
from router.storage.rows import Refusal


class SqliteRefused:
    conn: sqlite3.Connection

    def refused_add(self, rows: list[Refusal], keep: int) -> int:
        marks = ", ".join("?" * len(REFUSED_COLUMNS))
        self.conn.executemany(
            f"INSERT OR IGNORE INTO refused ({', '.join(REFUSED_COLUMNS)}) VALUES ({marks})",
            [
                (
                    r.id,
                    r.at,
                    r.channel,
                    r.source,
                    r.method,
                    r.path,
                    r.query,
                    r.remote,
                    json.dumps(r.headers),
                    r.body,
                    r.body_size,
                    r.status,
                    r.reason,
                    r.answer,
                    r.request_id,
                )
                for r in rows
            ],
        )
        dropped = 0
        for source in {r.source for r in rows}:
            # The id of the newest row past the bound: it and everything older goes (index range).
            edge = self.conn.execute(
                "SELECT id FROM refused WHERE source = ? ORDER BY id DESC LIMIT 1 OFFSET ?", (source, keep)
            ).fetchone()
            if edge is not None:
                dropped += self.conn.execute(
                    "DELETE FROM refused WHERE source = ? AND id <= ?", (source, edge[0])
                ).rowcount
        return dropped

    def refused_list(
        self, *, source: str | None = None, before: str | None = None, limit: int = 50
    ) -> list[Refusal]:
        clauses, params = [], []
        if source:
            clauses.append("source = ?")
            params.append(source)
        if before:
            clauses.append("id < ?")
            params.append(before)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.conn.execute(f"SELECT * FROM refused {where} ORDER BY id DESC LIMIT ?", (*params, limit))
        return [from_row.refusal(r) for r in rows.fetchall()]

    def refused_get(self, refusal_id: str) -> Refusal | None:
        row = self.conn.execute("SELECT * FROM refused WHERE id = ?", (refusal_id,)).fetchone()
        return from_row.refusal(row) if row else None
