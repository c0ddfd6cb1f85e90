"""The durable journal of signals and their runs.

Every function here is a plain function of a `sqlite3.Connection`, run by `Storage` inside a
group-committed transaction; `Journal` wraps them for trio callers. Work is handed between
processes only through claims recorded here (owner + lease), never in memory.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from engine.entity import Entity
from router.storage import Storage

SCHEMA = """
CREATE TABLE IF NOT EXISTS signals (
    id TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    source TEXT NOT NULL,
    received_at TEXT NOT NULL,
    entity TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    dedup_key TEXT,
    owner TEXT,
    lease_until REAL,
    not_before REAL NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL DEFAULT 0,
    ack TEXT
);
CREATE INDEX IF NOT EXISTS signals_claimable ON signals(status, not_before);
CREATE INDEX IF NOT EXISTS signals_source ON signals(source, id);
CREATE TABLE IF NOT EXISTS dedup (
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    signal_id TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (source, key)
);
CREATE INDEX IF NOT EXISTS dedup_expiry ON dedup(expires_at);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    signal_id TEXT NOT NULL,
    workflow TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    started_at TEXT NOT NULL,
    duration_ms REAL NOT NULL,
    error TEXT,
    trace TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_signal ON runs(signal_id);
CREATE TABLE IF NOT EXISTS sources (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    first_hash TEXT,
    second_hash TEXT,
    api_key TEXT,
    active INTEGER,
    updated_at REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, name)
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"


def create_schema(conn: sqlite3.Connection) -> None:
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


@dataclass
class Appended:
    signal_id: str
    duplicate: bool = False
    ack: dict[str, Any] | None = None  # the original acknowledgement of a duplicate, if recorded


@dataclass
class Signal:
    id: str
    channel: str
    source: str
    received_at: str
    entity: Entity
    status: str
    attempts: int
    last_error: str | None
    dedup_key: str | None
    owner: str | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Signal:
        entity = Entity.from_row(row["id"], row["channel"], row["source"], row["received_at"], row["entity"])
        return cls(
            id=row["id"],
            channel=row["channel"],
            source=row["source"],
            received_at=row["received_at"],
            entity=entity,
            status=row["status"],
            attempts=row["attempts"],
            last_error=row["last_error"],
            dedup_key=row["dedup_key"],
            owner=row["owner"],
        )

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "channel": self.channel,
            "source": self.source,
            "received_at": self.received_at,
            "status": self.status,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "dedup_key": self.dedup_key,
        }


# -- pure functions over a connection ---------------------------------------------------------


def append_signal(
    conn: sqlite3.Connection,
    entity: Entity,
    *,
    dedup_key: str | None = None,
    dedup_window: float = 86400.0,
    owner: str | None = None,
    lease: float = 15.0,
    ack: dict[str, Any] | None = None,
    now: float | None = None,
    settled: bool = False,
) -> Appended:
    """Insert one signal; with `owner` it is claimed by that process in the same transaction.

    `settled` journals it as done at once (no workflow listens to its source)."""
    now = time.time() if now is None else now
    if dedup_key:
        row = conn.execute(
            "SELECT d.signal_id, d.expires_at, s.ack FROM dedup d LEFT JOIN signals s ON s.id = d.signal_id "
            "WHERE d.source = ? AND d.key = ?",
            (entity.source, dedup_key),
        ).fetchone()
        if row is not None and row["expires_at"] > now:
            return Appended(row["signal_id"], duplicate=True, ack=json.loads(row["ack"]) if row["ack"] else None)
        conn.execute(
            "INSERT OR REPLACE INTO dedup (source, key, signal_id, expires_at) VALUES (?, ?, ?, ?)",
            (entity.source, dedup_key, entity.id, now + dedup_window),
        )
    if settled:
        status, lease_until, owner = DONE, None, None
    else:
        status, lease_until = (RUNNING, now + lease) if owner else (PENDING, None)
    conn.execute(
        "INSERT INTO signals (id, channel, source, received_at, entity, status, dedup_key, owner, lease_until,"
        " updated_at, ack) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            entity.id,
            entity.channel,
            entity.source,
            entity.received_at,
            entity.to_json(),
            status,
            dedup_key,
            owner,
            lease_until,
            now,
            json.dumps(ack) if ack is not None else None,
        ),
    )
    return Appended(entity.id)


def claim_signals(
    conn: sqlite3.Connection, owner: str, limit: int, *, lease: float = 15.0, now: float | None = None
) -> list[Signal]:
    """Claim up to `limit` runnable signals: pending and due, or running with an expired lease."""
    now = time.time() if now is None else now
    rows = conn.execute(
        "UPDATE signals SET status = 'running', owner = ?, lease_until = ?, updated_at = ? "
        "WHERE id IN (SELECT id FROM signals WHERE (status = 'pending' AND not_before <= ?) "
        "   OR (status = 'running' AND lease_until < ?) ORDER BY id LIMIT ?) "
        "RETURNING *",
        (owner, now + lease, now, now, now, limit),
    ).fetchall()
    return sorted((Signal.from_row(r) for r in rows), key=lambda s: s.id)


def has_claimable(conn: sqlite3.Connection, now: float | None = None) -> bool:
    """A cheap read before a claim: is anything pending and due, or leased and expired?"""
    now = time.time() if now is None else now
    row = conn.execute(
        "SELECT 1 FROM signals WHERE (status = 'pending' AND not_before <= ?)"
        " OR (status = 'running' AND lease_until < ?) LIMIT 1",
        (now, now),
    ).fetchone()
    return row is not None


