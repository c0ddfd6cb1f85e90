"""Every table of the PostgreSQL backend and the numbered migrations that make them.

`migrate` runs at every open. It takes a session advisory lock (`pg_advisory_lock`, a key
namespaced to router) before it reads `schema_version`, so three nodes starting at once apply each
migration exactly once: the others wait on the lock, then find nothing left to do. Never
`CREATE ... IF NOT EXISTS` run concurrently: it races on `pg_type` (SCALE-OUT §8, trap 10).

Design (SCALE-OUT §5.3): `signals` is written at append and once at settlement; what churns
(owner, lease, epoch, not_before) lives in the narrow `claims` table, which holds unsettled
signals only and is vacuumed aggressively. Times are epoch seconds (double precision) taken from
the database's `now()` unless a test passes its own, so node clocks never decide a lease. Entities
are `json`, not `jsonb`: it keeps the bytes and accepts the `\\u0000` of a NUL in an email body.
"""

from __future__ import annotations

from typing import Any

from engine.ports import StorageError

LOCK_NAMESPACE = 0x726F7574  # "rout": the first half of every advisory lock key router takes
MIGRATION_LOCK = 1

V1 = """
CREATE TABLE signals (
    id text COLLATE "C" PRIMARY KEY,  -- ULIDs: byte order is time order, whatever the database's locale
    channel text NOT NULL,
    source text NOT NULL,
    received_at text NOT NULL,
    entity json NOT NULL,
    status text NOT NULL DEFAULT 'open',  -- open | done | failed; pending/running come from claims
    attempts int NOT NULL DEFAULT 0,
    last_error text,
    dedup_key text,
    ack json,
    epoch bigint NOT NULL DEFAULT 0,      -- the last claim's epoch, kept when the claim row goes
    updated_at double precision NOT NULL DEFAULT 0,
    xid xid8 NOT NULL DEFAULT pg_current_xact_id()  -- the live feed's cursor (feed_after)
);
CREATE INDEX signals_source ON signals (source, id);
CREATE INDEX signals_status ON signals (status, id) WHERE status <> 'open';
CREATE INDEX signals_feed ON signals (xid, id);

CREATE TABLE claims (
    signal_id text COLLATE "C" PRIMARY KEY,
    owner text,
    epoch bigint NOT NULL DEFAULT 0,
    lease_until double precision,
    not_before double precision NOT NULL DEFAULT 0
) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_cost_delay = 0,
        autovacuum_vacuum_cost_limit = 10000);
CREATE INDEX claims_ready ON claims (not_before, signal_id) WHERE owner IS NULL;
CREATE INDEX claims_leased ON claims (lease_until) WHERE owner IS NOT NULL;
CREATE INDEX claims_owner ON claims (owner) WHERE owner IS NOT NULL;

CREATE VIEW signals_v AS
    SELECT s.id, s.channel, s.source, s.received_at, s.entity, s.attempts, s.last_error, s.dedup_key, s.ack,
           s.updated_at, s.xid, c.owner, coalesce(c.epoch, s.epoch) AS epoch,
           CASE WHEN s.status <> 'open' THEN s.status WHEN c.owner IS NULL THEN 'pending' ELSE 'running' END AS status
    FROM signals s LEFT JOIN claims c ON c.signal_id = s.id;

CREATE TABLE dedup (
    source text NOT NULL,
    key text NOT NULL,
    signal_id text NOT NULL,
    expires_at double precision NOT NULL,
    PRIMARY KEY (source, key)
);
CREATE INDEX dedup_expiry ON dedup (expires_at);

CREATE TABLE runs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    signal_id text NOT NULL,
    workflow text NOT NULL,
    attempt int NOT NULL,
    status text NOT NULL,
    started_at text NOT NULL,
    duration_ms double precision NOT NULL,
    error text,
    trace json NOT NULL
);
CREATE INDEX runs_signal ON runs (signal_id);

CREATE TABLE step_effects (
    signal_id text NOT NULL,
    workflow text NOT NULL,
    step_id text NOT NULL,
    record_id text,
    PRIMARY KEY (signal_id, workflow, step_id)
);

CREATE TABLE sources (
    kind text NOT NULL,
    name text NOT NULL,
    first_hash text,
    second_hash text,
    api_key text,
    active boolean,
    updated_at double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, name)
);

CREATE TABLE schedule_state (
    name text PRIMARY KEY,
    definition text NOT NULL,
    since double precision NOT NULL,
    cursor text,
    cursor_ts double precision,
    last_slot text,
    last_fired_at text,
    last_signal_id text,
    updated_at double precision NOT NULL
);
CREATE TABLE schedule_slots (
    schedule text NOT NULL,
    slot_time text NOT NULL,
    signal_id text NOT NULL,
    fired_at text NOT NULL,
    fired_ts double precision NOT NULL,
    PRIMARY KEY (schedule, slot_time)
);
CREATE INDEX schedule_slots_fired ON schedule_slots (fired_ts);
CREATE TABLE schedule_lease (
    id int PRIMARY KEY CHECK (id = 1),
    owner text NOT NULL,
    lease_until double precision NOT NULL
);

CREATE TABLE records (
    type text NOT NULL,
    id text COLLATE "C" NOT NULL,
    created_at text NOT NULL,
    updated_at text NOT NULL,
    fields jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (type, id)
);
CREATE INDEX records_fields ON records USING gin (fields jsonb_path_ops);

CREATE TABLE health (key text PRIMARY KEY, at double precision NOT NULL);  -- /readyz proves writes work
"""

