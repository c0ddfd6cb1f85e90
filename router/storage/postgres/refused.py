"""Refused requests on PostgreSQL: a small ring per source (see router/ops/refusals.py).

Part of `PgTx` (tx.py). Rows arrive in batches from one node's flush; the bound is applied in the
same transaction. Two nodes trimming one source at once both delete "everything older than the
newest `keep`", so the ring never holds fewer than `keep` (at worst briefly more).
"""

from __future__ import annotations

import json
from typing import Any

from router.storage import from_row
from router.storage.from_row import REFUSED_COLUMNS
from router.storage.postgres.journal import clean_text
from router.storage.rows import Refusal


class PgRefused:
    conn: Any

    def refused_add(self, rows: list[Refusal], keep: int) -> int:
        if not rows:
            return 0
        marks = ", ".join(["%s"] * len(REFUSED_COLUMNS))
        with self.conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO refused ({', '.join(REFUSED_COLUMNS)}) VALUES ({marks}) ON CONFLICT (id) DO NOTHING",
                [
                    (
                        r.id,
                        r.at,
                        r.channel,
                        r.source,
                        clean_text(r.method),
                        clean_text(r.path),
                        clean_text(r.query),
                        r.remote,
                        # Caller text: a NUL would be refused by json/text columns (the body is bytea).
                        json.dumps(r.headers).replace("\\u0000", "\\ufffd"),
                        r.body,
                        r.body_size,
                        r.status,
                        clean_text(r.reason),
                        clean_text(r.answer),
                        r.request_id,
                    )
                    for r in rows
                ],
            )
        dropped = 0
        for source in sorted({r.source for r in rows}):
            # The newest row past the bound: it and everything older goes (one index range).
            dropped += int(
                self.conn.execute(
                    "DELETE FROM refused WHERE source = %(s)s AND id <= (SELECT id FROM refused"
                    " WHERE source = %(s)s ORDER BY id DESC LIMIT 1 OFFSET %(keep)s)",
                    {"s": source, "keep": keep},
                ).rowcount
            )
        return dropped

    def refused_list(
        self, *, source: str | None = None, before: str | None = None, limit: int = 50
    ) -> list[Refusal]:
        clauses, params = [], []
        if source:
            clauses.append("source = %s")
            params.append(source)
        if before:
            clauses.append("id < %s")
            params.append(before)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.conn.execute(f"SELECT * FROM refused {where} ORDER BY id DESC LIMIT %s", (*params, limit))
        return [from_row.refusal(r) for r in rows.fetchall()]

    def refused_get(self, refusal_id: str) -> Refusal | None:
        row = self.conn.execute("SELECT * FROM refused WHERE id = %s", (refusal_id,)).fetchone()
        return from_row.refusal(row) if row else None
