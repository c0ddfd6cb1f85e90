"""Finding signals on SQLite: filters, the id cursor, and text search with FTS5.

Part of `SqliteTx` (tx.py). What is searched is written by `append_signal` (`search_text`): the
id, source, dedup key and the payload (the entity without its `__` meta, so header names and the
like do not match every signal), in a `signal_text` row whose rowid is the signal's. A search is
an FTS5 query of the user's words, each quoted (no FTS syntax gets through); FTS5's default
tokenizer splits `ORD-4711` into `ord` + `4711`, and a quoted word matches its parts in order.

Time ranges bound `received_at`, and also the id: ids are ULIDs, whose first 10 characters are
the time they were made (just after `received_at`), so `id >= ULID(since - margin)` lets the
primary key index narrow the scan before `received_at` is checked exactly.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from engine.entity import Entity
from router.storage.rows import Signal, SignalQuery

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_MARGIN_MS = 10 * 60 * 1000  # an id may be made this long after its received_at (SMTP: after parsing)
TEXT_KEYS = ("__body", "__json")


def search_text(entity: Entity) -> str:
    data = entity.data
    payload = {k: v for k, v in data.items() if not k.startswith("__") or k in TEXT_KEYS}
    return f"{entity.id} {entity.source} {json.dumps(payload, ensure_ascii=False, default=str)}"


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


def _ulid_floor(iso: str, shift_ms: int) -> str:
    ms = int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000) + shift_ms
    ms = max(0, ms)
    out = ""
    for _ in range(10):
        out = _CROCKFORD[ms & 31] + out
        ms >>= 5
    return out + "0" * 16


def _where(q: SignalQuery, *, cursor: bool) -> tuple[str, list[Any]]:
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
        params += [q.since, _ulid_floor(q.since, -_MARGIN_MS)]
    if q.until:
        clauses += ["received_at < ?", "id < ?"]
        params += [q.until, _ulid_floor(q.until, _MARGIN_MS)]
    if q.upto:
        clauses.append("id <= ?")
        params.append(q.upto)
    if q.workflow:
        clauses.append("id IN (SELECT signal_id FROM runs WHERE workflow = ?)")
        params.append(q.workflow)
    if q.search:
        match = fts_query(q.search)
        if match is None:
            clauses.append("0")
        else:
            clauses.append("rowid IN (SELECT rowid FROM signal_text WHERE signal_text MATCH ?)")
            params.append(match)
    if cursor and q.before:
        clauses.append("id < ?")
        params.append(q.before)
    if cursor and q.after:
        clauses.append("id > ?")
        params.append(q.after)
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params


class SqliteSearch:
    conn: sqlite3.Connection

    def index_signal(self, rowid: int, entity: Entity, dedup_key: str | None) -> None:
        text = search_text(entity)
        if dedup_key:
            text += " " + dedup_key
        self.conn.execute("INSERT INTO signal_text (rowid, text) VALUES (?, ?)", (rowid, text))

    def find_signals(self, query: SignalQuery) -> list[Signal]:
        from router.storage.sqlite.journal import signal_from_row

        where, params = _where(query, cursor=True)
        order = "ASC" if query.after and not query.before else "DESC"
        rows = self.conn.execute(f"SELECT * FROM signals {where} ORDER BY id {order} LIMIT ?",
                                 (*params, query.limit)).fetchall()
        found = [signal_from_row(r) for r in rows]
        return found[::-1] if order == "ASC" else found

    def list_signals(self, *, status: str | None = None, source: str | None = None, since: str | None = None,
                     until: str | None = None, before: str | None = None, limit: int = 50) -> list[Signal]:
        return self.find_signals(SignalQuery(status=status, source=source, since=since, until=until, before=before,
                                             limit=limit))

    def count_signals(self, query: SignalQuery) -> int:
        where, params = _where(query, cursor=False)
        return int(self.conn.execute(f"SELECT count(*) FROM signals {where}", params).fetchone()[0])
