"""The journal on PostgreSQL: signals, claims, runs, idempotency keys, the live feed, retention.

Part of `PgTx` (tx.py). Several nodes write at once under READ COMMITTED, so every conditional
write is ONE statement that re-checks its own predicate (SCALE-OUT §5.4, §5.5):
  * append with a dedup key: the key's upsert, the signal and its claim row in one statement; the
    loser of a race waits on the key's index entry, then takes the "left alone" branch;
  * claim: `FOR UPDATE SKIP LOCKED` on the narrow claims table (never the IN-subquery of the SQLite
    code, which Postgres would not re-check), epoch + 1 per claim;
  * settle: fenced by owner AND epoch, so a node whose lease was taken over changes nothing;
  * a claim whose lease ran out `max_deliveries` times without a settle (a signal that kills its
    process) is failed instead of claimed again.
"""

from __future__ import annotations

import json
from typing import Any

from engine.entity import Entity
from router.storage import from_row
from router.storage.postgres.search import index_words
from router.storage.rows import Appended, ClaimRef, FeedCursor, Run, Signal

_LIVE_COLUMNS = "id, channel, source, received_at, status, attempts, last_error, dedup_key"
POISON = "claimed {n} times without ever settling (the run kills its process?): given up"


def clean_text(value: str | None) -> str | None:
    """`text` refuses NUL ("invalid byte sequence for encoding UTF8: 0x00"); errors may quote input."""
    return value.replace("\x00", "\ufffd") if value else value


