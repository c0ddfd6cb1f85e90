"""The storage interface: one transaction object (`Tx`) and the store that runs jobs on it.

Every byte the router keeps goes through here. A job is a plain synchronous function of a `Tx`;
`Storage.write(job)` runs it inside a group-committed transaction and returns once it is durable,
`Storage.read(job)` runs it on a read transaction. Jobs call `Tx` methods, never SQL: the SQL of
each backend lives in that backend's modules only (router/storage/sqlite/, router/storage/postgres/).

Rules every backend keeps (checked by tests/storage_contract/):
  * a conditional write is one statement that re-checks its own predicate: a dedup key is taken
    with one insert-or-nothing, a claim re-checks "still claimable" in the statement that takes
    it, a settle re-checks owner and epoch (the fencing token in `ClaimRef`);
  * time: lease deadlines, retry times and dedup expiries are wall-clock epoch seconds read from
    ONE source, `Tx.now()`. SQLite (one machine) reads the host clock; a PostgreSQL backend returns
    the database's `now()`, so nodes whose clocks drift still agree. Methods take `now=` only so
    tests can move time;
  * the live feed (`feed_after`) never skips a committed row, whatever order commits land in.

Errors: backends raise `engine.ports.StorageError` (or the subclasses below), never their driver's.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import trio

from engine.entity import Entity
from engine.ports import RecordTx, StorageError
from router.storage.rows import (
    Appended,
    ClaimRef,
    FeedCursor,
    LeaseHolder,
    NewSignal,
    Refusal,
    Run,
    ScheduleState,
    Signal,
    SignalQuery,
    SourceState,
)

T = TypeVar("T")

__all__ = ["Conflict", "LeaseLost", "Storage", "StorageError", "StorageUnavailable", "Tx"]


class StorageUnavailable(StorageError):
    """The journal could not write (disk full, read-only, locked for too long, shutting down)."""


class Conflict(StorageError):
    """A conditional write found its precondition gone; the job's transaction is rolled back."""


class LeaseLost(Conflict):
    """Another process drives the schedules now."""


