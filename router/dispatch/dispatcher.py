"""Dispatch: from the journal to the engine.

`Dispatcher` implements the channels' `Intake`. A submitted signal is appended and, when a run
slot is free, claimed by this process in the same transaction and processed at once; otherwise
it stays pending and the claim loop (which also sees other processes' work, retries and expired
leases) picks it up. Every task lives in the dispatcher's nursery: a caller that goes away does
not cancel the run it started.

With runner processes (`[router] runners`), a listening process is given `hand_off`: it claims only
the signals whose caller waits for an answer (sync runs, `continue`, SSE, TwiML) and leaves the
rest pending for the runners, whose claim loops it wakes through `hand_off` (the doorbell).
When the runners lag anyway (the listeners hold every core: more than `HELP_BACKLOG` signals
pending), a listening process claims pending work too and runs it itself. That takes CPU from
accepting, so the daemon accepts about as fast as it processes, and what it acknowledged is
done within about a second rather than falling minutes behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

import structlog
import trio

from channels.intake import CallerResponder, JournalUnavailable, Overloaded, Submission
from config import RouterSettings
from engine.entity import Entity, utcnow_iso
from engine.ports import Reply
from engine.runner import Engine, RunResult
from engine.templates import TemplateEngine
from engine.workflow import Workflow
from router.dispatch.journal import Journal
from router.storage import Storage, StorageUnavailable, Tx
from router.storage.rows import RUNNING, ClaimRef, Run, Signal

log = structlog.get_logger("router.dispatch")


POLL_INTERVAL = 0.25  # the claim loop looks this often even if nothing woke it (other processes' work)
HELP_BACKLOG = 256  # with runner processes: a listening process helps run pending work above this backlog


class DispatchObserver(Protocol):
    """Metrics (router/ops/metrics.py `Metrics`)."""

    def on_submit(self, channel: str, source: str, outcome: str, seconds: float) -> None:
        """One submission: accepted, duplicate, overloaded or journal_unavailable."""
        ...

    def on_run(self, workflow: str, status: str, seconds: float) -> None: ...

    def on_retry(self, kind: str) -> None:
        """A failed signal scheduled for another attempt (`kind` "signal")."""
        ...


class _Unobserved:
    def on_submit(self, channel: str, source: str, outcome: str, seconds: float) -> None:
        return None

    def on_run(self, workflow: str, status: str, seconds: float) -> None:
        return None

    def on_retry(self, kind: str) -> None:
        return None


class NullResponder:
    """Stands in for a caller that is gone (recovery, retries, replay)."""

    def respond(self, reply: Reply) -> bool:
        return False

    async def emit(self, event: str, data: str) -> None:
        return None

    def twiml_reply(self, message: str) -> None:
        return None

    def finish(self) -> None:
        return None


class Dispatcher:
    def __init__(
        self,
        storage: Storage,
        engine: Engine,
        templates: TemplateEngine,
        workflows: list[Workflow],
        settings: RouterSettings,
        *,
        dedup_window: float,
        observer: DispatchObserver | None = None,
        hand_off: Callable[[], None] | None = None,
    ) -> None:
        self.storage = storage
        self.journal = Journal(storage)
        self.engine = engine
        self.templates = templates
        self.workflows = workflows
        self.settings = settings  # `[router]`: concurrency, lease, max_pending, retries, run_timeout
        self.dedup_window = dedup_window  # `[http] idempotency_window`
        self.owner = f"{os.uname().nodename}:{os.getpid()}:{int(time.time() * 1000) % 10**8}"
        self._nursery: trio.Nursery | None = None
        self._active: dict[str, trio.CancelScope] = {}
        self._claims: dict[str, ClaimRef] = {}  # the claim each active run settles with (its fencing token)
        self._waiting: dict[str, CallerResponder] = {}  # callers waiting for a signal not yet claimed
        self._wake = trio.Event()
        self._idle = trio.Event()
        self._accepting = True
        self.pending_estimate = 0
        self._helping = False  # a listening process running pending work because the runners lag
        self.observer: DispatchObserver = observer or _Unobserved()
        # Given to listening processes when runner processes exist: wakes them (see module doc).
        self.hand_off = hand_off

    @property
    def active_runs(self) -> int:
        """Signals this process is running now."""
        return len(self._active)

    # -- Intake -------------------------------------------------------------------------------

    @property
    def workflows(self) -> list[Workflow]:
        return self._workflows

    @workflows.setter
    def workflows(self, workflows: list[Workflow]) -> None:
        """Replaced as a whole (start, reload): which workflows listen to a source is looked up
        once per source and table."""
        self._workflows = workflows
        self._listening: dict[str, tuple[Workflow, ...]] = {}

    def listeners(self, source: str) -> tuple[Workflow, ...]:
        found = self._listening.get(source)
        if found is None:
            if len(self._listening) > 10_000:  # sources named by callers (schedules, replays) come and go
                self._listening.clear()
            found = self._listening[source] = tuple(w for w in self._workflows if w.matches(source))
        return found

    def render(self, template: str, data: dict[str, Any], *, html: bool = False) -> str:
        return self.templates.render(template, data, html=html)

    def has_sync_listener(self, source: str) -> bool:
        return any(w.run_mode == "sync" for w in self.listeners(source))

    async def submit(
        self,
        entity: Entity,
        *,
        dedup_key: str | None = None,
        responder: CallerResponder | None = None,
        ack: dict[str, Any] | None = None,
    ) -> Submission:
        started = time.perf_counter()
        try:
            sub = await self._submit(entity, dedup_key=dedup_key, responder=responder, ack=ack)
        except Overloaded:
            self._observe(entity, "overloaded", started)
            raise
        except JournalUnavailable:
            self._observe(entity, "journal_unavailable", started)
            raise
        self._observe(entity, "duplicate" if sub.duplicate else "accepted", started)
        return sub

    def _observe(self, entity: Entity, outcome: str, started: float) -> None:
        self.observer.on_submit(entity.channel, entity.source, outcome, time.perf_counter() - started)

    async def _submit(
        self,
        entity: Entity,
        *,
        dedup_key: str | None,
        responder: CallerResponder | None,
        ack: dict[str, Any] | None,
    ) -> Submission:
        if not self._accepting:
            raise Overloaded(retry_after=5)
        if self.pending_estimate >= self.settings.max_pending:
            # The estimate only grows between claim-loop (or backlog) reads: look before refusing.
            try:
                self.pending_estimate = await self.storage.aread(_count_pending)
            except StorageUnavailable as exc:
                raise JournalUnavailable(str(exc)) from exc
            if self.pending_estimate >= self.settings.max_pending:
                raise Overloaded(retry_after=2)
        listening = self.listeners(entity.source)
        workflows = len(listening)
        sync = any(w.run_mode == "sync" for w in listening)
        if not listening:
            claim = False  # nobody listens: the signal is journaled as done, nothing to claim or run
        elif self.hand_off is not None:
            # The runners take unattended work; a waiting caller is served here (bounded by the
            # channel's own in-flight limit, not by `concurrency`: a runner could not answer it).
            claim = responder is not None
        else:
            claim = len(self._active) < self.settings.concurrency
        try:
            appended = await self.journal.append(
                entity,
                dedup_key=dedup_key,
                dedup_window=self.dedup_window,
                owner=self.owner if claim else None,
                lease=self.settings.lease,
                ack=ack,
                settled=not listening,
            )
        except StorageUnavailable as exc:
            raise JournalUnavailable(str(exc)) from exc
        if appended.duplicate:
            return Submission(appended.signal_id, duplicate=True, ack=appended.ack, workflows=workflows)
        if not listening:
            if responder is not None:
                responder.finish()
        elif claim and self._nursery is not None and self._accepting:
            signal = Signal(
                entity.id,
                entity.channel,
                entity.source,
                entity.received_at,
                entity,
                RUNNING,
                0,
                None,
                dedup_key,
                self.owner,
                epoch=1,
            )
            self._start(signal, responder)
        elif self.hand_off is not None:
            self.pending_estimate += 1
            self.hand_off()
        else:
            if responder is not None:
                self._waiting[entity.id] = responder
            self.pending_estimate += 1
            self._wake.set()
        return Submission(appended.signal_id, workflows=workflows, sync=sync)

    def poke(self) -> None:
        """Something new may be claimable (a deletion signal, a replay): look now."""
        if self.hand_off is not None:
            self.hand_off()
        self._wake.set()

    # -- running ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._claim_loop)
            nursery.start_soon(self._lease_loop)
            task_status.started()

    async def drain(self) -> None:
        """Take no more signals; return once the runs in flight finished (the caller's cancel
        scope bounds the wait: what is left stays in the journal)."""
        self._accepting = False
        while self._active:
            self._idle = trio.Event()
            await self._idle.wait()

    def _start(self, signal: Signal, responder: CallerResponder | None) -> None:
        assert self._nursery is not None
        scope = trio.CancelScope()
        self._active[signal.id] = scope
        self._claims[signal.id] = signal.claim
        self._nursery.start_soon(self._process, signal, responder, scope)

    async def _claim_loop(self) -> None:
        """Claims pending work (this process's, others', retries, lapsed leases) as run slots
        free up. In a listening process with runners: only while they lag (see module doc), and
        otherwise keeps `pending_estimate` (the `max_pending` bound) honest."""
        helper = self.hand_off is not None
        while True:
            with trio.move_on_after(POLL_INTERVAL):
                await self._wake.wait()
            self._wake = trio.Event()
            if helper:
                try:
                    self.pending_estimate = await self.storage.aread(_count_pending)
                except StorageUnavailable:
                    continue  # the database is away; the next poll looks again
                self._helping = self.pending_estimate > HELP_BACKLOG
                if not self._helping:
                    continue
            if not self._accepting:
                continue
            free = self.settings.concurrency - len(self._active)
            if free <= 0:
                continue
            try:
                if not helper and not await self.storage.aread(_has_claimable):
                    self.pending_estimate = 0
                    continue  # nothing to claim: no write transaction (and no fsync) for nothing
                claimed = await self.journal.claim(self.owner, free, self.settings.lease)
            except StorageUnavailable as exc:
                log.warning("claim failed", error=str(exc))
                await trio.sleep(POLL_INTERVAL)  # the database is away: no hot loop
                continue
            for signal in claimed:
                self.pending_estimate = max(0, self.pending_estimate - 1)
                if signal.id in self._active:
                    # Still running here: its lease lapsed while the journal could not be written
                    # (renewals failed) and this claim just took it back. A second run is a double;
                    # the run under way settles with the new claim instead.
                    self._claims[signal.id] = signal.claim
                    continue
                self._start(signal, self._waiting.pop(signal.id, None))
            if len(claimed) == free:
                self._wake.set()  # there may be more
            elif not helper:
                with contextlib.suppress(StorageUnavailable):
                    self.pending_estimate = await self.storage.aread(_count_pending)

    async def _lease_loop(self) -> None:
        while True:
            await trio.sleep(self.settings.lease / 3)
            if self._active:
                try:
                    await self.journal.renew(self.owner, list(self._active), self.settings.lease)
                except StorageUnavailable as exc:
                    log.warning("lease renewal failed", error=str(exc))

    async def _process(
        self, signal: Signal, responder: CallerResponder | None, scope: trio.CancelScope
    ) -> None:
        caller: CallerResponder = responder or NullResponder()
        try:
            with scope:
                await self._run_workflows(signal, caller)
        except StorageUnavailable as exc:
            # The outcome could not be journaled (the daemon is stopping, the database is away):
            # the signal keeps its claim until it is released or the lease lapses, then runs again.
            log.warning("run not recorded; the signal runs again", signal_id=signal.id, error=str(exc))
        except Exception:  # a bug in one signal must not take the daemon down
            log.exception("signal processing crashed", signal_id=signal.id)
        finally:
            caller.finish()
            self._active.pop(signal.id, None)
            self._claims.pop(signal.id, None)
            if not self._active:
                self._idle.set()
            if self.pending_estimate > 0 and (self.hand_off is None or self._helping):
                # A slot came free and work is waiting. Otherwise the periodic poll is enough:
                # a claim query after every finished run would cost a transaction per signal.
                self._wake.set()

    async def _run_workflows(self, signal: Signal, caller: CallerResponder) -> None:
        attempt = signal.attempts + 1
        # A retry, or a run started over after a crash, skips the workflows this round already
        # did; a replay starts a new round (`replay_from` = its first attempt): all of them run.
        since = signal.replay_from
        done = (
            await self.storage.aread(lambda tx: tx.done_workflows(signal.id, since))
            if attempt > max(since, 1)
            else set()
        )
        todo = [w for w in self.listeners(signal.source) if w.name not in done]
        runs: list[tuple[Workflow, str, float, RunResult]] = []

        async def one(workflow: Workflow) -> None:
            started, t0 = utcnow_iso(), time.perf_counter()
            result = await self.engine.run(
                workflow,
                signal.entity,
                caller,
                timeout=workflow.timeout or self.settings.run_timeout,
                replay=signal.replays,
            )
            duration = (time.perf_counter() - t0) * 1000
            self.observer.on_run(workflow.name, result.status, duration / 1000)
            runs.append((workflow, started, duration, result))
            request_id = signal.entity.data.get("__request_id")
            # A line per run is the journal's job (`router signals`); at 1,000 runs/s logging them
            # cost a tenth of a runner's CPU. Done runs log at debug, the others at info.
            level = logging.DEBUG if result.status == "done" else logging.INFO
            if log.isEnabledFor(level):
                log.log(
                    level,
                    "run",
                    workflow=workflow.name,
                    signal_id=signal.id,
                    request_id=request_id,
                    status=result.status,
                    duration_ms=round(duration, 1),
                    error=result.error,
                )

        if len(todo) == 1:
            await one(todo[0])  # the common case: no nursery, no extra task
        else:
            async with trio.open_nursery() as nursery:
                for workflow in todo:
                    nursery.start_soon(one, workflow)
        caller.finish()
        await self._settle(signal, attempt, runs)

    async def _settle(
        self, signal: Signal, attempt: int, runs: list[tuple[Workflow, str, float, RunResult]]
    ) -> None:
        """Record every run and the signal's outcome in ONE transaction: a crash never leaves a
        run recorded as done on a signal that will be run again."""
        failures = [(w, r.error or "failed", r.retryable) for w, _, _, r in runs if r.status != "done"]
        status, error, retry_in = "done", None, None
        if failures:
            error = "; ".join(f"{w.name}: {msg}" for w, msg, _ in failures)
            retryable = [w for w, _, again in failures if again and w.run_mode == "async"]
            max_attempts = min((w.max_attempts or self.settings.max_attempts) for w, _, _ in failures)
            tries = attempt - max(signal.replay_from, 1) + 1  # a replay's round has attempts of its own
            if retryable and tries < max_attempts:
                delay = min(self.settings.retry_backoff * (2 ** (tries - 1)), 3600.0)
                status, retry_in = "pending", delay
                log.info("retry", signal_id=signal.id, attempt=attempt, delay_s=round(delay, 3))
                self.observer.on_retry("signal")
            else:
                status = "failed"
                log.warning("failed", signal_id=signal.id, attempts=attempt, error=error)

        claim = self._claims.get(signal.id, signal.claim)

        def write(tx: Tx) -> None:
            if not tx.settle(claim, status=status, error=error, retry_in=retry_in):
                # Fenced out: the lease lapsed and another process (or node) runs the signal now and
                # records its own runs; this attempt's are not recorded, so one attempt has one run.
                return
            for workflow, started, duration, result in runs:
                tx.record_run(
                    signal.id,
                    Run(workflow.name, attempt, result.status, started, duration, result.error, result.trace),
                )
            if status == "done":
                tx.effects_forget(signal.id)

        await self.storage.write(write)


def _count_pending(tx: Tx) -> int:
    return tx.count_pending()


def _has_claimable(tx: Tx) -> bool:
    return tx.has_claimable()


__all__ = ["DispatchObserver", "Dispatcher", "NullResponder"]
