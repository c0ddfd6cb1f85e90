"""The PostgreSQL backend's store: connections, the group-commit writer, reads in threads, LISTEN.

psycopg 3's sync API in worker threads: its async API is built on asyncio and fails under trio
(SCALE-OUT §4). One writer connection per process runs each batch of write jobs in ONE transaction
(one WAL flush), optimistically and without a savepoint per job: more than 64 subtransactions
overflow PostgreSQL's per-backend cache and savepoints cost 2.3x below that (§5.9). When the batch
fails (a job raised, a deadlock with another node, a fenced write) it is rolled back and each job
re-run in its own transaction, so one bad job costs latency, never its neighbours.

A connection lost before COMMIT means nothing was written: the batch is retried once on a fresh
connection, then reported `StorageUnavailable` (callers answer 503; nothing was acknowledged). A
connection lost DURING commit leaves the outcome unknown: after reconnecting, the pre-minted ids of
the signals the batch appended are looked up (or, for a batch that appended none, the status of its
transaction id), so a committed batch is reported committed and never journaled twice.

Reads use a small pool (`[database] pool_size`) in autocommit mode, through `aread` in a thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import trio
from psycopg.rows import dict_row
from psycopg.types.string import TextLoader
from psycopg_pool import ConnectionPool, PoolTimeout

from engine.ports import StorageError
from router.storage.base import StorageUnavailable, Tx
from router.storage.postgres import schema
from router.storage.postgres.tx import PgTx
from router.storage.queue import Job, WriteQueue

T = TypeVar("T")

MAX_BATCH = 512
NOTIFY_CHANNEL = "router_work"


def storage_error(exc: BaseException) -> BaseException:
    """The driver's errors leave the backend as `StorageError`; everything else as it is."""
    if isinstance(exc, (psycopg.OperationalError, PoolTimeout)):
        err: StorageError = StorageUnavailable(f"database unavailable: {exc}".strip())
    elif isinstance(exc, psycopg.Error):
        err = StorageError(str(exc))
    else:
        return exc
    err.__cause__ = exc
    return err


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.adapters.register_loader("json", TextLoader)  # entities, traces, acks: the text, as stored


