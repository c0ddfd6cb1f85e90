"""The SQLite backend's store: connections, the group-commit writer, migrations at open.

One writer per process drains a queue of
write jobs and runs each batch in ONE transaction with ONE fsync (group commit): appends that
arrive together share the cost of durability. Each job runs inside its own savepoint, so one
failing job does not undo its neighbours; neighbouring plain appends run as one
`Tx.append_signals` (one INSERT for up to 64), and one by one only if that fails.

The writer thread needs the GIL again after every statement it steps, and gets it only when
the event loop lets go (a socket call, or the 5 ms switch interval): statements per batch, not
per signal, keep a commit from waiting on the loop (48 appends took 11 ms at three statements a
signal, almost all of it waiting). A job's caller is woken only after COMMIT returned,
i.e. after the WAL was fsynced (`synchronous=FULL`).

Reads run synchronously on a read connection owned by the trio thread: WAL readers never wait
for the writer and indexed lookups take microseconds, which is cheaper than a thread hop.

Several processes write one database (HTTP workers, runners, the CLI). They queue for SQLite's
write lock on an flock'd file beside it: the kernel wakes the next writer the moment the lock
is free, where SQLite's own busy handler would sleep and poll (1, 2, 5, 10… ms), which showed as
a p99 tail whenever two processes committed at once.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from engine.ports import StorageError
from router.storage.base import StorageUnavailable, Tx
from router.storage.queue import Job, WriteQueue
from router.storage.sqlite import schema
from router.storage.sqlite.tx import SqliteTx

T = TypeVar("T")

MAX_BATCH = 512
BUSY_TIMEOUT_MS = 10000  # how long a transaction waits for a lock held outside the router


def storage_error(exc: BaseException) -> BaseException:
    """The driver's errors leave the backend as `StorageError`; everything else as it is."""
    if isinstance(exc, sqlite3.Error):
        err = StorageError(str(exc))
        err.__cause__ = exc
        return err
    return exc


def connect(path: Path, *, synchronous: str = "FULL", readonly: bool = False) -> sqlite3.Connection:
    """A connection with our pragmas; autocommit mode so transactions are explicit."""
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        # The statement cache holds the 64 sizes of the multi-row append (journal.py) and the rest.
        conn = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, cached_statements=256
        )
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


