"""Every table of the SQLite backend, and how a data dir gets from any older version to this one.

The schema version is `PRAGMA user_version`. `migrate` runs at every open and applies the numbered
migrations above the file's version, each in its own `BEGIN IMMEDIATE` transaction that re-reads
the version first, so several processes starting at once (HTTP workers, runners, the CLI) apply
each migration exactly once. A data dir written by a newer router is refused, never "fixed".

Version 0 is every data dir made before this module (commit c6e79dd and earlier): its tables were
created with `IF NOT EXISTS` by whichever part used them first, so migration 1 creates whatever of
that baseline is missing and changes nothing that exists. Record tables (`record_<type>`) are
data, not schema: sqlite-utils creates them and adds a column per new field (records.py).
"""

from __future__ import annotations

import sqlite3

from engine.ports import StorageError

BASELINE = """
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
CREATE TABLE IF NOT EXISTS step_effects (
    signal_id TEXT NOT NULL,
    workflow TEXT NOT NULL,
    step_id TEXT NOT NULL,
    record_id TEXT,
    PRIMARY KEY (signal_id, workflow, step_id)
);
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
)
"""

# Each entry takes the schema from version i to i + 1. Append only; never edit a released one.
MIGRATIONS: list[str] = [
    BASELINE,
    # 2: claims carry a fencing token (how many times the signal was claimed); `meta` was never used.
    """
    ALTER TABLE signals ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
    DROP TABLE IF EXISTS meta
    """,
    # 3: one row per prober, rewritten by /readyz to prove a commit reaches the disk.
    """
    CREATE TABLE IF NOT EXISTS health (key TEXT PRIMARY KEY, at REAL NOT NULL)
    """,
    # 4: endpoints get a generated JWT key and secret; a rotation with a grace period keeps the
    # replaced credentials (prev_*) valid until prev_until.
    """
    ALTER TABLE sources ADD COLUMN jwt_key TEXT;
    ALTER TABLE sources ADD COLUMN jwt_secret TEXT;
    ALTER TABLE sources ADD COLUMN prev_first_hash TEXT;
    ALTER TABLE sources ADD COLUMN prev_second_hash TEXT;
    ALTER TABLE sources ADD COLUMN prev_api_key TEXT;
    ALTER TABLE sources ADD COLUMN prev_jwt_key TEXT;
    ALTER TABLE sources ADD COLUMN prev_jwt_secret TEXT;
    ALTER TABLE sources ADD COLUMN prev_until REAL
    """,
    # 5: a replay starts a new round of attempts: `replays` counts them, `replay_from` is the first
    # attempt of the current round (runs done before it do not make a workflow "done" any more).
    """
    ALTER TABLE signals ADD COLUMN replays INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE signals ADD COLUMN replay_from INTEGER NOT NULL DEFAULT 0
    """,
    # 6: refused requests, the newest [admin] refused_keep per source (refusals.py keeps the bound).
    """
    CREATE TABLE IF NOT EXISTS refused (
        id TEXT PRIMARY KEY,
        at TEXT NOT NULL,
        channel TEXT NOT NULL,
        source TEXT NOT NULL,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        query TEXT NOT NULL,
        remote TEXT NOT NULL,
        headers TEXT NOT NULL,
        body BLOB NOT NULL,
        body_size INTEGER NOT NULL,
        status INTEGER NOT NULL,
        reason TEXT NOT NULL,
        answer TEXT NOT NULL,
        request_id TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS refused_source ON refused(source, id)
    """,
    # 7: the request body as received, for the inspector (and its download); pruned with the signal.
    """
    CREATE TABLE IF NOT EXISTS signal_bodies (signal_id TEXT PRIMARY KEY, body BLOB NOT NULL)
    """,
    # 8: text search (search.py): one FTS5 row per signal (rowid = the signal's rowid), written
    # by append_signal, deleted with the signal; signals journaled before get their whole entity
    # indexed here. The list filtered by status reads (status, id) in order, newest first.
    """
    CREATE VIRTUAL TABLE IF NOT EXISTS signal_text USING fts5(text);
    INSERT INTO signal_text (rowid, text)
        SELECT rowid, id || ' ' || source || ' ' || coalesce(dedup_key, '') || ' ' || entity FROM signals;
    CREATE INDEX IF NOT EXISTS signals_status_id ON signals(status, id)
    """,
    # 9: one INSERT journals signals with their search text and bodies (journal.py): the trigger
    # writes the three tables inside SQLite, where the writer stepped three statements a signal
    # (and Python's sqlite3 waits for the GIL again after every step it takes).
    """
    CREATE VIEW IF NOT EXISTS signal_appends AS
        SELECT id, channel, source, received_at, entity, status, dedup_key, owner, lease_until,
            updated_at, ack, epoch, '' AS text, CAST(NULL AS BLOB) AS body
        FROM signals WHERE 0;
    CREATE TRIGGER IF NOT EXISTS signal_appends_insert INSTEAD OF INSERT ON signal_appends BEGIN
        INSERT INTO signals (id, channel, source, received_at, entity, status, dedup_key, owner,
            lease_until, updated_at, ack, epoch)
        VALUES (NEW.id, NEW.channel, NEW.source, NEW.received_at, NEW.entity, NEW.status,
            NEW.dedup_key, NEW.owner, NEW.lease_until, NEW.updated_at, NEW.ack, NEW.epoch);
        INSERT INTO signal_text (rowid, text) VALUES (last_insert_rowid(), NEW.text);
        INSERT OR REPLACE INTO signal_bodies (signal_id, body)
            SELECT NEW.id, NEW.body WHERE NEW.body IS NOT NULL;
    END
    """,
]
VERSION = len(MIGRATIONS)


def version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _statements(script: str) -> list[str]:
    """A script's statements; a `;` inside a trigger's BEGIN ... END does not end one."""
    out, pending = [], ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                out.append(pending.strip())
            pending = ""
    if pending.strip(" \n;"):
        out.append(pending.strip())
    return out


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database up to `VERSION`; returns the version it found (read under the write
    lock when it had to wait for it: of processes migrating at once, one finds the old version).
    `conn` must be in autocommit mode with a busy timeout (another process may be migrating)."""
    found = version(conn)
    if found > VERSION:
        raise StorageError(
            f"the data dir's schema is version {found}, newer than this router's ({VERSION}): "
            "run the newer router, or restore a backup made for this one"
        )
    locked = False
    while version(conn) < VERSION:
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = version(conn)  # re-read under the write lock: someone may have done it
            if not locked:
                found, locked = current, True
            if current < VERSION:
                for statement in _statements(MIGRATIONS[current]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {current + 1}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return found
