"""Storage: every read and write of the router's state goes through `base.Tx` (see base.py).

`open_storage` picks the backend; SQLite (`sqlite/`) is the only one today.
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


__all__ = ["Storage", "StorageError", "StorageUnavailable", "Tx", "open_storage"]
