"""Records and step effects on PostgreSQL (SPEC §8 "Records"): one `records` table, fields as jsonb.

One table for every type (`type`, `id`, timestamps, `fields jsonb`) instead of SQLite's table per
type: a new field is data, not an `ALTER TABLE` taking ACCESS EXCLUSIVE on every node at once.
Equality filters use containment (`fields @> {...}`, the GIN index); because SQLite's column
affinity makes `1` and `"1"` equal, a number also matches its string form and a numeric-looking
string matches the number, so a workflow finds the same records on both backends. Ordering puts
missing/null first, then numbers (numerically), then strings (byte order), as SQLite does.

jsonb refuses `\\u0000`: a record field holding a NUL byte is refused (RecordError) rather than
stored altered. An upsert locks its key (`pg_advisory_xact_lock`) before it looks: two nodes
upserting one key at once must not both create; a step effect is looked up under a lock on its
key for the same reason (engine.records.once: look, write, remember, in one transaction).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ulid import ULID

from engine.entity import utcnow_iso
from engine.ports import Effect, EffectKey, Record
from engine.records import RecordError, check_fields, check_type, check_upsert

_NUMERIC = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")


def _dumps(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"), default=str, allow_nan=False)
    if "\\u0000" in text:
        raise RecordError("a record field cannot hold a NUL byte (\\u0000)")
    return text


def _encode(fields: Mapping[str, Any] | None) -> str:
    out: dict[str, Any] = {}
    for name, value in check_fields(fields).items():
        if isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif value is not None and not isinstance(value, (str, int, float, bool, dict, list)):
            value = str(value)
        out[name] = value
    try:
        return _dumps(out)
    except ValueError as exc:
        raise RecordError(f"record fields: {exc}") from exc


def _record(row: dict[str, Any]) -> Record:
    return {
        "id": row["id"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        **row["fields"],
    }


def _equal(name: str, value: Any, params: list[Any]) -> str:
    """SQL for `field == value` with SQLite's affinity rules between numbers and strings."""
    f = "fields -> %s"
    if isinstance(value, (dict, list, tuple)):
        params += [name, _dumps(list(value) if isinstance(value, tuple) else value)]
        return f"({f} = %s::jsonb)"
    params += [_dumps({name: value})]
    sql = ["fields @> %s::jsonb"]
    if isinstance(value, bool):
        params += [name, int(value)]
        sql.append(f"{f} = to_jsonb(%s::int)")
    elif isinstance(value, (int, float)):
        params += [name, name, str(value)]
        sql.append(f"(jsonb_typeof({f}) = 'string' AND fields ->> %s = %s)")
    elif isinstance(value, str) and _NUMERIC.match(value):
        params += [name, name, value.strip()]
        sql.append(f"(jsonb_typeof({f}) = 'number' AND (fields ->> %s)::numeric = %s::numeric)")
    return "(" + " OR ".join(sql) + ")"


def _where(record_type: str, filters: Mapping[str, Any] | None) -> tuple[str, list[Any]] | None:
    params: list[Any] = [record_type]
    clauses = ["type = %s"]
    for raw, value in (filters or {}).items():
        name = str(raw)
        if value is None:
            # Like SQLite: NULL or absent matches, but only if some record of the type has the field.
            params += [name, record_type, name]
            clauses.append(
                "coalesce(jsonb_typeof(fields -> %s), 'null') = 'null'"
                " AND EXISTS (SELECT 1 FROM records r2 WHERE r2.type = %s AND r2.fields ? %s)"
            )
        elif isinstance(value, (list, tuple, set)):
            values = list(value)
            if not values:
                return None
            clauses.append("(" + " OR ".join(_equal(name, v, params) for v in values) + ")")
        else:
            clauses.append(_equal(name, value, params))
    return "WHERE " + " AND ".join(clauses), params


