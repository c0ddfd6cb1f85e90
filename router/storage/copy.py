"""`router db copy`: a stopped SQLite data dir into an empty PostgreSQL database, every table.

Journal (signals with their runs, idempotency keys, step effects), sources (URL hashes and keys,
so the copied endpoints keep their URLs and credentials), schedules with their cursors and fired
slots, and records. The scheduler lease and claims are not copied: nothing runs during a copy.
"""

from __future__ import annotations

import os
from pathlib import Path

from router.storage.base import StorageError


def copy_sqlite_to_postgres(db: Path, url: str) -> dict[str, int]:
    from router.storage.postgres.load import load
    from router.storage.sqlite.export import TABLES, export, open_readonly

    if not db.exists():
        raise StorageError(f"{db}: no such database (is data_dir right?)")
    conn = open_readonly(db)
    try:
        return load(url, lambda table: export(conn, table), TABLES)
    finally:
        conn.close()


def in_use_by(path: Path) -> list[int]:
    """PIDs of other processes that have the database open (a running daemon)."""
    pids: list[int] = []
    target = str(path.resolve())
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if str(fd.readlink()).startswith(target):
                    pids.append(int(proc.name))
                    break
        except OSError:
            continue
    return pids
