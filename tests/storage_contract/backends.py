"""The backends the contract suite runs against, by name, so child processes can open them too.

A backend is opened from a `location` string (a file path for SQLite; a DSN for PostgreSQL, one
fresh database per test from tests/pg.py). Add a backend here and to `NAMES`; every test in this
folder then runs against it.
"""

from __future__ import annotations

from pathlib import Path

from router.storage import Storage, open_postgres, open_storage

NAMES = ["sqlite", "postgres"]


def location(name: str, tmp: Path, pg_database: str | None = None) -> str:
    if name == "sqlite":
        return str(tmp / "contract.db")
    if name == "postgres":
        assert pg_database is not None
        return pg_database
    raise ValueError(f"unknown backend {name!r}")


def open_backend(name: str, where: str) -> Storage:
    """A fresh store with its own connections. Durability is relaxed (the suite checks who wins
    races, not fsync; tests/test_faults.py checks durability)."""
    if name == "sqlite":
        return open_storage(Path(where), synchronous="OFF")
    if name == "postgres":
        return open_postgres(where, pool_size=2)
    raise ValueError(f"unknown backend {name!r}")