def renew_leases(conn: sqlite3.Connection, owner: str, signal_ids: list[str], lease: float) -> None:
    now = time.time()
    conn.executemany(
        "UPDATE signals SET lease_until = ? WHERE id = ? AND owner = ? AND status = 'running'",
        [(now + lease, sid, owner) for sid in signal_ids],
    )


def finish_signal(
    conn: sqlite3.Connection,
    signal_id: str,
    owner: str,
    *,
    status: str,
    error: str | None = None,
    retry_at: float | None = None,
) -> bool:
    """Record the outcome of one attempt; returns False if the claim was lost meanwhile."""
    now = time.time()
    if retry_at is not None:
        cur = conn.execute(
            "UPDATE signals SET status = 'pending', owner = NULL, lease_until = NULL, not_before = ?,"
            " attempts = attempts + 1, last_error = ?, updated_at = ? WHERE id = ? AND owner = ?",
            (retry_at, error, now, signal_id, owner),
        )
    else:
        cur = conn.execute(
            "UPDATE signals SET status = ?, owner = NULL, lease_until = NULL, attempts = attempts + 1,"
            " last_error = ?, updated_at = ? WHERE id = ? AND owner = ?",
            (status, error, now, signal_id, owner),
        )
    return cur.rowcount == 1


def record_run(
    conn: sqlite3.Connection,
    signal_id: str,
    workflow: str,
    attempt: int,
    status: str,
    started_at: str,
    duration_ms: float,
    error: str | None,
    trace: list[dict[str, Any]],
) -> None:
    conn.execute(
        "INSERT INTO runs (signal_id, workflow, attempt, status, started_at, duration_ms, error, trace)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (signal_id, workflow, attempt, status, started_at, duration_ms, error, json.dumps(trace, default=str)),
    )


def release_claims(conn: sqlite3.Connection, owner: str) -> int:
    """Hand back every signal `owner` still holds (clean shutdown): pending again, attempt kept."""
    cur = conn.execute(
        "UPDATE signals SET status = 'pending', owner = NULL, lease_until = NULL, updated_at = ?"
        " WHERE owner = ? AND status = 'running'",
        (time.time(), owner),
    )
    return cur.rowcount


def requeue_signal(conn: sqlite3.Connection, signal_id: str) -> bool:
    """Make a failed (or done) signal runnable again: `router replay`."""
    cur = conn.execute(
        "UPDATE signals SET status = 'pending', owner = NULL, lease_until = NULL, not_before = 0,"
        " updated_at = ? WHERE id = ? AND status IN ('failed', 'done')",
        (time.time(), signal_id),
    )
    return cur.rowcount == 1


def get_signal(conn: sqlite3.Connection, signal_id: str) -> Signal | None:
    row = conn.execute("SELECT * FROM signals WHERE id = ?", (signal_id,)).fetchone()
    return Signal.from_row(row) if row else None


def list_signals(
    conn: sqlite3.Connection,
    *,
    status: str | None = None,
    source: str | None = None,
    limit: int = 50,
    before: str | None = None,
) -> list[Signal]:
    clauses, params = [], []  # type: ignore[var-annotated]
    if status:
        clauses.append("status = ?")
        params.append(status)
    if source:
        clauses.append("source = ?")
        params.append(source)
    if before:
        clauses.append("id < ?")
        params.append(before)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(f"SELECT * FROM signals {where} ORDER BY id DESC LIMIT ?", (*params, limit)).fetchall()
    return [Signal.from_row(r) for r in rows]


def runs_for(conn: sqlite3.Connection, signal_id: str) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT * FROM runs WHERE signal_id = ? ORDER BY id", (signal_id,)).fetchall()
    return [{**dict(r), "trace": json.loads(r["trace"])} for r in rows]


def done_workflows(conn: sqlite3.Connection, signal_id: str) -> set[str]:
    rows = conn.execute("SELECT workflow FROM runs WHERE signal_id = ? AND status = 'done'", (signal_id,))
    return {r[0] for r in rows}


def counts_by_status(conn: sqlite3.Connection) -> dict[str, int]:
    return {r[0]: r[1] for r in conn.execute("SELECT status, count(*) FROM signals GROUP BY status")}


def next_due(conn: sqlite3.Connection) -> float | None:
    row = conn.execute("SELECT min(not_before) FROM signals WHERE status = 'pending'").fetchone()
    return row[0] if row and row[0] is not None else None


class Journal:
    """Trio-facing wrapper: async writes through the group-commit writer, sync reads."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def append(self, entity: Entity, **kwargs: Any) -> Appended:
        return await self.storage.write(lambda conn: append_signal(conn, entity, **kwargs))

    async def claim(self, owner: str, limit: int, lease: float) -> list[Signal]:
        return await self.storage.write(lambda conn: claim_signals(conn, owner, limit, lease=lease))

    async def renew(self, owner: str, signal_ids: list[str], lease: float) -> None:
        await self.storage.write(lambda conn: renew_leases(conn, owner, signal_ids, lease))

    def get(self, signal_id: str) -> Signal | None:
        return self.storage.read(lambda conn: get_signal(conn, signal_id))
