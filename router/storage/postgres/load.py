"""Load rows exported from a SQLite data dir into an empty PostgreSQL database (`router db copy`).

One transaction for everything: a copy that fails halfway leaves the target as empty as it was.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

import psycopg

from engine.entity import Entity
from engine.ports import StorageError
from router.storage.postgres.journal import clean_text
from router.storage.postgres.search import index_words
from router.storage.postgres.writer import PgStorage

CHUNK = 1000

_INSERT = {
    "signals": (
        "INSERT INTO signals (id, channel, source, received_at, entity, status, attempts, last_error,"
        " dedup_key, ack, epoch, updated_at, replays, replay_from) VALUES (%(id)s, %(channel)s, %(source)s,"
        " %(received_at)s, %(entity)s, %(status)s, %(attempts)s, %(last_error)s, %(dedup_key)s, %(ack)s,"
        " %(epoch)s, %(updated_at)s, %(replays)s, %(replay_from)s)"
    ),
    "signal_text": "INSERT INTO signal_text (signal_id, doc) VALUES (%(id)s, to_tsvector('simple', %(words)s))",
    "signal_bodies": "INSERT INTO signal_bodies (signal_id, body) VALUES (%(signal_id)s, %(body)s)",
    "refused": (
        "INSERT INTO refused (id, at, channel, source, method, path, query, remote, headers, body, body_size,"
        " status, reason, answer, request_id) VALUES (%(id)s, %(at)s, %(channel)s, %(source)s, %(method)s,"
        " %(path)s, %(query)s, %(remote)s, %(headers)s, %(body)s, %(body_size)s, %(status)s, %(reason)s,"
        " %(answer)s, %(request_id)s)"
    ),
    "claims": "INSERT INTO claims (signal_id, epoch, not_before) VALUES (%(id)s, %(epoch)s, %(not_before)s)",
    "dedup": "INSERT INTO dedup (source, key, signal_id, expires_at) VALUES (%(source)s, %(key)s, %(signal_id)s,"
    " %(expires_at)s)",
    "runs": (
        "INSERT INTO runs (signal_id, workflow, attempt, status, started_at, duration_ms, error, trace)"
        " VALUES (%(signal_id)s, %(workflow)s, %(attempt)s, %(status)s, %(started_at)s, %(duration_ms)s,"
        " %(error)s, %(trace)s)"
    ),
    "step_effects": "INSERT INTO step_effects (signal_id, workflow, step_id, record_id) VALUES (%(signal_id)s,"
    " %(workflow)s, %(step_id)s, %(record_id)s)",
    "sources": "INSERT INTO sources (kind, name, first_hash, second_hash, api_key, active, updated_at, jwt_key,"
    " jwt_secret, prev_first_hash, prev_second_hash, prev_api_key, prev_jwt_key, prev_jwt_secret, prev_until)"
    " VALUES (%(kind)s, %(name)s, %(first_hash)s, %(second_hash)s, %(api_key)s, %(active)s, %(updated_at)s,"
    " %(jwt_key)s, %(jwt_secret)s, %(prev_first_hash)s, %(prev_second_hash)s, %(prev_api_key)s,"
    " %(prev_jwt_key)s, %(prev_jwt_secret)s, %(prev_until)s)",
    "schedule_state": "INSERT INTO schedule_state (name, definition, since, cursor, cursor_ts, last_slot,"
    " last_fired_at, last_signal_id, updated_at) VALUES (%(name)s, %(definition)s, %(since)s,"
    " %(cursor)s, %(cursor_ts)s, %(last_slot)s, %(last_fired_at)s, %(last_signal_id)s,"
    " %(updated_at)s)",
    "schedule_slots": "INSERT INTO schedule_slots (schedule, slot_time, signal_id, fired_at, fired_ts) VALUES"
    " (%(schedule)s, %(slot_time)s, %(signal_id)s, %(fired_at)s, %(fired_ts)s)",
    "records": "INSERT INTO records (type, id, created_at, updated_at, fields) VALUES (%(type)s, %(id)s,"
    " %(created_at)s, %(updated_at)s, %(fields)s::jsonb)",
}
_CALLER_TEXT = ("method", "path", "query", "reason", "answer")
_EMPTY = ("signals", "sources", "schedule_state", "records", "dedup")


def _chunks(rows: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    it = iter(rows)
    while chunk := list(islice(it, CHUNK)):
        yield chunk


def _signal(r: dict[str, Any]) -> dict[str, Any]:
    open_ = r["status"] in ("pending", "running")
    entity = Entity.from_row(r["id"], r["channel"], r["source"], r["received_at"], r["entity"])
    return {
        **r,
        "status": "open" if open_ else r["status"],
        "epoch": r.get("epoch") or 0,
        "replays": r.get("replays") or 0,
        "replay_from": r.get("replay_from") or 0,
        "open": open_,
        "words": index_words(entity, r["dedup_key"]),  # what the search finds it by, as append writes it
    }


def load(url: str, tables: Callable[[str], Iterable[dict[str, Any]]], names: Iterable[str]) -> dict[str, int]:
    """Create the schema, refuse a target that holds any router data, copy every table; counts."""
    storage = PgStorage(url)
    storage.open_sync()  # migrates: the target gets this router's schema
    storage.close()
    counts: dict[str, int] = {}
    try:
        with storage.connect(autocommit=False) as conn:
            for table in _EMPTY:
                row = conn.execute(f"SELECT EXISTS (SELECT 1 FROM {table}) AS any").fetchone()
                if row is not None and row["any"]:
                    raise StorageError(
                        f"the target database is not empty (table {table} has rows): "
                        "copy into a new, empty database"
                    )
            with conn.cursor() as cur:
                for table in names:
                    n = 0
                    for chunk in _chunks(tables(table)):
                        if table == "signals":
                            chunk = [_signal(r) for r in chunk]
                            cur.executemany(_INSERT["claims"], [r for r in chunk if r["open"]])
                            cur.executemany(_INSERT["signal_text"], chunk)
                        elif table == "refused":  # caller text: `text` refuses a NUL
                            chunk = [{**r, **{k: clean_text(r[k]) for k in _CALLER_TEXT}} for r in chunk]
                        elif table == "records":
                            chunk = [{**r, "fields": json.dumps(r["fields"], default=str)} for r in chunk]
                        cur.executemany(_INSERT[table], chunk)
                        n += len(chunk)
                    counts[table] = n
            conn.commit()
    except psycopg.Error as exc:
        raise StorageError(f"copy failed, nothing was written: {str(exc).strip()}") from exc
    return counts
