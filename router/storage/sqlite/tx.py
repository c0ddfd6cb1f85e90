"""`SqliteTx`: the storage interface (`router.storage.base.Tx`) over one SQLite connection.

The storage object keeps one per connection (writer, reader) and hands it to every job; the job
runs inside the transaction (or savepoint) the writer opened. The SQL is grouped by concern in
journal.py, state.py (sources, schedules), records.py, refused.py and search.py.
"""

from __future__ import annotations

import sqlite3

from router.storage.base import Tx
from router.storage.sqlite.journal import SqliteJournal
from router.storage.sqlite.records import SqliteRecords
from router.storage.sqlite.refused import SqliteRefused
from router.storage.sqlite.search import SqliteSearch
from router.storage.sqlite.state import SqliteState


class SqliteTx(SqliteSearch, SqliteJournal, SqliteState, SqliteRecords, SqliteRefused, Tx):
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
