"""The backends the contract suite runs against, by name, so child processes can open them too.

A backend is opened from a `location` string (a file path for SQLite; a DSN for PostgreSQL
later). Add a backend here and to `NAMES`; every test in this folder then runs against it.
"""

from __future__ import annotations

from pathlib import Path

from router.storage import Storage, open_storage

NAMES = ["sqlite"]


def location(name: str, tmp: Path) -> str:
    if name == "sqlite":
        return str(tmp / "contract.db")
    raise ValueError(f"unknown backend {name!r}")


def open_backend(name: str, where: str) -> Storage:
    """A fresh store with its own connections. Durability is relaxed (the suite checks who wins
    races, not fsync; tests/test_faults.py checks durability)."""
    if name == "sqlite":
        return open_storage(Path(where), synchronous="OFF")
    raise ValueError(f"unknown backend {name!r}")