class PgRecords:
    conn: Any

    def _rows(self, sql: str, params: Any = None) -> list[Record]:
        return [_record(r) for r in self.conn.execute(sql, params).fetchall()]

    def record_get(self, record_type: str, record_id: str) -> Record | None:
        rows = self._rows(
            "SELECT * FROM records WHERE type = %s AND id = %s", (check_type(record_type), str(record_id))
        )
        return rows[0] if rows else None

    def record_create(self, record_type: str, fields: Mapping[str, Any] | None) -> Record:
        now = utcnow_iso()
        [row] = self._rows(
            "INSERT INTO records (type, id, created_at, updated_at, fields) VALUES (%s, %s, %s, %s, %s::jsonb)"
            " RETURNING *",
            (check_type(record_type), str(ULID()), now, now, _encode(fields)),
        )
        return row

    def record_update(
        self, record_type: str, record_id: str, fields: Mapping[str, Any] | None
    ) -> Record | None:
        rows = self._rows(
            "UPDATE records SET fields = fields || %s::jsonb, updated_at = %s WHERE type = %s AND id = %s RETURNING *",
            (_encode(fields), utcnow_iso(), check_type(record_type), str(record_id)),
        )
        return rows[0] if rows else None

    def record_upsert(
        self, record_type: str, key_fields: list[str], fields: Mapping[str, Any] | None
    ) -> Record:
        keys, given = check_upsert(key_fields, fields)
        key = {k: given[k] for k in keys}
        self.conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            (f"{check_type(record_type)}:{json.dumps(key, sort_keys=True, default=str)}",),
        )
        matches = self.record_find(record_type, key, limit=1)
        if matches:
            updated = self.record_update(record_type, matches[0]["id"], given)
            assert updated is not None
            return updated
        return self.record_create(record_type, given)

    def record_delete(self, record_type: str, record_id: str) -> Record | None:
        rows = self._rows(
            "DELETE FROM records WHERE type = %s AND id = %s RETURNING *",
            (check_type(record_type), str(record_id)),
        )
        return rows[0] if rows else None

    def record_list(self, record_type: str, limit: int = 100, offset: int = 0) -> list[Record]:
        return self._rows(
            "SELECT * FROM records WHERE type = %s ORDER BY id DESC LIMIT %s OFFSET %s",
            (check_type(record_type), int(limit), int(offset)),
        )

    def record_types(self) -> list[str]:
        return [
            r["type"] for r in self.conn.execute("SELECT DISTINCT type FROM records ORDER BY type").fetchall()
        ]

    def record_find(
        self,
        record_type: str,
        filters: Mapping[str, Any] | None = None,
        limit: int | None = 100,
        order_by: str | None = None,
    ) -> list[Record]:
        where = _where(check_type(record_type), filters)
        if where is None:
            return []
        sql, params = where
        order = "ORDER BY id"
        if order_by:
            d = "DESC" if order_by.startswith("-") else "ASC"
            name = order_by.lstrip("-")
            kind = "jsonb_typeof(fields -> %s)"
            order = (
                f"ORDER BY CASE coalesce({kind}, 'null') WHEN 'null' THEN 0 WHEN 'number' THEN 1"
                f" WHEN 'boolean' THEN 1 WHEN 'string' THEN 2 ELSE 3 END {d},"
                f" CASE WHEN {kind} = 'number' THEN (fields ->> %s)::numeric END {d},"
                f' (fields ->> %s) COLLATE "C" {d}, id'
            )
            params = [*params, name, name, name, name]
        if limit is not None:
            order += " LIMIT %s"
            params = [*params, int(limit)]
        return self._rows(f"SELECT * FROM records {sql} {order}", params)

    def record_count(self, record_type: str, filters: Mapping[str, Any] | None = None) -> int:
        where = _where(check_type(record_type), filters)
        if where is None:
            return 0
        sql, params = where
        return int(self.conn.execute(f"SELECT count(*) AS n FROM records {sql}", params).fetchone()["n"])

    # -- step effects (engine.records.once) --------------------------------------------------------------

    def effect_recall(self, key: EffectKey) -> Effect | None:
        # Two runs of one signal on two nodes (a lease taken over) must not both find "not done yet"
        # and both write: the step's key is locked until this transaction ends, so the second waits
        # and then finds the first's effect. (SQLite's single writer gives this for free.)
        self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 1))", ("\x1f".join(key),))
        row = self.conn.execute(
            "SELECT record_id FROM step_effects WHERE signal_id = %s AND workflow = %s AND step_id = %s", key
        ).fetchone()
        return None if row is None else Effect(row["record_id"])

    def effect_remember(self, key: EffectKey, record_id: str | None) -> None:
        self.conn.execute(
            "INSERT INTO step_effects VALUES (%s, %s, %s, %s) ON CONFLICT (signal_id, workflow, step_id)"
            " DO UPDATE SET record_id = excluded.record_id",
            (*key, record_id),
        )

    def effects_forget(self, *signal_ids: str) -> None:
        self.conn.execute("DELETE FROM step_effects WHERE signal_id = ANY(%s)", (list(signal_ids),))
