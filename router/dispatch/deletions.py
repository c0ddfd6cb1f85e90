"""Record deletions become `deletions.<type>` signals in the delete's own transaction.

`__data.deleted_record` holds the record's last fields at top level (`id`, `created_at`,
`updated_at` and every field), with `type` always the record type; a field of the record that
is itself named `type` is kept, with all the others, under `deleted_record.fields`.
"""

from __future__ import annotations

from typing import Any

from engine.entity import Entity
from engine.ports import RecordTx
from router.storage.base import Tx


class JournalDeletionSink:
    def record_deleted(self, tx: RecordTx, record_type: str, record: dict[str, Any]) -> str:
        if not isinstance(tx, Tx):
            raise TypeError("deletion signals are journaled in the delete's own storage transaction")
        deleted = {**record, "type": record_type, "fields": dict(record)}
        entity = Entity("deletions", f"deletions.{record_type}", {"deleted_record": deleted})
        return tx.append_signal(entity).signal_id