class PgStorage(WriteQueue):
    """`router.storage.base.Storage` on one PostgreSQL database, shared by every node."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 4,
        statement_timeout: float = 30.0,
        connect_timeout: float = 5.0,
        max_deliveries: int = 20,
    ) -> None:
        self.url = url
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.max_deliveries = max_deliveries
        ms = int(statement_timeout * 1000)
        self._kwargs: dict[str, Any] = {
            "connect_timeout": max(1, round(connect_timeout)),
            "application_name": "router",
            # A blocking libpq call cannot be cancelled from trio: the server bounds it instead.
            "options": f"-c statement_timeout={ms} -c lock_timeout={min(ms, 5000)}"
            f" -c idle_in_transaction_session_timeout={max(ms * 2, 10000)}",
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        }
        self._writer_conn: psycopg.Connection[Any] | None = None
        self._pool: ConnectionPool | None = None
        self._lock = threading.Lock()  # the writer thread and write_sync share the writer connection
        self._read_limiter = trio.CapacityLimiter(max(1, pool_size))
        self.commits = 0
        self.jobs_committed = 0
        self.on_commit: Callable[[float, int], None] | None = None
        self.max_batch = MAX_BATCH

    # -- lifecycle -------------------------------------------------------------------------

    def connect(self, *, autocommit: bool) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self.url, autocommit=autocommit, row_factory=dict_row, **self._kwargs)
        except psycopg.Error as exc:
            raise StorageUnavailable(f"cannot connect to the database: {str(exc).strip()}") from exc
        _configure(conn)
        return conn

    def open_sync(self) -> None:
        """Connect, migrate the schema (under the advisory lock), open the read pool."""
        with self.connect(autocommit=True) as conn:
            try:
                schema.migrate(conn)
            except psycopg.Error as exc:
                raise storage_error(exc) from exc
        self._writer_conn = self.connect(autocommit=False)
        self._pool = ConnectionPool(
            self.url,
            min_size=1,
            max_size=max(1, self.pool_size),
            open=False,
            kwargs={**self._kwargs, "autocommit": True, "row_factory": dict_row},
            configure=_configure,
            timeout=self.connect_timeout,
            name="router-read",
        )
        self._pool.open(wait=False)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close(timeout=1)
            self._pool = None
        if self._writer_conn is not None:
            self._writer_conn.close()
            self._writer_conn = None

    # -- reads ----------------------------------------------------------------------------------

    def read(self, fn: Callable[[Tx], T]) -> T:
        assert self._pool is not None, "storage is not open"
        for attempt in (1, 2):
            try:
                with self._pool.connection(timeout=self.connect_timeout) as conn:
                    return fn(PgTx(conn, max_deliveries=self.max_deliveries))
            except (psycopg.OperationalError, PoolTimeout) as exc:
                # A pooled connection the server dropped (restart): the pool discards it; one retry.
                if attempt == 2 or isinstance(exc, PoolTimeout):
                    raise storage_error(exc) from exc
            except psycopg.Error as exc:
                raise storage_error(exc) from exc
        raise AssertionError("unreachable")

    async def aread(self, fn: Callable[[Tx], T]) -> T:
        return await trio.to_thread.run_sync(self.read, fn, limiter=self._read_limiter)

    # -- writes ---------------------------------------------------------------------------------

    def write_sync(self, fn: Callable[[Tx], T]) -> T:
        """One transaction right now, from a plain thread (CLI, start-up)."""
        job = Job(fn)
        self._execute_batch([job])
        if job.error is not None:
            raise job.error
        return job.result

    def _writer(self) -> psycopg.Connection[Any]:
        conn = self._writer_conn
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                conn.close()
            self._writer_conn = None
            self._writer_conn = conn = self.connect(autocommit=False)
        return conn

    def _execute_batch(self, batch: list[Job]) -> None:
        started = time.perf_counter()
        with self._lock:
            if len(batch) == 1 or not self._run(batch, optimistic=True):
                for job in batch:
                    self._run([job], optimistic=False)
        ok = sum(1 for job in batch if job.error is None)
        if ok:
            self.commits += 1
            self.jobs_committed += ok
            if self.on_commit is not None:
                self.on_commit(time.perf_counter() - started, len(batch))

    def _run(self, jobs: list[Job], *, optimistic: bool) -> bool:
        """One transaction for `jobs`. False: optimistic, and some job failed (all rolled back)."""
        for attempt in (1, 2):
            try:
                conn = self._writer()
            except StorageUnavailable as exc:
                return self._fail(jobs, exc)
            tx = PgTx(conn, max_deliveries=self.max_deliveries)
            try:
                head = conn.execute(
                    "SELECT extract(epoch FROM now())::float8 AS t, pg_current_xact_id()::text AS x"
                ).fetchone()
                assert head is not None
                tx._now, xid = head["t"], head["x"]
                for job in jobs:
                    job.error = None
                    job.result = job.fn(tx)
            except BaseException as exc:  # noqa: BLE001 - reported to the job's caller
                lost = conn.broken or conn.closed
                self._rollback(conn)
                if lost and attempt == 1:
                    continue  # nothing was written: once more on a fresh connection
                if lost:
                    return self._fail(jobs, storage_error(exc))
                if optimistic:
                    return False
                jobs[0].error, jobs[0].result = storage_error(exc), None
                return True
            try:
                conn.commit()
            except psycopg.Error as exc:
                if not (conn.broken or conn.closed):
                    self._rollback(conn)
                    if optimistic:
                        return False
                    return self._fail(jobs, storage_error(exc))
                if not self._committed(tx.appended, xid):
                    return self._fail(
                        jobs, StorageUnavailable(f"the database went away during commit: {exc}")
                    )
            if tx.wants_notify:
                self._notify(conn)
            return True
        return True

    def _fail(self, jobs: list[Job], exc: BaseException) -> bool:
        for job in jobs:
            job.error, job.result = exc, None
        return True

    @staticmethod
    def _rollback(conn: psycopg.Connection[Any]) -> None:
        try:
            conn.rollback()
        except psycopg.Error:
            conn.close()

    def _committed(self, appended: list[str], xid: str, patience: float = 10.0) -> bool:
        """After a commit whose answer was lost: did it happen? Looked up on a fresh connection."""
        deadline = time.monotonic() + patience
        while True:
            try:
                with self.connect(autocommit=True) as conn:
                    if appended:
                        row = conn.execute(
                            "SELECT count(*) AS n FROM signals WHERE id = ANY(%s)", (appended,)
                        ).fetchone()
                        return bool(row and row["n"] > 0)
                    row = conn.execute("SELECT pg_xact_status(%s::xid8) AS s", (xid,)).fetchone()
                    status = row["s"] if row else None
                    if status != "in progress":
                        return status == "committed"
            except (StorageUnavailable, psycopg.Error):
                pass
            if time.monotonic() > deadline:
                return False  # unknown: reported unavailable, so nothing is acknowledged
            time.sleep(0.2)

    def _notify(self, conn: psycopg.Connection[Any]) -> None:
        # After the commit, in its own tiny transaction: NOTIFY takes a cluster-wide lock at commit
        # and a full notification queue fails the committing transaction (SCALE-OUT §5.6, trap 7).
        try:
            conn.execute("SELECT pg_notify(%s, '')", (NOTIFY_CHANNEL,))
            conn.commit()
        except psycopg.Error:
            self._rollback(conn)  # a hint only: the claim loops poll anyway

    # -- wake-ups ---------------------------------------------------------------------------------

    async def listen_for_work(self, wake: Callable[[], None]) -> None:
        from router.storage.postgres.listen import listen

        await listen(lambda: self.connect(autocommit=True), NOTIFY_CHANNEL, wake)
