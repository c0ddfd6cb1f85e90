"""The journal on SQLite: signals, claims, runs, idempotency keys, the live feed, retention.

Part of `SqliteTx` (tx.py); every method runs inside the caller's transaction. Conditional writes
are single statements that re-check their predicate (base.py), so they stay correct without the
single writer SQLite happens to give: the dedup key is one upsert that only overwrites an expired
key, a claim re-checks "still claimable" on the rows it updates, a settle re-checks owner + epoch.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from engine.entity import Entity
from router.storage import from_row
from router.storage.rows import DONE, PENDING, RUNNING, Appended, ClaimRef, FeedCursor, NewSignal, Run, Signal
from router.storage.text import search_text

CLAIMABLE = "((status = 'pending' AND not_before <= :now) OR (status = 'running' AND lease_until < :now))"
_LIVE_COLUMNS = "id, channel, source, received_at, status, attempts, last_error, dedup_key"
APPENDS_PER_STATEMENT = 64  # 14 values a row: well under SQLite's 32,766 parameters


@lru_cache(maxsize=APPENDS_PER_STATEMENT)
def _insert_appends(rows: int) -> str:
    """One INSERT of `rows` new signals into `signal_appends` (schema.py, version 9), whose
    trigger writes each signal's row, search text and body."""
    return "INSERT INTO signal_appends VALUES " + ", ".join(
        ["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * rows
    )


@lru_cache(maxsize=APPENDS_PER_STATEMENT)
def _upsert_keys(rows: int) -> str:
    """`append_signal`'s dedup upsert for `rows` keys: a fresh key is inserted, an expired one
    taken over, a live one (or one taken earlier in the same statement) left alone."""
    return (
        "INSERT INTO dedup (source, key, signal_id, expires_at) VALUES "
        + ", ".join(["(?, ?, ?, ?)"] * rows)
        + " ON CONFLICT (source, key) DO UPDATE SET signal_id = excluded.signal_id,"
        " expires_at = excluded.expires_at WHERE dedup.expires_at <= ?"
    )


@lru_cache(maxsize=APPENDS_PER_STATEMENT)
def _key_holders(rows: int) -> str:
    """Who holds each of `rows` (source, key) pairs, as one JSON array of [position, id, ack]."""
    values = ", ".join(f"({i}, ?, ?)" for i in range(rows))
    return (
        "SELECT json_group_array(json_array(v.column1, d.signal_id, s.ack))"
        f" FROM (VALUES {values}) AS v JOIN dedup d ON d.source = v.column2 AND d.key = v.column3"
        " LEFT JOIN signals s ON s.id = d.signal_id"
    )


def _append_row(
    entity: Entity,
    dedup_key: str | None,
    owner: str | None,
    lease: float,
    ack: dict[str, Any] | None,
    settled: bool,
    now: float,
) -> tuple[Any, ...]:
    """A new signal as `signal_appends` takes it: the signal's columns, its text, its body."""
    if settled:
        status, lease_until, owner = DONE, None, None
    else:
        status, lease_until = (RUNNING, now + lease) if owner else (PENDING, None)
    return (
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
        1 if owner else 0,
        search_text(entity, dedup_key),
        entity.raw or None,
    )


class SqliteJournal:
    conn: sqlite3.Connection

    def now(self) -> float:
        # One machine, one clock: the host's wall clock, read here and nowhere else in the backend.
        return time.time()

    # -- append, claim, settle ------------------------------------------------------------------------

    def append_signal(
        self,
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
        signal = NewSignal(entity, dedup_key, dedup_window, owner, lease, ack, settled)
        return self.append_signals([signal], now=now)[0]

    def append_signals(self, signals: Sequence[NewSignal], *, now: float | None = None) -> list[Appended]:
        """A few statements whatever their number: the dedup keys taken in one upsert and read
        back in one row, the signals written by one INSERT per 64 (text and bodies with them).
        Outcomes as `append_signal` on each in order: a key that comes twice makes the later
        signal a duplicate of the earlier. (`append_signal` is this with one.)"""
        now = self.now() if now is None else now
        keyed = [s for s in signals if s.dedup_key]
        holders = self._take_keys(keyed, now) if keyed else {}
        ours = {s.entity.id: s for s in signals}
        appended: list[Appended] = []
        rows: list[tuple[Any, ...]] = []
        for s in signals:
            if s.dedup_key:
                holder, ack = holders[(s.entity.source, s.dedup_key)]
                if holder != s.entity.id:
                    earlier = ours.get(holder)  # written just now: its ack is not in the table yet
                    appended.append(Appended(holder, duplicate=True, ack=earlier.ack if earlier else ack))
                    continue
            rows.append(_append_row(s.entity, s.dedup_key, s.owner, s.lease, s.ack, s.settled, now))
            appended.append(Appended(s.entity.id))
        for start in range(0, len(rows), APPENDS_PER_STATEMENT):
            chunk = rows[start : start + APPENDS_PER_STATEMENT]
            self.conn.execute(_insert_appends(len(chunk)), [value for row in chunk for value in row])
        return appended

    def _take_keys(
        self, keyed: Sequence[NewSignal], now: float
    ) -> dict[tuple[str, str], tuple[str, dict[str, Any] | None]]:
        """Take the fresh or expired keys (the upsert of `append_signal`, for all at once) and
        read who holds each now: (source, key) -> (signal id, that signal's ack)."""
        held: dict[tuple[str, str], tuple[str, dict[str, Any] | None]] = {}
        for start in range(0, len(keyed), APPENDS_PER_STATEMENT):
            chunk = keyed[start : start + APPENDS_PER_STATEMENT]
            keys = [(s.entity.source, str(s.dedup_key)) for s in chunk]
            self.conn.execute(
                _upsert_keys(len(chunk)),
                [v for s, k in zip(chunk, keys, strict=True) for v in (*k, s.entity.id, now + s.dedup_window)]
                + [now],
            )
            # One row back (a JSON array, by position: keys may hold any character), not one per
            # key: Python's sqlite3 steps, and waits for the GIL, for every row it fetches.
            found = self.conn.execute(_key_holders(len(chunk)), [v for k in keys for v in k]).fetchone()[0]
            for i, holder, ack in json.loads(found):
                held[keys[i]] = (holder, json.loads(ack) if ack else None)
        return held

    def claim(self, owner: str, limit: int, *, lease: float = 15.0, now: float | None = None) -> list[Signal]:
        now = self.now() if now is None else now
        # The outer WHERE repeats the predicate: a row another claimer took between the subquery's
        # pick and this row's update is skipped, not claimed twice (what READ COMMITTED would do).
        rows = self.conn.execute(
            "UPDATE signals SET status = 'running', owner = :owner, lease_until = :until, updated_at = :now,"
            " epoch = epoch + 1"
            f" WHERE id IN (SELECT id FROM signals WHERE {CLAIMABLE} ORDER BY id LIMIT :limit) AND {CLAIMABLE}"
            " RETURNING *",
            {"owner": owner, "until": now + lease, "now": now, "limit": limit},
        ).fetchall()
        return sorted((from_row.signal(r) for r in rows), key=lambda s: s.id)

    def has_claimable(self, now: float | None = None) -> bool:
        now = self.now() if now is None else now
        return (
            self.conn.execute(f"SELECT 1 FROM signals WHERE {CLAIMABLE} LIMIT 1", {"now": now}).fetchone()
            is not None
        )

    def renew(self, owner: str, signal_ids: list[str], lease: float, now: float | None = None) -> int:
        until = (self.now() if now is None else now) + lease
        cur = self.conn.executemany(
            "UPDATE signals SET lease_until = ? WHERE id = ? AND owner = ? AND status = 'running'",
            [(until, sid, owner) for sid in signal_ids],
        )
        return cur.rowcount

    def settle(
        self,
        claim: ClaimRef,
        *,
        status: str,
        error: str | None = None,
        retry_in: float | None = None,
        now: float | None = None,
    ) -> bool:
        now = self.now() if now is None else now
        fence = "WHERE id = ? AND owner = ? AND epoch = ? AND status = 'running'"
        if retry_in is not None:
            cur = self.conn.execute(
                "UPDATE signals SET status = 'pending', owner = NULL, lease_until = NULL, not_before = ?,"
                f" attempts = attempts + 1, last_error = ?, updated_at = ? {fence}",
                (now + retry_in, error, now, *claim),
            )
        else:
            cur = self.conn.execute(
                "UPDATE signals SET status = ?, owner = NULL, lease_until = NULL, attempts = attempts + 1,"
                f" last_error = ?, updated_at = ? {fence}",
                (status, error, now, *claim),
            )
        return cur.rowcount == 1

    def record_run(self, signal_id: str, run: Run) -> None:
        self.conn.execute(
            "INSERT INTO runs (signal_id, workflow, attempt, status, started_at, duration_ms, error, trace)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                signal_id,
                run.workflow,
                run.attempt,
                run.status,
                run.started_at,
                run.duration_ms,
                run.error,
                json.dumps(run.trace, default=str),
            ),
        )

    def release(self, owner: str) -> int:
        return self.conn.execute(
            "UPDATE signals SET status = 'pending', owner = NULL, lease_until = NULL, updated_at = ?"
            " WHERE owner = ? AND status = 'running'",
            (self.now(), owner),
        ).rowcount

    def requeue(self, signal_id: str, *, delay: float = 0.0, now: float | None = None) -> bool:
        now = self.now() if now is None else now
        replayed = (
            self.conn.execute(
                "UPDATE signals SET status = 'pending', owner = NULL, lease_until = NULL, not_before = ?,"
                " replays = replays + 1, replay_from = attempts + 1, updated_at = ?"
                " WHERE id = ? AND status IN ('failed', 'done')",
                (now + max(0.0, delay), now, signal_id),
            ).rowcount
            == 1
        )
        if replayed:
            # A new round: record steps write again (their effects are kept per round, see base.py).
            self.conn.execute("DELETE FROM step_effects WHERE signal_id = ?", (signal_id,))
        return replayed

    def set_ack(self, signal_id: str, ack: dict[str, Any]) -> None:
        self.conn.execute("UPDATE signals SET ack = ? WHERE id = ?", (json.dumps(ack), signal_id))

    # -- reads --------------------------------------------------------------------------------------------

    def get_signal(self, signal_id: str) -> Signal | None:
        row = self.conn.execute("SELECT * FROM signals WHERE id = ?", (signal_id,)).fetchone()
        return from_row.signal(row) if row else None

    def signal_body(self, signal_id: str) -> bytes | None:
        row = self.conn.execute("SELECT body FROM signal_bodies WHERE signal_id = ?", (signal_id,)).fetchone()
        return bytes(row[0]) if row else None

    def runs_for(self, signal_id: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT * FROM runs WHERE signal_id = ? ORDER BY id", (signal_id,)
        ).fetchall()
        return [{**dict(r), "trace": json.loads(r["trace"])} for r in rows]

    def done_workflows(self, signal_id: str, since_attempt: int = 0) -> set[str]:
        rows = self.conn.execute(
            "SELECT workflow FROM runs WHERE signal_id = ? AND status = 'done' AND attempt >= ?",
            (signal_id, since_attempt),
        )
        return {r[0] for r in rows}

    def counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.conn.execute("SELECT status, count(*) FROM signals GROUP BY status")}

    def count_pending(self) -> int:
        row = self.conn.execute("SELECT count(*) FROM signals WHERE status = 'pending'").fetchone()
        return int(row[0]) if row else 0

    def source_stats(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for row in self.conn.execute("SELECT source, status, count(*) FROM signals GROUP BY source, status"):
            item = out.setdefault(row[0], {"counts": {}, "last_signal": None})
            item["counts"][row[1]] = row[2]
        for row in self.conn.execute(
            "SELECT s.source, s.id, s.received_at, s.status FROM signals s "
            "JOIN (SELECT source, max(id) AS id FROM signals GROUP BY source) last ON last.id = s.id"
        ):
            item = out.setdefault(row[0], {"counts": {}, "last_signal": None})
            item["last_signal"] = {"id": row[1], "received_at": row[2], "status": row[3]}
        return out

    # -- the live feed --------------------------------------------------------------------------------------
    # One writer at a time holds SQLite's write lock for a whole transaction, so rowids grow in
    # commit order, across processes too: a reader that remembers the last rowid it saw misses
    # nothing (timestamps could: a row stamped earlier may commit later). Signals are never updated
    # by delete + insert, so a row keeps its rowid.

    def feed_start(self) -> FeedCursor:
        return int(self.conn.execute("SELECT coalesce(max(rowid), 0) FROM signals").fetchone()[0]), ""

    def feed_after(self, cursor: FeedCursor, limit: int = 500) -> tuple[list[dict[str, Any]], FeedCursor]:
        rows = self.conn.execute(
            f"SELECT rowid AS rid, {_LIVE_COLUMNS} FROM signals WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (cursor[0], limit),
        ).fetchall()
        if not rows:
            return [], cursor
        return [{k: r[k] for k in r.keys() if k != "rid"} for r in rows], (int(rows[-1]["rid"]), "")

    def signals_now(self, ids: list[str]) -> list[dict[str, Any]]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        return [
            dict(r)
            for r in self.conn.execute(f"SELECT {_LIVE_COLUMNS} FROM signals WHERE id IN ({marks})", ids)
        ]

    # -- retention ------------------------------------------------------------------------------------------

    def prune_settled(self, cutoff: str, limit: int) -> int:
        ids = [
            row[0]
            for row in self.conn.execute(
                "SELECT id FROM signals WHERE id < ? AND status IN ('done', 'failed') ORDER BY id LIMIT ?",
                (cutoff, limit),
            )
        ]
        if not ids:
            return 0
        marks = ",".join("?" * len(ids))
        self.conn.execute(
            f"DELETE FROM signal_text WHERE rowid IN (SELECT rowid FROM signals WHERE id IN ({marks})"
            " AND status IN ('done', 'failed'))",
            ids,
        )
        self.conn.execute(f"DELETE FROM runs WHERE signal_id IN ({marks})", ids)
        self.conn.execute(f"DELETE FROM step_effects WHERE signal_id IN ({marks})", ids)
        self.conn.execute(
            f"DELETE FROM signal_bodies WHERE signal_id IN ({marks})"
            f" AND signal_id NOT IN (SELECT id FROM signals WHERE id IN ({marks})"
            " AND status NOT IN ('done', 'failed'))",
            ids + ids,
        )
        # Re-checked here too: a signal replayed since the SELECT above stays.
        return self.conn.execute(
            f"DELETE FROM signals WHERE id IN ({marks}) AND status IN ('done', 'failed')", ids
        ).rowcount

    def prune_dedup(self, now: float | None = None) -> int:
        now = self.now() if now is None else now
        return self.conn.execute("DELETE FROM dedup WHERE expires_at < ?", (now,)).rowcount
