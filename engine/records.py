"""The record store: stored records on SQLite through sqlite-utils (SPEC §8 "Records").

One table per record type, named `record_<type>`, with columns `id` (a ULID, primary key),
`created_at`, `updated_at`, then one column per field; a field seen for the first time adds a
column. Nested values (tables, lists) are kept as JSON text and decoded on the way out.

The module-level functions are plain synchronous functions over a `sqlite3.Connection` and never
commit: the caller owns the transaction (the router's single writer runs them inside its group
commit; the CLI and tests wrap them in `with conn:`). `RecordStore` puts them behind the
`Database` seam for the engine.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeAlias

import sqlite_utils
from sqlite_utils.db import quote_identifier
from ulid import ULID

from engine.entity import utcnow_iso
from engine.ports import Database, DeletionSink

TYPE_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
TABLE_PREFIX = "record_"
RESERVED = ("id", "created_at", "updated_at")
_MAX_FIELD_NAME = 64


# (signal id, workflow name, step id): one step of one run, the same on every retry of that run.
EffectKey: TypeAlias = tuple[str, str, str]
EFFECTS_TABLE = "step_effects"
_NOT_DONE = object()


class RecordError(ValueError):
    """Bad input for the record store: an invalid type or field name."""


def table_name(record_type: str) -> str:
    if not isinstance(record_type, str) or not TYPE_RE.match(record_type):
        raise RecordError(
            f"invalid record type {record_type!r}: use lowercase letters, digits and _, starting with a letter"
        )
    return TABLE_PREFIX + record_type


def _check_field_name(name: Any) -> str:
    if (
        not isinstance(name, str)
        or not name
        or len(name) > _MAX_FIELD_NAME
        or any(ord(ch) < 32 for ch in name)
    ):
        raise RecordError(f"invalid field name {name!r}")
    return name


def _clean_fields(fields: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validated fields without the reserved columns, nested values encoded as JSON text."""
    if fields is None:
        return {}
    if not isinstance(fields, Mapping):
        raise RecordError(f"record fields must be a table, got {type(fields).__name__}")
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if _check_field_name(name).lower() in RESERVED:
            continue
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


def _db(conn: sqlite3.Connection) -> sqlite_utils.Database:
    # No PRAGMA, no plugins: this wrapper is created per call inside someone else's transaction.
    return sqlite_utils.Database(conn, recursive_triggers=False, execute_plugins=False)


def _ensure_transaction(conn: sqlite3.Connection) -> None:
    """sqlite-utils commits by itself outside a transaction; inside one it uses savepoints."""
    if not conn.in_transaction:
        conn.execute("BEGIN")


def _columns(conn: sqlite3.Connection, table: str) -> dict[str, str]:
    """Column names of `table` keyed by lowercase name (empty if the table does not exist)."""
    rows = conn.execute(f"PRAGMA table_info({quote_identifier(table)})").fetchall()
    return {row[1].lower(): row[1] for row in rows}


def _select(
    conn: sqlite3.Connection, table: str, where: str = "", params: Iterable[Any] = (), tail: str = ""
) -> list[dict[str, Any]]:
    cur = conn.execute(f"SELECT * FROM {quote_identifier(table)} {where} {tail}", tuple(params))
    names = [d[0] for d in cur.description]
    return [{name: _decode(value) for name, value in zip(names, row, strict=True)} for row in cur.fetchall()]


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


def get_record(conn: sqlite3.Connection, record_type: str, record_id: str) -> dict[str, Any] | None:
    table = table_name(record_type)
    if not _columns(conn, table):
        return None
    rows = _select(conn, table, "WHERE id = ?", [str(record_id)])
    return rows[0] if rows else None


def create_record(conn: sqlite3.Connection, record_type: str, fields: Mapping[str, Any] | None) -> dict[str, Any]:
    table = table_name(record_type)
    now = utcnow_iso()
    row = {"id": str(ULID()), "created_at": now, "updated_at": now, **_clean_fields(fields)}
    _ensure_transaction(conn)
    _db(conn).table(table).insert(row, pk="id", alter=True)
    created = get_record(conn, record_type, row["id"])
    assert created is not None
    return created