class Tx(RecordTx):
    """One transaction. Implemented by `router.storage.sqlite.tx.SqliteTx` and
    `router.storage.postgres.tx.PgTx`."""

    @abstractmethod
    def now(self) -> float:
        """Wall-clock epoch seconds: the one clock every lease and expiry is compared against."""

    @abstractmethod
    def health_touch(self, key: str) -> None:
        """Rewrite one small row: `/readyz` commits it to prove the store takes writes now."""

    # -- journal: append, claim, settle -----------------------------------------------------------

    @abstractmethod
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
        """Journal one signal. A `dedup_key` still unexpired for its source makes it a duplicate
        (nothing is written; the original id and ack come back). With `owner` the signal is claimed
        by that owner in the same transaction (epoch 1); `settled` journals it as done at once.
        `entity.raw`, the body as received, is kept beside it (`signal_body`)."""

    def append_signals(self, signals: Sequence[NewSignal], *, now: float | None = None) -> list[Appended]:
        """`append_signal` for each, in order, in this transaction; all are written or the call
        raises. A backend may write them in a few statements instead of a few each (SQLite:
        the group-commit writer merges neighbouring appends into one call)."""
        return [
            self.append_signal(
                s.entity,
                dedup_key=s.dedup_key,
                dedup_window=s.dedup_window,
                owner=s.owner,
                lease=s.lease,
                ack=s.ack,
                settled=s.settled,
                now=now,
            )
            for s in signals
        ]

    @abstractmethod
    def claim(self, owner: str, limit: int, *, lease: float = 15.0, now: float | None = None) -> list[Signal]:
        """Claim up to `limit` runnable signals (pending and due, or running with an expired lease),
        oldest first; each claim bumps the signal's epoch."""

    @abstractmethod
    def has_claimable(self, now: float | None = None) -> bool:
        """A cheap read before a claim: is anything pending and due, or leased and expired?"""

    @abstractmethod
    def renew(self, owner: str, signal_ids: list[str], lease: float, now: float | None = None) -> int:
        """Extend `owner`'s leases on these signals; returns how many it still held."""

    @abstractmethod
    def settle(
        self,
        claim: ClaimRef,
        *,
        status: str,
        error: str | None = None,
        retry_in: float | None = None,
        now: float | None = None,
    ) -> bool:
        """Record the outcome of one attempt (done, failed, or pending again `retry_in` seconds from
        now); False, and nothing written, if the claim was taken over meanwhile (owner or epoch)."""

    @abstractmethod
    def record_run(self, signal_id: str, run: Run) -> None: ...

    @abstractmethod
    def release(self, owner: str) -> int:
        """Hand back every signal `owner` still holds (clean shutdown): pending again, attempt kept."""

    @abstractmethod
    def requeue(self, signal_id: str, *, delay: float = 0.0, now: float | None = None) -> bool:
        """Replay a failed or done signal (`router replay`): pending again, due `delay` seconds
        from now, as a new round. `replays` grows by one and `replay_from` becomes the next attempt,
        so every listening workflow runs again (`done_workflows` counts only this round's runs) and
        the signal's step effects are forgotten (its record steps write again). False, nothing
        changed, for a pending or running signal."""

    @abstractmethod
    def set_ack(self, signal_id: str, ack: dict[str, Any]) -> None:
        """Remember the answer given to the caller, for an idempotent repeat."""

    # -- journal: reads ---------------------------------------------------------------------------

    @abstractmethod
    def get_signal(self, signal_id: str) -> Signal | None: ...

    def list_signals(
        self,
        *,
        status: str | None = None,
        source: str | None = None,
        since: str | None = None,
        until: str | None = None,
        before: str | None = None,
        limit: int = 50,
    ) -> list[Signal]:
        """Newest first; `since`/`until` bound `received_at`, `before` an id (paging)."""
        return self.find_signals(
            SignalQuery(status=status, source=source, since=since, until=until, before=before, limit=limit)
        )

    @abstractmethod
    def signal_body(self, signal_id: str) -> bytes | None:
        """The request body as received (`Entity.raw`, journaled by `append_signal`), if any."""

    @abstractmethod
    def find_signals(self, query: SignalQuery) -> list[Signal]:
        """Signals matching `query`, newest first, at most `query.limit`; with `after`, the
        page just newer than that id (still newest first). Must stay fast at 100,000 signals."""

    @abstractmethod
    def count_signals(self, query: SignalQuery) -> int:
        """How many signals match `query` (its cursor and limit ignored, `upto` kept)."""

    @abstractmethod
    def runs_for(self, signal_id: str) -> list[dict[str, Any]]: ...

    @abstractmethod
    def done_workflows(self, signal_id: str, since_attempt: int = 0) -> set[str]:
        """Workflows with a done run of attempt `since_attempt` or later (a retry or a run started
        over after a crash skips them; pass the signal's `replay_from`)."""

    @abstractmethod
    def counts(self) -> dict[str, int]:
        """Signals by status."""

    @abstractmethod
    def count_pending(self) -> int: ...

    @abstractmethod
    def source_stats(self) -> dict[str, dict[str, Any]]:
        """Per source: `counts` by status and `last_signal` (id, received_at, status)."""

    # -- the dashboard's live feed ------------------------------------------------------------------

    @abstractmethod
    def feed_start(self) -> FeedCursor:
        """A cursor after everything committed so far."""

    @abstractmethod
    def feed_after(self, cursor: FeedCursor, limit: int = 500) -> tuple[list[dict[str, Any]], FeedCursor]:
        """Signals committed after `cursor`, in commit order, and the cursor to continue from."""

    @abstractmethod
    def signals_now(self, ids: list[str]) -> list[dict[str, Any]]:
        """The present state of a few signals (the live view follows those it has shown)."""

    # -- retention ----------------------------------------------------------------------------------

    @abstractmethod
    def prune_settled(self, cutoff: str, limit: int) -> int:
        """Delete up to `limit` done/failed signals with ids below `cutoff`, with their runs, step
        effects and bodies; pending and running signals are never touched."""

    @abstractmethod
    def prune_dedup(self, now: float | None = None) -> int: ...

    # -- refused requests ---------------------------------------------------------------------------

    @abstractmethod
    def refused_add(self, rows: list[Refusal], keep: int) -> int:
        """Keep these refusals, then only the newest `keep` of each source they touch (by id);
        returns how many older ones were dropped."""

    @abstractmethod
    def refused_list(
        self, *, source: str | None = None, before: str | None = None, limit: int = 50
    ) -> list[Refusal]:
        """Newest first; `before` an id (paging)."""

    @abstractmethod
    def refused_get(self, refusal_id: str) -> Refusal | None: ...

    # -- sources: generated credentials and activation -------------------------------------------------

    @abstractmethod
    def source_add(
        self, kind: str, name: str, *, first_hash: str | None, second_hash: str | None, api_key: str | None
    ) -> bool:
        """Create the row of a source seen for the first time; False (nothing changed) if it exists."""

    @abstractmethod
    def source_pin_api_key(self, kind: str, name: str, api_key: str) -> bool:
        """Set the key the config pins, if it differs."""

    @abstractmethod
    def source_set_active(self, kind: str, name: str, active: bool) -> bool: ...

    @abstractmethod
    def source_fill_jwt(self, kind: str, name: str, jwt_key: str, jwt_secret: str) -> bool:
        """Give an endpoint its generated JWT key and secret if it has none yet (a row made before
        they existed, or just now by `source_add`); False, nothing changed, if it has a secret."""

    @abstractmethod
    def source_set_credentials(
        self,
        kind: str,
        name: str,
        *,
        first_hash: str | None = None,
        second_hash: str | None = None,
        api_key: str | None = None,
        jwt_key: str | None = None,
        jwt_secret: str | None = None,
        keep_old_until: float | None = None,
    ) -> bool:
        """Replace the given credentials (rotation); the others stay. With `keep_old_until` (epoch
        seconds) the replaced ones become the previous set, still accepted until then; without it
        they stop at once. Either way an earlier previous set is dropped. One statement."""

    @abstractmethod
    def source_states(self) -> dict[tuple[str, str], SourceState]: ...

    @abstractmethod
    def sources_version(self) -> float:
        """Changes whenever a source row is added or changed (activate, rotate)."""

    # -- schedules: cursors, slots, the scheduler lease -------------------------------------------------

    @abstractmethod
    def schedule_states(self) -> dict[str, ScheduleState]: ...

    @abstractmethod
    def schedule_state(self, name: str) -> ScheduleState | None: ...

    @abstractmethod
    def schedule_register(
        self, name: str, definition: str, *, cursor: str | None, cursor_ts: float | None, now: float
    ) -> bool:
        """Create the state of a schedule, or start it afresh when its definition changed; False
        if it was there with this definition already."""

    @abstractmethod
    def schedule_advance(self, name: str, cursor: str, cursor_ts: float, now: float) -> None:
        """Move the cursor (the last slot handled) forward; never back."""

    @abstractmethod
    def schedule_fired(self, name: str, slot: str, fired_at: str, signal_id: str) -> None: ...

    @abstractmethod
    def slot_claim(self, schedule: str, slot: str, signal_id: str, fired_at: str, now: float) -> bool:
        """Take one slot of a schedule; False if it was taken before (by anyone): fire nothing."""

    @abstractmethod
    def prune_slots(self, before: float) -> int: ...

    @abstractmethod
    def lease_holder(self) -> LeaseHolder | None:
        """Who holds the scheduler lease (for logs and dead-owner checks; decide with `lease_acquire`)."""

    @abstractmethod
    def lease_acquire(self, owner: str, ttl: float, now: float, *, take_from: str | None = None) -> bool:
        """Take or keep the scheduler lease: granted if free, expired, already `owner`'s, or held
        by `take_from` (a holder the caller knows is dead). One conditional write."""

    @abstractmethod
    def lease_renew(self, owner: str, ttl: float, now: float) -> None:
        """Raises `LeaseLost` if `owner` no longer holds the lease (the job rolls back)."""

    @abstractmethod
    def lease_release(self, owner: str) -> None: ...


