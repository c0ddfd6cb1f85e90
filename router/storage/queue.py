"""The group-commit queue every backend's writer shares: trio callers queue jobs, one writer task
drains them in batches and runs each batch in a worker thread (one `trio.to_thread` hop per batch,
not per job), then wakes the callers. What a batch is (one transaction with a savepoint per job on
SQLite; an optimistic transaction with a per-job fallback on PostgreSQL) is the backend's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import trio

from router.storage.base import StorageUnavailable, Tx
from router.storage.rows import Appended, NewSignal

T = TypeVar("T")


def _keep_waiting(_: Any) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED


class Job:
    __slots__ = ("fn", "new_signal", "finished", "result", "error", "_task")

    def __init__(self, fn: Callable[[Tx], Any], new_signal: NewSignal | None = None) -> None:
        self.fn = fn
        self.new_signal = new_signal  # a plain append: a backend may merge it with its neighbours'
        self.finished = False
        self.result: Any = None
        self.error: BaseException | None = None
        self._task: trio.lowlevel.Task | None = None

    async def wait(self) -> None:
        """Until `finish()`, whatever happens: a cancellation is delivered at the caller's next
        checkpoint (what a shielded Event.wait() did, without a cancel scope and an Event per job)."""
        if not self.finished:
            self._task = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(_keep_waiting)

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        if self._task is not None:
            trio.lowlevel.reschedule(self._task)


class WriteQueue:
    """Mixed into a store: `run_writer`, `stop_writer` and `write` over its `_execute_batch`."""

    max_batch: int
    _send: trio.MemorySendChannel[Job] | None = None

    def _execute_batch(self, batch: list[Job]) -> None:
        raise NotImplementedError

    async def run_writer(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The single writer task: drain, run a batch in one transaction, wake the callers."""
        self._send, recv = trio.open_memory_channel[Job](math.inf)
        task_status.started()
        batch: list[Job] = []
        async with recv:
            try:
                async for first in recv:
                    batch = [first]
                    while len(batch) < self.max_batch:
                        try:
                            batch.append(recv.receive_nowait())
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                    # Not cancellable on purpose: a batch that started must finish and report.
                    await trio.to_thread.run_sync(self._execute_batch, batch)
                    for job in batch:
                        job.finish()
            finally:
                # Cancelled (shutdown) with jobs not run: fail them, or their shielded callers wait forever.
                leftover = [job for job in batch if not job.finished]
                while True:
                    try:
                        leftover.append(recv.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                        break
                for job in leftover:
                    job.error = StorageUnavailable("storage is shutting down")
                    job.finish()

    def stop_writer(self) -> None:
        if self._send is not None:
            self._send.close()

    async def write(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn(tx)` in the next group commit; return once it is durable."""
        return await self._queue(Job(fn))

    async def append(self, signal: NewSignal) -> Appended:
        """Journal `signal` in the next group commit, mergeable with the appends around it."""
        return await self._queue(Job(lambda tx: tx.append_signals([signal])[0], signal))

    async def _queue(self, job: Job) -> Any:
        if self._send is None:
            raise StorageUnavailable("storage writer is not running")
        try:
            self._send.send_nowait(job)
        except (trio.ClosedResourceError, trio.BrokenResourceError) as exc:
            raise StorageUnavailable("storage is shutting down") from exc
        # Not cancellable: once queued the job will commit; the caller must learn the outcome.
        await job.wait()
        if job.error is not None:
            raise job.error
        return job.result
