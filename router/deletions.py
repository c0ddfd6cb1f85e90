"""Record deletions become `deletions.<type>` signals in the delete's own transaction."""

from __future__ import annotations

import sqlite3
from typing import Any

from engine.entity import Entity
from router.journal import append_signal


class JournalDeletionSink:
    def record_deleted(self, conn: sqlite3.Connection, record_type: str, record: dict[str, Any]) -> None:
        entity = Entity("deletions", f"deletions.{record_type}", {"deleted_record": {"type": record_type, **record}})
        append_signal(conn, entity)
