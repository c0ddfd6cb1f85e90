"""Schedule bookkeeping in the journal's database: slot claims, cursors and the scheduler lease.

Plain functions of a `sqlite3.Connection`, each run inside one `Storage` transaction (SPEC §10:
the SQLite specifics of schedules stay behind this seam; a PostgreSQL backend would claim slots
with the same primary key and the lease with the same conditional update).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from engine.entity import Entity
from router.journal import append_signal
from router.schedule_triggers import local_iso, slot_key

log = structlog.get_logger("router.schedules")

SLOT_RETENTION = 3600.0  # claimed slots are kept at least this long (and 2 x the largest grace)
SCHEMA = """
CREATE TABLE IF NOT EXISTS schedule_state (
    name TEXT PRIMARY KEY,
    definition TEXT NOT NULL,
    since REAL NOT NULL,
    cursor TEXT,
    cursor_ts REAL,
    last_slot TEXT,
    last_fired_at TEXT,
    last_signal_id TEXT,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS schedule_slots (
    schedule TEXT NOT NULL,
    slot_time TEXT NOT NULL,
    signal_id TEXT NOT NULL,
    fired_at TEXT NOT NULL,
    fired_ts REAL NOT NULL,
    PRIMARY KEY (schedule, slot_time)
);
CREATE INDEX IF NOT EXISTS schedule_slots_fired ON schedule_slots(fired_ts);
CREATE TABLE IF NOT EXISTS schedule_lease (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    owner TEXT NOT NULL,
    lease_until REAL NOT NULL
);
"""


class LeaseLost(Exception):
    """Another process drives the schedules now."""


def create_schema(conn: sqlite3.Connection) -> None:
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


def make_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{int(time.time() * 1000) % 10**8}"


def _owner_is_dead(owner: str) -> bool:
    """True when `owner` is a process of this host that no longer exists."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # ourselves, or an earlier Scheduler in this process: not dead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


# -- functions over a connection (run inside one transaction each) -------------------------------


@dataclass
class State:
    name: str
    definition: str
    since: float
    cursor_ts: float | None
    last_slot: str | None
    last_fired_at: str | None
    last_signal_id: str | None

    @property
    def cursor(self) -> datetime | None:
        return None if self.cursor_ts is None else datetime.fromtimestamp(self.cursor_ts, UTC)


def load_states(conn: sqlite3.Connection) -> dict[str, State]:
    try:
        rows = conn.execute("SELECT * FROM schedule_state").fetchall()
    except sqlite3.OperationalError:  # not created yet (a CLI before the first start)
        return {}
    return {
        r["name"]: State(r["name"], r["definition"], r["since"], r["cursor_ts"], r["last_slot"], r["last_fired_at"],
                         r["last_signal_id"])
        for r in rows
    }


def register(conn: sqlite3.Connection, items: Iterable[tuple[str, str, bool]], now: float) -> dict[str, State]:
    """Ensure a state row per `(name, definition, one_off)`; a new or changed definition starts
    afresh from `now` (one-off `at` schedules from the beginning, so a recent run date fires)."""
    for name, defn, one_off in items:
        row = conn.execute("SELECT definition FROM schedule_state WHERE name = ?", (name,)).fetchone()
        if row is not None and row["definition"] == defn:
            continue
        cursor_ts = None if one_off else now
        cursor = None if one_off else slot_key(datetime.fromtimestamp(now, UTC))
        if row is None:
            conn.execute(
                "INSERT INTO schedule_state (name, definition, since, cursor, cursor_ts, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (name, defn, now, cursor, cursor_ts, now),
            )
        else:
            log.info("schedule changed, starting afresh", name=name)
            conn.execute(
                "UPDATE schedule_state SET definition = ?, since = ?, cursor = ?, cursor_ts = ?, updated_at = ?"
                " WHERE name = ?",
                (defn, now, cursor, cursor_ts, now, name),
            )
    return load_states(conn)


def acquire_lease(conn: sqlite3.Connection, owner: str, ttl: float, now: float) -> bool:
    row = conn.execute("SELECT owner, lease_until FROM schedule_lease WHERE id = 1").fetchone()
    if row is not None and row["owner"] != owner and row["lease_until"] >= now and not _owner_is_dead(row["owner"]):
        return False
    if row is not None and row["owner"] != owner:
        log.info("scheduler lease taken over", previous_owner=row["owner"])
    conn.execute(
        "INSERT INTO schedule_lease (id, owner, lease_until) VALUES (1, ?, ?)"
        " ON CONFLICT(id) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until",
        (owner, now + ttl),
    )
    return True


def renew_lease(conn: sqlite3.Connection, owner: str, ttl: float, now: float) -> None:
    cur = conn.execute("UPDATE schedule_lease SET lease_until = ? WHERE id = 1 AND owner = ?", (now + ttl, owner))
    if cur.rowcount != 1:
        raise LeaseLost()


def release_lease(conn: sqlite3.Connection, owner: str) -> None:
    conn.execute("DELETE FROM schedule_lease WHERE id = 1 AND owner = ?", (owner,))


@dataclass
class Firing:
    """What one schedule does in a tick: fire `slots` and move its cursor to `cursor`."""

    name: str
    definition: str
    timezone: str
    slots: list[datetime]
    cursor: datetime | None


@dataclass
class Fired:
    name: str
    slot: datetime
    signal_id: str


def fire(conn: sqlite3.Connection, owner: str, firings: list[Firing], ttl: float, now: float) -> list[Fired]:
    """Claim, journal and record the slots of one tick (one transaction; see module docstring)."""
    renew_lease(conn, owner, ttl, now)  # raises LeaseLost: the whole tick is rolled back
    fired: list[Fired] = []
    for f in firings:
        row = conn.execute("SELECT definition, cursor_ts FROM schedule_state WHERE name = ?", (f.name,)).fetchone()
        if row is None or row["definition"] != f.definition:
            continue  # the schedule changed under us; its new entry plans afresh
        cursor_ts: float | None = row["cursor_ts"]
        last: tuple[str, str, str] | None = None
        for slot in f.slots:
            slot_ts = slot.timestamp()
            if cursor_ts is not None and slot_ts <= cursor_ts:
                continue  # handled already (by us before a crash, or by another process)
            key = slot_key(slot)
            fired_at = local_iso(datetime.fromtimestamp(now, UTC), f.timezone)
            entity = Entity(
                "schedules",
                f"schedules.{f.name}",
                {"__schedule": {"name": f.name, "scheduled_for": local_iso(slot, f.timezone), "fired_at": fired_at,
                                "timezone": f.timezone}},
            )
            claimed = conn.execute(
                "INSERT OR IGNORE INTO schedule_slots (schedule, slot_time, signal_id, fired_at, fired_ts)"
                " VALUES (?, ?, ?, ?, ?)",
                (f.name, key, entity.id, fired_at, now),
            )
            if claimed.rowcount != 1:
                continue
            # The slot row is the lasting guard; the dedup entry names the tick in the journal.
            appended = append_signal(conn, entity, dedup_key=f"{f.name}@{key}", dedup_window=SLOT_RETENTION, now=now)
            if appended.duplicate:
                continue
            fired.append(Fired(f.name, slot, entity.id))
            last = (key, fired_at, entity.id)
        new_ts = f.cursor.timestamp() if f.cursor is not None else None
        if new_ts is not None and (cursor_ts is None or new_ts > cursor_ts):
            assert f.cursor is not None
            conn.execute("UPDATE schedule_state SET cursor = ?, cursor_ts = ?, updated_at = ? WHERE name = ?",
                         (slot_key(f.cursor), new_ts, now, f.name))
        if last is not None:
            conn.execute(
                "UPDATE schedule_state SET last_slot = ?, last_fired_at = ?, last_signal_id = ? WHERE name = ?",
                (*last, f.name),
            )
    return fired


def prune_slots(conn: sqlite3.Connection, before_ts: float) -> int:
    return conn.execute("DELETE FROM schedule_slots WHERE fired_ts < ?", (before_ts,)).rowcount