def update_record(
    conn: sqlite3.Connection, record_type: str, record_id: str, fields: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """Merge `fields` into an existing record; None if there is no such record."""
    table = table_name(record_type)
    clean = _clean_fields(fields)
    if get_record(conn, record_type, record_id) is None:
        return None
    _ensure_transaction(conn)
    _db(conn).table(table).update(str(record_id), {**clean, "updated_at": utcnow_iso()}, alter=True)
    return get_record(conn, record_type, record_id)


def upsert_record(
    conn: sqlite3.Connection, record_type: str, key_fields: list[str], fields: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Update the first record whose `key_fields` equal those in `fields`, or create one."""
    if isinstance(key_fields, str):
        key_fields = [key_fields]
    if not key_fields:
        raise RecordError("upsert needs at least one key field")
    given = dict(fields or {})
    missing = [k for k in key_fields if k not in given]
    if missing:
        raise RecordError(f"upsert key field(s) {', '.join(map(str, missing))} missing from fields")
    matches = find(conn, record_type, {k: given[k] for k in key_fields}, limit=1)
    if matches:
        updated = update_record(conn, record_type, matches[0]["id"], given)
        assert updated is not None
        return updated
    return create_record(conn, record_type, given)


def delete_record(
    conn: sqlite3.Connection, record_type: str, record_id: str, sink: DeletionSink | None = None
) -> dict[str, Any] | None:
    """Delete a record; the sink hears of it inside the same transaction. None if absent."""
    table = table_name(record_type)
    record = get_record(conn, record_type, record_id)
    if record is None:
        return None
    _ensure_transaction(conn)
    conn.execute(f"DELETE FROM {quote_identifier(table)} WHERE id = ?", (str(record_id),))
    if sink is not None:
        sink.record_deleted(conn, record_type, record)
    return record


def list_records(
    conn: sqlite3.Connection, record_type: str, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    """Records of a type, newest first."""
    table = table_name(record_type)
    if not _columns(conn, table):
        return []
    return _select(conn, table, tail="ORDER BY id DESC LIMIT ? OFFSET ?", params=[int(limit), int(offset)])


def list_record_types(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'record\\_%' ESCAPE '\\' ORDER BY name"
    ).fetchall()
    names = [row[0][len(TABLE_PREFIX) :] for row in rows]
    return [n for n in names if TYPE_RE.match(n)]


def find(
    conn: sqlite3.Connection,
    record_type: str,
    filters: Mapping[str, Any] | None = None,
    limit: int | None = 100,
    order_by: str | None = None,
) -> list[dict[str, Any]]:
    """Records whose fields equal `filters` (None matches NULL, a list matches any of its values).

    `order_by` is a field name, `-field` for descending; default oldest first. A filter on a field
    no record has yet matches nothing; an unknown `order_by` field is ignored.
    """
    table = table_name(record_type)
    cols = _columns(conn, table)
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
    return _select(conn, table, sql_where, params, tail)


def count(conn: sqlite3.Connection, record_type: str, filters: Mapping[str, Any] | None = None) -> int:
    table = table_name(record_type)
    cols = _columns(conn, table)
    if not cols:
        return 0
    where = _where(cols, filters)
    if where is None:
        return 0
    sql_where, params = where
    row = conn.execute(f"SELECT COUNT(*) FROM {quote_identifier(table)} {sql_where}", tuple(params)).fetchone()
    return int(row[0])


# -- step effects: a record step of a run happens once, even when the run is run again --------------
#
# A run's record write and the signal's outcome are two transactions. A crash (kill -9) between
# them leaves the record written and the signal still claimed: after the lease the run starts over.
# So each record step of a run writes, in the SAME transaction as its record, which record it
# touched; a step that finds its own entry returns that record instead of writing again.


def create_effects_table(conn: sqlite3.Connection) -> None:
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {EFFECTS_TABLE} (signal_id TEXT NOT NULL, workflow TEXT NOT NULL,"
        " step_id TEXT NOT NULL, record_id TEXT, PRIMARY KEY (signal_id, workflow, step_id))"
    )


def recall_effect(conn: sqlite3.Connection, key: EffectKey) -> Any:
    """The record id this step already wrote (None if it found no record), or `_NOT_DONE`."""
    create_effects_table(conn)
    row = conn.execute(
        f"SELECT record_id FROM {EFFECTS_TABLE} WHERE signal_id = ? AND workflow = ? AND step_id = ?", key
    ).fetchone()
    return _NOT_DONE if row is None else row[0]


def remember_effect(conn: sqlite3.Connection, key: EffectKey, record_id: str | None) -> None:
    _ensure_transaction(conn)
    conn.execute(f"INSERT OR REPLACE INTO {EFFECTS_TABLE} VALUES (?, ?, ?, ?)", (*key, record_id))


def forget_effects(conn: sqlite3.Connection, *signal_ids: str) -> None:
    """The signals are done (or pruned): a later replay is a new run whose steps write again."""
    create_effects_table(conn)
    marks = ",".join("?" * len(signal_ids))
    conn.execute(f"DELETE FROM {EFFECTS_TABLE} WHERE signal_id IN ({marks})", signal_ids)


def once(
    key: EffectKey | None, record_type: str, write: Callable[[sqlite3.Connection], dict[str, Any] | None]
) -> Callable[[sqlite3.Connection], dict[str, Any] | None]:
    """`write`, unless this step already did it: then the record it touched (as it is now)."""
    if key is None:
        return write

    def run(conn: sqlite3.Connection) -> dict[str, Any] | None:
        done = recall_effect(conn, key)
        if done is not _NOT_DONE:
            if done is None:
                return None
            return get_record(conn, record_type, done) or {"id": done}
        record = write(conn)
        remember_effect(conn, key, record["id"] if record else None)
        return record

    return run


class RecordStore:
    """Records behind the `Database` seam: sync lookups for templates, async writes for actions."""

    def __init__(self, db: Database, deletions: DeletionSink | None = None) -> None:
        self.db = db
        self.deletions = deletions

    # RecordLookups (templates' findOne / findMany / findCount)
    def find_one(self, record_type: str, filters: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        rows = self.db.read(lambda conn: find(conn, record_type, filters, limit=1))
        return rows[0] if rows else None

    def find_many(
        self,
        record_type: str,
        filters: Mapping[str, Any] | None = None,
        limit: int | None = 100,
        order_by: str | None = None,
    ) -> list[dict[str, Any]]:
        return self.db.read(lambda conn: find(conn, record_type, filters, limit, order_by))

    def find_count(self, record_type: str, filters: Mapping[str, Any] | None = None) -> int:
        return self.db.read(lambda conn: count(conn, record_type, filters))

    def get(self, record_type: str, record_id: str) -> dict[str, Any] | None:
        return self.db.read(lambda conn: get_record(conn, record_type, record_id))

    # `effect` names the run step doing the write: a run started over does not write twice.
    async def create(
        self, record_type: str, fields: Mapping[str, Any] | None, *, effect: EffectKey | None = None
    ) -> dict[str, Any]:
        record = await self.db.write(once(effect, record_type, lambda conn: create_record(conn, record_type, fields)))
        assert record is not None
        return record

    async def update(
        self, record_type: str, record_id: str, fields: Mapping[str, Any] | None, *, effect: EffectKey | None = None
    ) -> dict[str, Any] | None:
        return await self.db.write(
            once(effect, record_type, lambda conn: update_record(conn, record_type, record_id, fields))
        )

    async def upsert(
        self, record_type: str, key_fields: list[str], fields: Mapping[str, Any] | None, *,
        effect: EffectKey | None = None,
    ) -> dict[str, Any]:
        record = await self.db.write(
            once(effect, record_type, lambda conn: upsert_record(conn, record_type, key_fields, fields))
        )
        assert record is not None
        return record

    async def delete(
        self, record_type: str, record_id: str, *, effect: EffectKey | None = None
    ) -> dict[str, Any] | None:
        return await self.db.write(
            once(effect, record_type, lambda conn: delete_record(conn, record_type, record_id, self.deletions))
        )