class SqliteStorage(WriteQueue):
    """SQLite database in the data dir with a group-committing writer (`router.storage.base.Storage`).

    Use inside trio: start `run_writer` in a nursery, then `await write(job)`. Outside trio (CLI),
    `write_sync` runs one transaction directly.
    """

    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        self.path = path
        self.synchronous = synchronous
        self._writer_conn: sqlite3.Connection | None = None
        self._write_lock_fd: int | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._writer_tx: SqliteTx | None = None
        self._read_tx: SqliteTx | None = None
        self._lock = threading.Lock()  # serialises write_sync callers in one process
        self.commits = 0
        self.jobs_committed = 0
        self.on_commit: Callable[[float, int], None] | None = None  # (seconds, batch size) for metrics
        self.max_batch = MAX_BATCH  # 1 turns group commit off (benchmarks)

    # -- lifecycle -------------------------------------------------------------------------

    def open_sync(self) -> None:
        """Open (creating the file if needed) and migrate the schema to this router's version."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._writer_conn = connect(self.path, synchronous=self.synchronous)
            schema.migrate(self._writer_conn)  # with the busy timeout: another process may be migrating
            self._writer_conn.execute("PRAGMA busy_timeout = 0")  # see _begin
            self._read_conn = connect(self.path, synchronous=self.synchronous)
        except StorageError:
            self.close()
            raise
        except sqlite3.Error as exc:
            self.close()
            raise StorageUnavailable(f"cannot open {self.path}: {exc}") from exc
        self._writer_tx = SqliteTx(self._writer_conn)
        self._read_tx = SqliteTx(self._read_conn)
        self._write_lock_fd = os.open(f"{self.path}-writelock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def close(self) -> None:
        for conn in (self._writer_conn, self._read_conn):
            if conn is not None:
                conn.close()
        self._writer_conn = self._read_conn = None
        self._writer_tx = self._read_tx = None
        if self._write_lock_fd is not None:
            os.close(self._write_lock_fd)
            self._write_lock_fd = None

    # -- the narrow interface --------------------------------------------------------------

    def read(self, fn: Callable[[Tx], T]) -> T:
        assert self._read_tx is not None, "storage is not open"
        try:
            return fn(self._read_tx)
        except sqlite3.Error as exc:
            raise storage_error(exc) from exc

    async def aread(self, fn: Callable[[Tx], T]) -> T:
        return self.read(fn)  # an indexed local read takes microseconds: cheaper than a thread hop

    async def listen_for_work(self, wake: Callable[[], None]) -> None:
        return None  # one machine: the doorbell (router/doorbell.py) already carries every wake-up

    def write_sync(self, fn: Callable[[Tx], T]) -> T:
        """One transaction right now, from a plain thread (CLI, start-up)."""
        job = Job(fn)
        with self._lock:
            self._execute_batch([job])
        if job.error is not None:
            raise job.error
        return job.result

    # -- internals ---------------------------------------------------------------------------

    def _execute_batch(self, batch: list[Job]) -> None:
        assert self._write_lock_fd is not None, "storage is not open"
        fd = self._write_lock_fd
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel if we die holding it
        try:
            self._transaction(batch, fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)  # a no-op if _begin let go already

    def _begin(self, conn: sqlite3.Connection, fd: int) -> None:
        """BEGIN IMMEDIATE, holding the flock. Our own writers are ordered by the flock, so SQLite's
        lock is normally free here; if it is not, someone outside the router holds it (a sqlite3
        shell, a backup): let go of the flock, so our other processes are not queued behind this
        wait, and wait like any SQLite client (busy_timeout)."""
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
        fcntl.flock(fd, fcntl.LOCK_UN)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        try:
            conn.execute("BEGIN IMMEDIATE")
        finally:
            conn.execute("PRAGMA busy_timeout = 0")

    def _run_job(self, conn: sqlite3.Connection, tx: SqliteTx, job: Job) -> None:
        # One name for every job's savepoint (each is released before the next is taken): one
        # statement text, prepared once, where `job{i}` was a new one for each place in a batch.
        conn.execute("SAVEPOINT job")
        try:
            job.result = job.fn(tx)
        except BaseException as exc:  # noqa: BLE001 - reported to that job's caller
            job.error = storage_error(exc)
            if conn.in_transaction:
                conn.execute("ROLLBACK TO job")
        if conn.in_transaction:
            conn.execute("RELEASE job")

    def _run_appends(self, conn: sqlite3.Connection, tx: SqliteTx, jobs: list[Job]) -> None:
        """Neighbouring plain appends as one `append_signals` (one statement for up to 64); if
        that fails, each runs on its own, so that only a bad one fails."""
        conn.execute("SAVEPOINT appends")
        try:
            results = tx.append_signals([job.new_signal for job in jobs if job.new_signal is not None])
        except BaseException as exc:  # noqa: BLE001 - run one by one below, where errors are reported
            if not conn.in_transaction:  # SQLite gave the transaction up (disk full, I/O error)
                for job in jobs:
                    job.error = storage_error(exc)
                return
            conn.execute("ROLLBACK TO appends")
            conn.execute("RELEASE appends")
            for job in jobs:
                self._run_job(conn, tx, job)
            return
        conn.execute("RELEASE appends")
        for job, result in zip(jobs, results, strict=True):
            job.result = result

    def _transaction(self, batch: list[Job], fd: int) -> None:
        conn, tx = self._writer_conn, self._writer_tx
        assert conn is not None and tx is not None, "storage is not open"
        started = time.perf_counter()
        try:
            self._begin(conn, fd)
        except sqlite3.Error as exc:
            err = StorageUnavailable(f"journal cannot start a transaction: {exc}")
            for job in batch:
                job.error = err
            return
        i = 0
        while i < len(batch):
            end = i
            while end < len(batch) and batch[end].new_signal is not None:
                end += 1
            if end - i >= 2:
                self._run_appends(conn, tx, batch[i:end])
                i = end
            else:
                self._run_job(conn, tx, batch[i])
                i += 1
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            err = StorageUnavailable(f"journal commit failed: {exc}")
            for job in batch:
                if job.error is None:
                    job.error = err
                    job.result = None
            return
        self.commits += 1
        self.jobs_committed += len(batch)
        if self.on_commit is not None:
            self.on_commit(time.perf_counter() - started, len(batch))
