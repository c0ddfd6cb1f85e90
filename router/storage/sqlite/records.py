"""Records and step effects on SQLite, through sqlite-utils (SPEC §8 "Records").

One table per record type, named `record_<type>`, with columns `id` (a ULID, primary key),
`created_at`, `updated_at`, then one column per field; a field seen for the first time adds a
column. Nested values (tables, lists) are kept as JSON text and decoded on the way out.

Part of `SqliteTx` (tx.py): the methods never commit, the caller owns the transaction (the single
writer runs them inside its group commit). An upsert's find-then-write is safe here because SQLite
lets one writer at a time hold the database; a backend without that must lock the key first.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

import sqlite_utils
from sqlite_utils.db import quote_identifier
from ulid import ULID

from engine.entity import utcnow_iso
from engine.ports import Effect, EffectKey, Record
from engine.records import TYPE_RE, check_fields, check_type, check_upsert

TABLE_PREFIX = "record_"


def table_name(record_type: str) -> str:
    return TABLE_PREFIX + check_type(record_type)


def _encode(fields: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in check_fields(fields).items():
        if isinstance(value, (dict, list, tuple)):
            value = json.dumps(value, separators=(",", ":"), default=str)
        elif value is not None and not isinstance(value, (str, int, float, bool, bytes)):
            value = str(value)
        out[name] = value
    return out


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _where(cols: dict[str, str], filters: Mapping[str, Any] | None) -> tuple[str, list[Any]] | None:
    """SQL for equality filters; None when nothing can match (a filter names a missing column)."""
    clauses: list[str] = []
    params: list[Any] = []
    for name, value in (filters or {}).items():
        col = cols.get(str(name).lower())
        if col is None:
            return None
        q = quote_identifier(col)
        if value is None:
            clauses.append(f"{q} IS NULL")
        elif isinstance(value, (list, tuple, set)):
            values = list(value)
            if not values:
                return None
            clauses.append(f"{q} IN ({', '.join('?' * len(values))})")
            params.extend(values)
        else:
            if isinstance(value, dict):
                value = json.dumps(value, separators=(",", ":"), default=str)
            clauses.append(f"{q} = ?")
            params.append(value)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params


class SqliteRecords:
    conn: sqlite3.Connection

    def _db(self) -> sqlite_utils.Database:
        # No PRAGMA, no plugins: this wrapper is created per call inside someone else's transaction.
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN")  # sqlite-utils commits by itself outside a transaction
        return sqlite_utils.Database(self.conn, recursive_triggers=False, execute_plugins=False)

    def _columns(self, table: str) -> dict[str, str]:
        """Column names of `table` keyed by lowercase name (empty if the table does not exist)."""
        rows = self.conn.execute(f"PRAGMA table_info({quote_identifier(table)})").fetchall()
        return {row[1].lower(): row[1] for row in rows}

    def _select(
        self, table: str, where: str = "", params: Iterable[Any] = (), tail: str = ""
    ) -> list[Record]:
        cur = self.conn.execute(f"SELECT * FROM {quote_identifier(table)} {where} {tail}", tuple(params))
        names = [d[0] for d in cur.description]
        return [
            {name: _decode(value) for name, value in zip(names, row, strict=True)} for row in cur.fetchall()
        ]

    def record_get(self, record_type: str, record_id: str) -> Record | None:
        table = table_name(record_type)
        if not self._columns(table):
            return None
        rows = self._select(table, "WHERE id = ?", [str(record_id)])
        return rows[0] if rows else None

    def record_create(self, record_type: str, fields: Mapping[str, Any] | None) -> Record:
        table = table_name(record_type)
        now = utcnow_iso()
        row = {"id": str(ULID()), "created_at": now, "updated_at": now, **_encode(fields)}
        self._db().table(table).insert(row, pk="id", alter=True)
        created = self.record_get(record_type, row["id"])
        assert created is not None
        return created

    def record_update(
        self, record_type: str, record_id: str, fields: Mapping[str, Any] | None
    ) -> Record | None:
        table = table_name(record_type)
        clean = _encode(fields)
        if self.record_get(record_type, record_id) is None:
            return None
        self._db().table(table).update(str(record_id), {**clean, "updated_at": utcnow_iso()}, alter=True)
        return self.record_get(record_type, record_id)

    def record_upsert(
        self, record_type: str, key_fields: list[str], fields: Mapping[str, Any] | None
    ) -> Record:
        keys, given = check_upsert(key_fields, fields)
        matches = self.record_find(record_type, {k: given[k] for k in keys}, limit=1)
        if matches:
            updated = self.record_update(record_type, matches[0]["id"], given)
            assert updated is not None
            return updated
        return self.record_create(record_type, given)

    def record_delete(self, record_type: str, record_id: str) -> Record | None:
        table = table_name(record_type)
        record = self.record_get(record_type, record_id)
        if record is None:
            return None
        self._db()
        self.conn.execute(f"DELETE FROM {quote_identifier(table)} WHERE id = ?", (str(record_id),))
        return record

    def record_list(self, record_type: str, limit: int = 100, offset: int = 0) -> list[Record]:
        table = table_name(record_type)
        if not self._columns(table):
            return []
        return self._select(table, tail="ORDER BY id DESC LIMIT ? OFFSET ?", params=[int(limit), int(offset)])

    def record_types(self) -> list[str]:
        rows = self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'record\\_%' ESCAPE '\\' ORDER BY name"
        ).fetchall()
        names = [row[0][len(TABLE_PREFIX) :] for row in rows]
        return [n for n in names if TYPE_RE.match(n)]

    def record_find(
        self,
        record_type: str,
        filters: Mapping[str, Any] | None = None,
        limit: int | None = 100,
        order_by: str | None = None,
    ) -> list[Record]:
        table = table_name(record_type)
        cols = self._columns(table)
        if not cols:
            return []
        where = _where(cols, filters)
        if where is None:
            return []
        sql_where, params = where
        order = "ORDER BY id"
        if order_by:
            desc = order_by.startswith("-")
            col = cols.get(order_by.lstrip("-").lower())
            if col is not None:
                order = f"ORDER BY {quote_identifier(col)} {'DESC' if desc else 'ASC'}, id"
        tail = order
        if limit is not None:
            tail += " LIMIT ?"
            params = [*params, int(limit)]
        return self._select(table, sql_where, params, tail)

    def record_count(self, record_type: str, filters: Mapping[str, Any] | None = None) -> int:
        table = table_name(record_type)
        cols = self._columns(table)
        if not cols:
            return 0
        where = _where(cols, filters)
        if where is None:
            return 0
        sql_where, params = where
        row = self.conn.execute(
            f"SELECT COUNT(*) FROM {quote_identifier(table)} {sql_where}", tuple(params)
        ).fetchone()
        return int(row[0])

    # -- step effects (engine.records.once) --------------------------------------------------------------

    def effect_recall(self, key: EffectKey) -> Effect | None:
        row = self.conn.execute(
            "SELECT record_id FROM step_effects WHERE signal_id = ? AND workflow = ? AND step_id = ?", key
        ).fetchone()
        return None if row is None else Effect(row[0])

    def effect_remember(self, key: EffectKey, record_id: str | None) -> None:
        self.conn.execute("INSERT OR REPLACE INTO step_effects VALUES (?, ?, ?, ?)", (*key, record_id))

    def effects_forget(self, *signal_ids: str) -> None:
        marks = ",".join("?" * len(signal_ids))
        self.conn.execute(f"DELETE FROM step_effects WHERE signal_id IN ({marks})", signal_ids)
