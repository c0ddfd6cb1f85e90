"""The record store as the engine sees it (SPEC §8 "Records"): names, validation, step effects.

Records live behind the storage interface (`engine.ports.RecordTx`, implemented by the router's
backends; the SQLite one keeps one table per type through sqlite-utils). This module holds what
every backend shares: which record types and field names are valid, the once-per-run rule for
record steps (`once`), and `RecordStore`, the engine's async/sync facade over `Database`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from engine.ports import Database, DeletionSink, EffectKey, Record, RecordTx

TYPE_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
RESERVED = ("id", "created_at", "updated_at")
_MAX_FIELD_NAME = 64

__all__ = [
    "RESERVED",
    "TYPE_RE",
    "EffectKey",
    "RecordError",
    "RecordStore",
    "check_fields",
    "check_type",
    "once",
]


class RecordError(ValueError):
    """Bad input for the record store: an invalid type or field name."""


def check_type(record_type: Any) -> str:
    if not isinstance(record_type, str) or not TYPE_RE.match(record_type):
        raise RecordError(
            f"invalid record type {record_type!r}: use lowercase letters, digits and _, starting with a letter"
        )
    return record_type


def _check_field_name(name: Any) -> str:
    if (
        not isinstance(name, str)
        or not name
        or len(name) > _MAX_FIELD_NAME
        or any(ord(ch) < 32 for ch in name)
    ):
        raise RecordError(f"invalid field name {name!r}")
    return name


def check_fields(fields: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validated fields without the reserved names (the store sets those)."""
    if fields is None:
        return {}
    if not isinstance(fields, Mapping):
        raise RecordError(f"record fields must be a table, got {type(fields).__name__}")
    return {name: value for name, value in fields.items() if _check_field_name(name).lower() not in RESERVED}


def check_upsert(
    key_fields: list[str] | str, fields: Mapping[str, Any] | None
) -> tuple[list[str], dict[str, Any]]:
    keys = [key_fields] if isinstance(key_fields, str) else list(key_fields)
    if not keys:
        raise RecordError("upsert needs at least one key field")
    given = dict(fields or {})
    missing = [k for k in keys if k not in given]
    if missing:
        raise RecordError(f"upsert key field(s) {', '.join(map(str, missing))} missing from fields")
    return keys, given


# -- step effects: a record step of a run happens once, even when the run is run again --------------
#
# A run's record write and the signal's outcome are two transactions. A crash (kill -9) between
# them leaves the record written and the signal still claimed: after the lease the run starts over.
# So each record step of a run writes, in the SAME transaction as its record, which record it
# touched; a step that finds its own entry returns that record instead of writing again.


def once(
    key: EffectKey | None, record_type: str, write: Callable[[RecordTx], Record | None]
) -> Callable[[RecordTx], Record | None]:
    """`write`, unless this step already did it: then the record it touched (as it is now)."""
    if key is None:
        return write

    def run(tx: RecordTx) -> Record | None:
        done = tx.effect_recall(key)
        if done is not None:
            if done.record_id is None:
                return None
            return tx.record_get(record_type, done.record_id) or {"id": done.record_id}
        record = write(tx)
        tx.effect_remember(key, record["id"] if record else None)
        return record

    return run


class RecordStore:
    """Records behind the `Database` seam: sync lookups for templates, async writes for actions."""

    def __init__(self, db: Database, deletions: DeletionSink | None = None) -> None:
        self.db = db
        self.deletions = deletions

    # RecordLookups (templates' findOne / findMany / findCount)
    def find_one(self, record_type: str, filters: Mapping[str, Any] | None = None) -> Record | None:
        rows = self.db.read(lambda tx: tx.record_find(record_type, filters, limit=1))
        return rows[0] if rows else None

    def find_many(
        self,
        record_type: str,
        filters: Mapping[str, Any] | None = None,
        limit: int | None = 100,
        order_by: str | None = None,
    ) -> list[Record]:
        return self.db.read(lambda tx: tx.record_find(record_type, filters, limit, order_by))

    def find_count(self, record_type: str, filters: Mapping[str, Any] | None = None) -> int:
        return self.db.read(lambda tx: tx.record_count(record_type, filters))

    def get(self, record_type: str, record_id: str) -> Record | None:
        return self.db.read(lambda tx: tx.record_get(record_type, record_id))

    # `effect` names the run step doing the write: a run started over does not write twice.
    async def create(
        self, record_type: str, fields: Mapping[str, Any] | None, *, effect: EffectKey | None = None
    ) -> Record:
        record = await self.db.write(
            once(effect, record_type, lambda tx: tx.record_create(record_type, fields))
        )
        assert record is not None
        return record

    async def update(
        self,
        record_type: str,
        record_id: str,
        fields: Mapping[str, Any] | None,
        *,
        effect: EffectKey | None = None,
    ) -> Record | None:
        return await self.db.write(
            once(effect, record_type, lambda tx: tx.record_update(record_type, record_id, fields))
        )

    async def upsert(
        self,
        record_type: str,
        key_fields: list[str],
        fields: Mapping[str, Any] | None,
        *,
        effect: EffectKey | None = None,
    ) -> Record:
        record = await self.db.write(
            once(effect, record_type, lambda tx: tx.record_upsert(record_type, key_fields, fields))
        )
        assert record is not None
        return record

    async def delete(
        self, record_type: str, record_id: str, *, effect: EffectKey | None = None
    ) -> Record | None:
        return await self.db.write(
            once(effect, record_type, lambda tx: delete_with_sink(tx, record_type, record_id, self.deletions))
        )


def delete_with_sink(
    tx: RecordTx, record_type: str, record_id: str, sink: DeletionSink | None
) -> Record | None:
    """Delete a record; the sink hears of it inside the same transaction. None if absent."""
    record = tx.record_delete(record_type, record_id)
    if record is not None and sink is not None:
        sink.record_deleted(tx, record_type, record)
    return record
