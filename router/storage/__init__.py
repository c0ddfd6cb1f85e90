"""Storage: every read and write of the router's state goes through `base.Tx` (see base.py).

`open_storage` opens SQLite (`sqlite/`) in a data dir; `open_postgres` a PostgreSQL database
(`postgres/`) that several nodes share.
"""

from __future__ import annotations

from pathlib import Path

from router.storage.base import Storage, StorageError, StorageUnavailable, Tx


def open_storage(path: Path, *, synchronous: str = "FULL") -> Storage:
    """Open the data store at `path`, migrated to this router's schema."""
    from router.storage.sqlite.writer import SqliteStorage

    storage = SqliteStorage(path, synchronous=synchronous)
    storage.open_sync()
    return storage


def open_postgres(
    url: str,
    *,
    pool_size: int = 4,
    statement_timeout: float = 30.0,
    connect_timeout: float = 5.0,
    max_deliveries: int = 20,
) -> Storage:
    """Connect to the PostgreSQL database at `url` and migrate it to this router's schema;
    `StorageUnavailable` if it cannot be reached."""
    from router.storage.postgres.writer import PgStorage

    storage = PgStorage(
        url,
        pool_size=pool_size,
        statement_timeout=statement_timeout,
        connect_timeout=connect_timeout,
        max_deliveries=max_deliveries,
    )
    try:
        storage.open_sync()
    except BaseException:
        storage.close()
        raise
    return storage


__all__ = ["Storage", "StorageError", "StorageUnavailable", "Tx", "open_postgres", "open_storage"]