class PgJournal:
    conn: Any
    max_deliveries: int
    appended: list[str]
    wants_notify: bool

    def now(self) -> float:
        raise NotImplementedError  # PgTx.now

    def _x(self, sql: str, params: Any = None) -> Any:
        return self.conn.execute(sql, params)

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
        now = self.now() if now is None else now
        if settled:
            owner = None
        p = {
            "id": entity.id,
            "channel": entity.channel,
            "source": entity.source,
            "received_at": entity.received_at,
            "entity": entity.to_json(),
            "status": "done" if settled else "open",
            "key": clean_text(dedup_key),
            "ack": json.dumps(ack) if ack is not None else None,
            "now": now,
            "owner": owner,
            "epoch": 1 if owner else 0,
            "until": now + lease if owner else None,
            "expires": now + dedup_window,
            "settled": settled,
            "body": entity.raw or None,
            "words": index_words(entity, dedup_key),
        }
        insert = (
            "INSERT INTO signals (id, channel, source, received_at, entity, status, dedup_key, ack, epoch,"
            " updated_at) SELECT %(id)s, %(channel)s, %(source)s, %(received_at)s, %(entity)s, %(status)s,"
            " %(key)s, %(ack)s, %(epoch)s, %(now)s"
        )
        # The claim row, the body as received and the search words go in the same statement.
        claim = (
            "c AS (INSERT INTO claims (signal_id, owner, epoch, lease_until) SELECT id, %(owner)s, %(epoch)s,"
            " %(until)s FROM s WHERE NOT %(settled)s),"
            " b AS (INSERT INTO signal_bodies (signal_id, body) SELECT id, %(body)s FROM s"
            " WHERE %(body)s::bytea IS NOT NULL),"
            " t AS (INSERT INTO signal_text (signal_id, doc) SELECT id, to_tsvector('simple', %(words)s) FROM s)"
        )
        self.appended.append(entity.id)
        if not dedup_key:
            self._x(f"WITH s AS ({insert} RETURNING id), {claim} SELECT 1", p)
            self.wants_notify = self.wants_notify or not (owner or settled)
            return Appended(entity.id)
        row = self._x(
            "WITH d AS (INSERT INTO dedup (source, key, signal_id, expires_at)"
            " VALUES (%(source)s, %(key)s, %(id)s, %(expires)s) ON CONFLICT (source, key) DO UPDATE"
            " SET signal_id = excluded.signal_id, expires_at = excluded.expires_at"
            " WHERE dedup.expires_at <= %(now)s RETURNING 1),"
            f" s AS ({insert} WHERE EXISTS (SELECT 1 FROM d) RETURNING id), {claim}"
            " SELECT count(*) AS n FROM s",
            p,
        ).fetchone()
        if row["n"] == 0:
            self.appended.pop()
            dup = self._x(
                "SELECT d.signal_id, s.ack FROM dedup d LEFT JOIN signals s ON s.id = d.signal_id"
                " WHERE d.source = %s AND d.key = %s",
                (entity.source, p["key"]),
            ).fetchone()
            return Appended(
                dup["signal_id"], duplicate=True, ack=json.loads(dup["ack"]) if dup["ack"] else None
            )
        self.wants_notify = self.wants_notify or not (owner or settled)
        return Appended(entity.id)

    def claim(self, owner: str, limit: int, *, lease: float = 15.0, now: float | None = None) -> list[Signal]:
        now = self.now() if now is None else now
        p = {
            "owner": owner,
            "n": limit,
            "now": now,
            "until": now + lease,
            "max": self.max_deliveries,
            "error": POISON.format(n=self.max_deliveries),
        }
        rows = self._x(
            # Poison: leased, expired, and already delivered max times. Failed here, not re-claimed.
            "WITH poison AS (SELECT signal_id FROM claims WHERE owner IS NOT NULL AND lease_until < %(now)s"
            "   AND epoch >= %(max)s LIMIT %(n)s FOR UPDATE SKIP LOCKED),"
            " gone AS (DELETE FROM claims c USING poison p WHERE c.signal_id = p.signal_id RETURNING c.signal_id,"
            "   c.epoch),"
            " failed AS (UPDATE signals s SET status = 'failed', last_error = %(error)s, epoch = g.epoch,"
            "   updated_at = %(now)s FROM gone g WHERE s.id = g.signal_id),"
            " ready AS (SELECT signal_id FROM claims WHERE owner IS NULL AND not_before <= %(now)s"
            "   ORDER BY not_before, signal_id LIMIT %(n)s FOR UPDATE SKIP LOCKED),"
            " stale AS (SELECT signal_id FROM claims WHERE owner IS NOT NULL AND lease_until < %(now)s"
            "   AND epoch < %(max)s ORDER BY lease_until LIMIT %(n)s FOR UPDATE SKIP LOCKED),"
            " pick AS ((SELECT signal_id FROM ready) UNION ALL (SELECT signal_id FROM stale) LIMIT %(n)s),"
            " took AS (UPDATE claims c SET owner = %(owner)s, epoch = c.epoch + 1, lease_until = %(until)s"
            "   FROM pick WHERE c.signal_id = pick.signal_id RETURNING c.signal_id, c.epoch)"
            " SELECT s.id, s.channel, s.source, s.received_at, s.entity, s.attempts, s.last_error, s.dedup_key,"
            "   s.ack, s.updated_at, s.replays, s.replay_from, 'running' AS status, %(owner)s AS owner, t.epoch"
            " FROM took t JOIN signals s ON s.id = t.signal_id ORDER BY s.id",
            p,
        ).fetchall()
        return [from_row.signal(r) for r in rows]

    def has_claimable(self, now: float | None = None) -> bool:
        now = self.now() if now is None else now
        row = self._x(
            "SELECT EXISTS (SELECT 1 FROM claims WHERE owner IS NULL AND not_before <= %(now)s)"
            " OR EXISTS (SELECT 1 FROM claims WHERE owner IS NOT NULL AND lease_until < %(now)s) AS any",
            {"now": now},
        ).fetchone()
        return bool(row["any"])

    def renew(self, owner: str, signal_ids: list[str], lease: float, now: float | None = None) -> int:
        until = (self.now() if now is None else now) + lease
        return int(
            self._x(
                "UPDATE claims SET lease_until = %s WHERE owner = %s AND signal_id = ANY(%s)",
                (until, owner, list(signal_ids)),
            ).rowcount
        )

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
        p = {
            "id": claim.signal_id,
            "owner": claim.owner,
            "epoch": claim.epoch,
            "status": status,
            "now": now,
            "error": clean_text(error),
            "at": now + (retry_in or 0.0),
        }
        fence = "signal_id = %(id)s AND owner = %(owner)s AND epoch = %(epoch)s"
        if retry_in is not None:
            self.wants_notify = True
            cur = self._x(
                "WITH c AS (UPDATE claims SET owner = NULL, lease_until = NULL, not_before = %(at)s"
                f" WHERE {fence} RETURNING epoch)"
                " UPDATE signals s SET attempts = attempts + 1, last_error = %(error)s, epoch = c.epoch,"
                " updated_at = %(now)s FROM c WHERE s.id = %(id)s",
                p,
            )
        else:
            cur = self._x(
                f"WITH c AS (DELETE FROM claims WHERE {fence} RETURNING epoch)"
                " UPDATE signals s SET status = %(status)s, attempts = attempts + 1, last_error = %(error)s,"
                " epoch = c.epoch, updated_at = %(now)s FROM c WHERE s.id = %(id)s",
                p,
            )
        return bool(cur.rowcount == 1)

    def record_run(self, signal_id: str, run: Run) -> None:
        self._x(
            "INSERT INTO runs (signal_id, workflow, attempt, status, started_at, duration_ms, error, trace)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                signal_id,
                run.workflow,
                run.attempt,
                run.status,
                run.started_at,
                run.duration_ms,
                clean_text(run.error),
                json.dumps(run.trace, default=str),
            ),
        )

    def release(self, owner: str) -> int:
        n = int(
            self._x("UPDATE claims SET owner = NULL, lease_until = NULL WHERE owner = %s", (owner,)).rowcount
        )
        self.wants_notify = self.wants_notify or n > 0
        return n

    def requeue(self, signal_id: str, *, delay: float = 0.0, now: float | None = None) -> bool:
        now = self.now() if now is None else now
        cur = self._x(
            # A new round: `replay_from` is its first attempt, and record steps write again.
            "WITH s AS (UPDATE signals SET status = 'open', replays = replays + 1, replay_from = attempts + 1,"
            "   updated_at = %(now)s WHERE id = %(id)s AND status IN ('failed', 'done') RETURNING id, epoch),"
            " e AS (DELETE FROM step_effects WHERE signal_id IN (SELECT id FROM s))"
            " INSERT INTO claims (signal_id, epoch, not_before) SELECT id, epoch, %(at)s FROM s"
            " ON CONFLICT DO NOTHING",
            {"now": now, "id": signal_id, "at": now + max(0.0, delay)},
        )
        self.wants_notify = self.wants_notify or cur.rowcount == 1
        return bool(cur.rowcount == 1)

    def set_ack(self, signal_id: str, ack: dict[str, Any]) -> None:
        self._x("UPDATE signals SET ack = %s WHERE id = %s", (json.dumps(ack), signal_id))

    # -- reads --------------------------------------------------------------------------------------------

    def get_signal(self, signal_id: str) -> Signal | None:
        row = self._x("SELECT * FROM signals_v WHERE id = %s", (signal_id,)).fetchone()
        return from_row.signal(row) if row else None

    def runs_for(self, signal_id: str) -> list[dict[str, Any]]:
        rows = self._x("SELECT * FROM runs WHERE signal_id = %s ORDER BY id", (signal_id,)).fetchall()
        return [{**r, "trace": json.loads(r["trace"])} for r in rows]

    def done_workflows(self, signal_id: str, since_attempt: int = 0) -> set[str]:
        rows = self._x(
            "SELECT workflow FROM runs WHERE signal_id = %s AND status = 'done' AND attempt >= %s",
            (signal_id, since_attempt),
        )
        return {r["workflow"] for r in rows}

    def counts(self) -> dict[str, int]:
        rows = self._x(
            "SELECT status, count(*) AS n FROM signals WHERE status <> 'open' GROUP BY status UNION ALL"
            " SELECT CASE WHEN owner IS NULL THEN 'pending' ELSE 'running' END, count(*) FROM claims GROUP BY 1"
        ).fetchall()
        return {r["status"]: int(r["n"]) for r in rows if r["n"]}

    def count_pending(self) -> int:
        return int(self._x("SELECT count(*) AS n FROM claims WHERE owner IS NULL").fetchone()["n"])

    def source_stats(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for row in self._x("SELECT source, status, count(*) AS n FROM signals_v GROUP BY source, status"):
            item = out.setdefault(row["source"], {"counts": {}, "last_signal": None})
            item["counts"][row["status"]] = int(row["n"])
        for row in self._x(
            "SELECT DISTINCT ON (source) source, id, received_at, status FROM signals_v ORDER BY source, id DESC"
        ):
            item = out.setdefault(row["source"], {"counts": {}, "last_signal": None})
            item["last_signal"] = {
                "id": row["id"],
                "received_at": row["received_at"],
                "status": row["status"],
            }
        return out

    # -- the live feed --------------------------------------------------------------------------------------
    # Ids are minted before their transactions and commits land in any order, so neither ids nor a
    # sequence can be a cursor (a row with a smaller one may commit later). The cursor is the row's
    # inserting transaction id: every xid below the snapshot's xmin has finished, so the rows below
    # it can no longer change; the feed only ever reads that settled part, in (xid, id) order.

    def feed_start(self) -> FeedCursor:
        row = self._x("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS x").fetchone()
        return int(row["x"]), ""  # xid = xmin is still running: its rows come later

    def feed_after(self, cursor: FeedCursor, limit: int = 500) -> tuple[list[dict[str, Any]], FeedCursor]:
        rows = self._x(
            f"SELECT xid::text::bigint AS x, {_LIVE_COLUMNS} FROM signals_v"
            " WHERE (xid, id) > (%s::text::xid8, %s) AND xid < pg_snapshot_xmin(pg_current_snapshot())"
            " ORDER BY xid, id LIMIT %s",
            (str(cursor[0]), cursor[1], limit),
        ).fetchall()
        if not rows:
            return [], cursor
        return [{k: r[k] for k in r if k != "x"} for r in rows], (int(rows[-1]["x"]), rows[-1]["id"])

    def signals_now(self, ids: list[str]) -> list[dict[str, Any]]:
        if not ids:
            return []
        return list(
            self._x(f"SELECT {_LIVE_COLUMNS} FROM signals_v WHERE id = ANY(%s)", (list(ids),)).fetchall()
        )

    # -- retention ------------------------------------------------------------------------------------------

    def prune_settled(self, cutoff: str, limit: int) -> int:
        return int(
            self._x(
                "WITH doomed AS (SELECT id FROM signals WHERE id < %s AND status IN ('done', 'failed')"
                "   ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED),"
                " r AS (DELETE FROM runs WHERE signal_id IN (SELECT id FROM doomed)),"
                " e AS (DELETE FROM step_effects WHERE signal_id IN (SELECT id FROM doomed)),"
                " b AS (DELETE FROM signal_bodies WHERE signal_id IN (SELECT id FROM doomed)),"
                " t AS (DELETE FROM signal_text WHERE signal_id IN (SELECT id FROM doomed))"
                " DELETE FROM signals WHERE id IN (SELECT id FROM doomed)",
                (cutoff, limit),
            ).rowcount
        )

    def prune_dedup(self, now: float | None = None) -> int:
        now = self.now() if now is None else now
        return int(self._x("DELETE FROM dedup WHERE expires_at < %s", (now,)).rowcount)
