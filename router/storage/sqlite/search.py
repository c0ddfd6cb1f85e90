"""Finding signals on SQLite: filters, the id cursor, and text search with FTS5.

Part of `SqliteTx` (tx.py). What is searched (`text.search_text`) is written with the signal
(journal.py, through the `signal_appends` trigger) in a `signal_text` row whose rowid is the signal's. A search is
an FTS5 query of the user's words, each quoted (no FTS syntax gets through); FTS5's default
tokenizer splits `ORD-4711` into `ord` + `4711`, and a quoted word matches its parts in order.

Time ranges bound `received_at`, and also the id (`text.ulid_floor`), so the primary key index
narrows the scan before `received_at` is checked exactly.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from router.storage import from_row
from router.storage.rows import Signal, SignalQuery
from router.storage.text import MARGIN_MS, ulid_floor


def fts_query(text: str) -> str | None:
    """The user's words as an FTS5 query: every word, each matched as a phrase of its parts."""
    terms = []
    for word in text.split():
        prefix = word.endswith("*")
        word = word.rstrip("*")
        if not any(ch.isalnum() for ch in word):
            continue
        terms.append('"' + word.replace('"', '""') + '"' + ("*" if prefix else ""))
    return " ".join(terms) or None


def _where(q: SignalQuery, *, cursor: bool) -> tuple[str, list[Any], str]:
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (("source", q.source), ("status", q.status), ("channel", q.channel)):
        if value:
            clauses.append(f"{column} = ?")
            params.append(value)
    if q.statuses:
        clauses.append(f"status IN ({','.join('?' * len(q.statuses))})")
        params.extend(q.statuses)
    if q.since:
        clauses += ["received_at >= ?", "id >= ?"]
        params += [q.since, ulid_floor(q.since, -MARGIN_MS)]
    if q.until:
        clauses += ["received_at < ?", "id < ?"]
        params += [q.until, ulid_floor(q.until, MARGIN_MS)]
    if q.upto:
        clauses.append("id <= ?")
        params.append(q.upto)
    if q.workflow:
        clauses.append("EXISTS (SELECT 1 FROM runs WHERE runs.signal_id = signals.id AND runs.workflow = ?)")
        params.append(q.workflow)
    # A search walks the text index newest first (FTS5 gives rowids in order, and rowids grow in
    # commit order) and looks each signal up: a word in every payload costs one page, not a sort
    # of every match. Its cursor is the rowid of the cursor's id.
    order = "signal_text.rowid" if q.search else "id"
    if q.search:
        match = fts_query(q.search)
        clauses.append("signal_text MATCH ?" if match else "0")
        params += [match] if match else []
    for op, value in (("<", q.before if cursor else None), (">", q.after if cursor else None)):
        if value:
            if q.search:
                clauses.append(
                    f"signal_text.rowid {op} coalesce((SELECT rowid FROM signals WHERE id = ?), 0)"
                )
            else:
                clauses.append(f"id {op} ?")
            params.append(value)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return where, params, order


def _from(q: SignalQuery) -> str:
    if q.search:
        # CROSS JOIN keeps the text index the outer loop: the planner would otherwise walk a status
        # index and run the MATCH once per signal (4 s for a count over 100,000).
        return "FROM signal_text CROSS JOIN signals ON signals.rowid = signal_text.rowid"
    return "FROM signals"


class SqliteSearch:
    conn: sqlite3.Connection

    def find_signals(self, query: SignalQuery) -> list[Signal]:
        where, params, by = _where(query, cursor=True)
        order = "ASC" if query.after and not query.before else "DESC"
        rows = self.conn.execute(
            f"SELECT signals.* {_from(query)} {where} ORDER BY {by} {order} LIMIT ?", (*params, query.limit)
        ).fetchall()
        found = [from_row.signal(r) for r in rows]
        return found[::-1] if order == "ASC" else found

    def count_signals(self, query: SignalQuery) -> int:
        where, params, _ = _where(query, cursor=False)
        return int(self.conn.execute(f"SELECT count(*) {_from(query)} {where}", params).fetchone()[0])
