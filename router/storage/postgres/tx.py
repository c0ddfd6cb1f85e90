"""`PgTx`: the storage interface (`router.storage.base.Tx`) over one psycopg connection.

One per transaction. `now()` is the database's clock (SCALE-OUT §8 trap 6: node clocks drift):
PostgreSQL's `now()` is the transaction's start time, constant inside it, so it is read once
per transaction and cached. The writer also reads what a batch appended (`appended`, the
pre-minted ids that resolve a commit of unknown outcome) and whether it made work runnable for
other processes (`wants_notify`: one NOTIFY after the commit).
"""

from __future__ import annotations

from typing import Any

from router.storage.base import Tx
from router.storage.postgres.journal import PgJournal
from router.storage.postgres.records import PgRecords
from router.storage.postgres.refused import PgRefused
from router.storage.postgres.search import PgSearch
from router.storage.postgres.state import PgState


class PgTx(PgJournal, PgSearch, PgState, PgRefused, PgRecords, Tx):
    def __init__(self, conn: Any, *, max_deliveries: int = 20, now: float | None = None) -> None:
        self.conn = conn
        self.max_deliveries = max_deliveries
        self._now = now
        self.appended: list[str] = []
        self.wants_notify = False

    def now(self) -> float:
        if self._now is None:
            self._now = float(
                self.conn.execute("SELECT extract(epoch FROM now())::float8 AS t").fetchone()["t"]
            )
        return self._now