class Storage(Protocol):
    """A data store with a group-committing writer.

    Inside trio: start `run_writer` in a nursery, then `await write(job)`. Outside trio (CLI,
    start-up) `write_sync(job)` runs one transaction directly. `read(job)` never writes.
    """

    commits: int
    jobs_committed: int
    max_batch: int  # 1 turns group commit off (benchmarks)
    on_commit: Callable[[float, int], None] | None  # (seconds, batch size) for metrics

    async def write(self, fn: Callable[[Tx], T]) -> T: ...

    async def append(self, signal: NewSignal) -> Appended:
        """`write(lambda tx: tx.append_signal(...))`, as a job the writer may merge with the
        appends queued next to it (`Tx.append_signals`)."""
        ...

    def read(self, fn: Callable[[Tx], T]) -> T: ...

    async def aread(self, fn: Callable[[Tx], T]) -> T:
        """`read` for trio code: inline on SQLite, a pooled worker thread on PostgreSQL (a round
        trip on the event loop would stall every connection of the process)."""
        ...

    async def listen_for_work(self, wake: Callable[[], None]) -> None:
        """Call `wake` whenever another process or node made work runnable (PostgreSQL: LISTEN;
        SQLite: returns at once, the doorbell does it). A hint only: claim loops still poll."""
        ...

    def write_sync(self, fn: Callable[[Tx], T]) -> T: ...

    async def run_writer(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None: ...

    def stop_writer(self) -> None: ...

    def close(self) -> None: ...
