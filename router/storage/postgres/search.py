"""Finding signals on PostgreSQL: filters, the id cursor, and text search with a tsvector.

Part of `PgTx` (tx.py). `append_signal` writes one `signal_text` row per signal: the searchable
text (`router.storage.text.search_text`) already split into its words (`text.parts`) and given to
`to_tsvector('simple', …)`, so PostgreSQL's own parser never sees punctuation and the words are
the ones SQLite's FTS5 sees. A query is `to_tsquery` of the user's words, each a phrase of its
parts (`'ord' <-> '4711'`), the last part `:*` for `word*`, every word ANDed; no tsquery syntax of
the user's gets through (only letters and digits reach it, each quoted). A signal's first
`TEXT_CAP` characters are indexed (a tsvector is capped at 1 MB).
"""

from __future__ import annotations

from typing import Any

from engine.entity import Entity
from router.storage import from_row
from router.storage.rows import Signal, SignalQuery
from router.storage.text import MARGIN_MS, parts, query_terms, search_text, ulid_floor

TEXT_CAP = 200_000


def index_words(entity: Entity, dedup_key: str | None) -> str:
    return " ".join(parts(search_text(entity, dedup_key)[:TEXT_CAP]))


def tsquery(text: str) -> str | None:
    """The user's words as tsquery text (for `to_tsquery('simple', …)`), None if no word is left."""
    words = []
    for term in query_terms(text):
        lexemes = [f"'{p}'" for p in term.parts]
        if term.prefix:
            lexemes[-1] += ":*"
        words.append("(" + " <-> ".join(lexemes) + ")")
    return " & ".join(words) or None


def _where(q: SignalQuery, *, cursor: bool) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (("s.source", q.source), ("s.status", q.status), ("s.channel", q.channel)):
        if value:
            clauses.append(f"{column} = %s")
            params.append(value)
    if q.statuses:
        clauses.append("s.status = ANY(%s)")
        params.append(list(q.statuses))
    if q.since:
        clauses += ["s.received_at >= %s", "s.id >= %s"]
        params += [q.since, ulid_floor(q.since, -MARGIN_MS)]
    if q.until:
        clauses += ["s.received_at < %s", "s.id < %s"]
        params += [q.until, ulid_floor(q.until, MARGIN_MS)]
    if q.upto:
        clauses.append("s.id <= %s")
        params.append(q.upto)
    if q.workflow:
        clauses.append("EXISTS (SELECT 1 FROM runs r WHERE r.signal_id = s.id AND r.workflow = %s)")
        params.append(q.workflow)
    if q.search:
        match = tsquery(q.search)
        clauses.append("t.doc @@ to_tsquery('simple', %s)" if match else "false")
        params += [match] if match else []
    if cursor:
        for op, value in (("<", q.before), (">", q.after)):
            if value:
                clauses.append(f"s.id {op} %s")
                params.append(value)
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params


def _from(q: SignalQuery) -> str:
    if q.search:
        return "FROM signal_text t JOIN signals_v s ON s.id = t.signal_id"
    return "FROM signals_v s"


class PgSearch:
    conn: Any

    def find_signals(self, query: SignalQuery) -> list[Signal]:
        where, params = _where(query, cursor=True)
        order = "ASC" if query.after and not query.before else "DESC"
        rows = self.conn.execute(
            f"SELECT s.* {_from(query)} {where} ORDER BY s.id {order} LIMIT %s", (*params, query.limit)
        ).fetchall()
        found = [from_row.signal(r) for r in rows]
        return found[::-1] if order == "ASC" else found

    def count_signals(self, query: SignalQuery) -> int:
        where, params = _where(query, cursor=False)
        return int(self.conn.execute(f"SELECT count(*) AS n {_from(query)} {where}", params).fetchone()["n"])

    def signal_body(self, signal_id: str) -> bytes | None:
        row = self.conn.execute(
            "SELECT body FROM signal_bodies WHERE signal_id = %s", (signal_id,)
        ).fetchone()
        return bytes(row["body"]) if row else None