# 2: what SQLite's migrations 4-8 brought: generated JWT pairs and a rotation's grace (the
# replaced credentials, prev_*, accepted until prev_until); replay rounds (replays, replay_from);
# refused requests kept for inspection; the body as received; text search (search.py: one
# tsvector per signal, written by append_signal, deleted with the signal).
V2 = """
ALTER TABLE sources ADD COLUMN jwt_key text, ADD COLUMN jwt_secret text, ADD COLUMN prev_first_hash text,
    ADD COLUMN prev_second_hash text, ADD COLUMN prev_api_key text, ADD COLUMN prev_jwt_key text,
    ADD COLUMN prev_jwt_secret text, ADD COLUMN prev_until double precision;

ALTER TABLE signals ADD COLUMN replays int NOT NULL DEFAULT 0, ADD COLUMN replay_from int NOT NULL DEFAULT 0;
CREATE OR REPLACE VIEW signals_v AS
    SELECT s.id, s.channel, s.source, s.received_at, s.entity, s.attempts, s.last_error, s.dedup_key, s.ack,
           s.updated_at, s.xid, c.owner, coalesce(c.epoch, s.epoch) AS epoch,
           CASE WHEN s.status <> 'open' THEN s.status WHEN c.owner IS NULL THEN 'pending' ELSE 'running' END AS status,
           s.replays, s.replay_from
    FROM signals s LEFT JOIN claims c ON c.signal_id = s.id;
CREATE INDEX runs_workflow ON runs (workflow, signal_id);

CREATE TABLE refused (
    id text COLLATE "C" PRIMARY KEY,
    at text NOT NULL,
    channel text NOT NULL,
    source text NOT NULL,
    method text NOT NULL,
    path text NOT NULL,
    query text NOT NULL,
    remote text NOT NULL,
    headers json NOT NULL,
    body bytea NOT NULL,
    body_size int NOT NULL,
    status int NOT NULL,
    reason text NOT NULL,
    answer text NOT NULL,
    request_id text NOT NULL
);
CREATE INDEX refused_source ON refused (source, id);

CREATE TABLE signal_bodies (signal_id text COLLATE "C" PRIMARY KEY, body bytea NOT NULL);

CREATE TABLE signal_text (signal_id text COLLATE "C" PRIMARY KEY, doc tsvector NOT NULL);
INSERT INTO signal_text (signal_id, doc)
    SELECT id, to_tsvector('simple', regexp_replace(lower(left(id || ' ' || source || ' '
        || coalesce(dedup_key, '') || ' ' || entity::text, 200000)), '[^[:alnum:]]+', ' ', 'g'))
    FROM signals;
CREATE INDEX signal_text_doc ON signal_text USING gin (doc);
"""

# Each entry takes the schema from version i to i + 1. Append only; never edit a released one.
MIGRATIONS: list[str] = [V1, V2]
VERSION = len(MIGRATIONS)


def migrate(conn: Any) -> int:
    """Bring the database up to `VERSION`; returns the version it found. `conn` (psycopg, autocommit)
    holds the migration lock for the duration, so concurrent starts queue instead of racing."""
    conn.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_NAMESPACE, MIGRATION_LOCK))
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version int PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )  # under the lock: no race
        row = conn.execute("SELECT coalesce(max(version), 0) AS v FROM schema_version").fetchone()
        found = int(row["v"] if isinstance(row, dict) else row[0])
        if found > VERSION:
            raise StorageError(
                f"the database's schema is version {found}, newer than this router's ({VERSION}): "
                "run the newer router on it"
            )
        for current in range(found, VERSION):
            with conn.transaction():
                conn.execute(MIGRATIONS[current])
                conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (current + 1,))
        return found
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_NAMESPACE, MIGRATION_LOCK))
