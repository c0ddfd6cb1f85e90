"""Record deletions become `deletions.<type>` signals in the delete's own transaction.

`__data.deleted_record` holds the record's last fields at top level (`id`, `created_at`,
`updated_at` and every field), with `type` always the record type; a field of the record that
is itself named `type` is kept, with all the others, under `deleted_record.fields`.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from engine.entity import Entity
from router.journal import append_signal


class JournalDeletionSink:
    def record_deleted(self, conn: sqlite3.Connection, record_type: str, record: dict[str, Any]) -> None:
        deleted = {**record, "type": record_type, "fields": dict(record)}
        entity = Entity("deletions", f"deletions.{record_type}", {"deleted_record": deleted})
        append_signal(conn, entity)
