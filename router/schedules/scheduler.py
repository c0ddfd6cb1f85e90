"""The `schedules` channel: clock ticks from `[schedules.NAME]` become journaled signals.

One trio task drives every schedule from a heap of next fire times (10,000 schedules cost one
sleeping task, not 10,000). Fire times come from APScheduler 3's triggers (`schedule_triggers`).

At most once per slot, across restarts, crashes and processes. A tick is ONE transaction that
  * checks this process still holds the scheduler lease,
  * claims the slot in `schedule_slots` (primary key: schedule + slot time),
  * appends the signal (dedup key `<name>@<slot in UTC ISO 8601>`),
  * moves the schedule's cursor (the last slot handled) past it.
Either all of it is on disk or none of it. Slots at or before the cursor are never fired again.

On start (or after any stall) the slots between the cursor and now are planned: those late by at
most `misfire_grace` (plus `jitter`) fire, once if `coalesce` (the latest), each otherwise;
older ones are skipped and logged. A schedule seen for the first time, or whose cron / every / at /
timezone changed, starts from that moment: nothing before it is back-filled (except an `at` slot,
which fires if it is within `misfire_grace`, as APScheduler does for a past run date).

Only one process drives schedules: the holder of the `schedule_lease` row (`[http] workers = N`
runs schedules in the main process only; the lease also covers two daemons pointed at one data dir,
and several nodes on one database later). A lease held by a dead process on this host is taken over
at once; otherwise it expires after `LEASE_TTL` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from heapq import heappop, heappush
from typing import Any

import structlog
import trio
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger

from config import Config, ScheduleConfig
from router import sources
from router.schedules.store import (
    SLOT_RETENTION,
    Fired,
    Firing,
    LeaseLost,
    State,
    acquire_lease,
    fire,
    make_owner,
    register,
)
from router.schedules.triggers import (
    after,
    build_trigger,
    definition,
    describe_spec,
    jitter_delay,
    local_iso,
    plan,
    slot_key,
    upcoming,
)
from router.storage import Storage, StorageUnavailable, Tx

__all__ = [
    "Fired",
    "Firing",
    "LeaseLost",
    "Scheduler",
    "State",
    "acquire_lease",
    "definition",
    "describe",
    "fire",
    "register",
]

log = structlog.get_logger("router.schedules")

LEASE_TTL = 15.0
POLL = 1.0  # config reloads and activate/deactivate reach the heap within this
STANDBY_POLL = 2.0
PRUNE_EVERY = 600.0


# -- the trio task ----------------------------------------------------------------------------------


@dataclass
class Entry:
    name: str
    model: ScheduleConfig
    trigger: BaseTrigger
    definition: str
    cursor: datetime | None
    next: datetime | None = None
    fire_at: float = 0.0
    gen: int = 0


@dataclass(order=True)
class _HeapItem:
    fire_at: float
    seq: int
    name: str = field(compare=False)
    gen: int = field(compare=False)


class Scheduler:
    """Runs as the daemon's `schedules` channel; reads schedules from `get_config()` on every wake,
    so a SIGHUP reload (or `router endpoints deactivate NAME`) applies within `POLL` seconds."""

    def __init__(
        self,
        storage: Storage,
        get_config: Callable[[], Config],
        poke: Callable[[], None] = lambda: None,
        *,
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
        lease_ttl: float = LEASE_TTL,
    ) -> None:
        self.storage = storage
        self.get_config = get_config
        self.poke = poke
        self.owner = owner or make_owner()
        self.clock = clock
        self.lease_ttl = lease_ttl
        self.entries: dict[str, Entry] = {}
        self._heap: list[_HeapItem] = []
        self._seq = 0
        self._gen = 0
        self._seen_cfg: Config | None = None
        self._seen_states = -1.0
        self._next_state_check = 0.0
        self._last_prune = 0.0
        self.fired = 0
        self.leader = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            while True:
                try:
                    leader = await self.storage.write(
                        lambda tx: acquire_lease(tx, self.owner, self.lease_ttl, self.clock())
                    )
                except StorageUnavailable as exc:
                    log.warning("scheduler lease failed", error=str(exc))
                    leader = False
                if leader:
                    self.leader = True
                    log.info("scheduler driving schedules", owner=self.owner)
                    try:
                        await self._drive()
                    except LeaseLost:
                        log.warning("scheduler lease lost; standing by", owner=self.owner)
                    finally:
                        self.leader = False
                        self.entries.clear()
                        self._heap.clear()
                        self._seen_cfg = None
                        self._next_state_check = 0.0
                await trio.sleep(STANDBY_POLL)
        finally:
            if self.leader:
                with trio.CancelScope(shield=True):
                    try:
                        await self.storage.write(lambda tx: tx.lease_release(self.owner))
                    except StorageUnavailable:
                        pass  # shutting down: a restart on this host takes over at once anyway

    # -- leader loop ------------------------------------------------------------------------------

    async def _drive(self) -> None:
        next_renew = self.clock() + self.lease_ttl / 3
        while True:
            await self._sync()
            now = self.clock()
            due: list[Entry] = []
            while self._heap and self._heap[0].fire_at <= now:
                item = heappop(self._heap)
                entry = self.entries.get(item.name)
                if entry is not None and entry.gen == item.gen:
                    due.append(entry)
            if due:
                await self._fire(due)
                next_renew = self.clock() + self.lease_ttl / 3  # a tick renews the lease
            elif now >= next_renew:
                await self.storage.write(lambda tx: tx.lease_renew(self.owner, self.lease_ttl, self.clock()))
                next_renew = self.clock() + self.lease_ttl / 3
            if now - self._last_prune > PRUNE_EVERY:
                await self._prune(now)
            now = self.clock()
            wake = min(next_renew, now + POLL)
            if self._heap:
                wake = min(wake, self._heap[0].fire_at)
            await trio.sleep(max(0.0, wake - now))

    async def _sync(self) -> None:
        """Bring the heap in line with the current config and activation states."""
        cfg = self.get_config()
        if cfg is self._seen_cfg and self.clock() < self._next_state_check:
            return  # activation states are looked at once per POLL, however many ticks there are
        self._next_state_check = self.clock() + POLL
        version = await self.storage.aread(lambda tx: tx.sources_version())
        if cfg is self._seen_cfg and version == self._seen_states:
            return
        states = await self.storage.aread(lambda tx: tx.source_states())
        wanted = {
            name: model
            for name, model in cfg.schedules.items()
            if sources.is_active(model, states.get(("schedules", name)))
        }
        for name in list(self.entries):
            if name not in wanted:
                del self.entries[name]  # its heap items go stale (generation check)
                log.info("schedule stopped", name=name)
        fresh: list[tuple[str, ScheduleConfig, BaseTrigger, str]] = []
        for name, model in wanted.items():
            entry = self.entries.get(name)
            if entry is not None and entry.model == model:
                continue
            if len(fresh) % 100 == 99:
                await trio.lowlevel.checkpoint()  # 10,000 new triggers: let the other channels run
            try:
                trigger = build_trigger(model)
            except Exception:  # one bad schedule must not stop the others
                log.exception("schedule cannot be built", name=name)
                continue
            fresh.append((name, model, trigger, definition(model)))
        if fresh:
            now = self.clock()
            items = [(name, defn, isinstance(trigger, DateTrigger)) for name, _, trigger, defn in fresh]
            db_states = await self.storage.write(lambda tx: register(tx, items, now))
            for i, (name, model, trigger, defn) in enumerate(fresh):
                if i % 100 == 99:
                    await trio.lowlevel.checkpoint()
                state = db_states[name]
                self._gen += 1
                entry = Entry(name, model, trigger, defn, state.cursor, gen=self._gen)
                self.entries[name] = entry
                self._schedule(entry, after(trigger, entry.cursor))
            log.info("schedules loaded", count=len(self.entries), changed=len(fresh))
        self._seen_cfg = cfg
        self._seen_states = version

    def _schedule(self, entry: Entry, slot: datetime | None) -> None:
        entry.next = slot
        if slot is None:
            return  # a one-off that has fired, or a trigger past its end
        entry.fire_at = slot.timestamp() + jitter_delay(entry.model.jitter)
        self._seq += 1
        heappush(self._heap, _HeapItem(entry.fire_at, self._seq, entry.name, entry.gen))

    async def _fire(self, due: list[Entry]) -> None:
        now = self.clock()
        now_dt = datetime.fromtimestamp(now, UTC)
        firings: list[Firing] = []
        plans = []
        for entry in due:
            m = entry.model
            p = plan(
                entry.trigger, entry.cursor, now_dt, grace=m.misfire_grace + m.jitter, coalesce=m.coalesce
            )
            plans.append(p)
            if p.missed:
                log.warning(
                    "schedule missed ticks (skipped)",
                    name=entry.name,
                    missed=f"{p.missed}+" if p.missed_more else p.missed,
                    first=local_iso(p.first_missed, m.timezone) if p.first_missed else "-",
                    last=local_iso(p.last_missed, m.timezone) if p.last_missed else "-",
                    misfire_grace_s=m.misfire_grace,
                )
            if p.coalesced:
                log.info("schedule coalesced ticks", name=entry.name, count=p.coalesced + 1)
            if p.fire or p.cursor != entry.cursor:
                firings.append(Firing(entry.name, entry.definition, m.timezone, p.fire, p.cursor))
        try:
            fired = (
                await self.storage.write(lambda tx: fire(tx, self.owner, firings, self.lease_ttl, now))
                if firings
                else []
            )
        except StorageUnavailable as exc:
            log.warning("schedule tick not journaled, retrying in 1s", error=str(exc))
            for entry in due:
                self._seq += 1
                entry.fire_at = now + 1.0
                heappush(self._heap, _HeapItem(entry.fire_at, self._seq, entry.name, entry.gen))
            return
        for entry, p in zip(due, plans, strict=True):
            entry.cursor = p.cursor
            self._schedule(entry, p.next)
        if fired:
            self.fired += len(fired)
            self.poke()
            for f in fired[:20]:
                log.debug("schedule fired", name=f.name, slot=slot_key(f.slot), signal_id=f.signal_id)

    async def _prune(self, now: float) -> None:
        self._last_prune = now
        grace = max((e.model.misfire_grace + e.model.jitter for e in self.entries.values()), default=0.0)
        keep = max(SLOT_RETENTION, 2 * grace)
        try:
            await self.storage.write(lambda tx: tx.prune_slots(now - keep))
        except StorageUnavailable as exc:
            log.warning("schedule slot pruning failed", error=str(exc))


# -- `router schedules` -------------------------------------------------------------------------------


def describe(cfg: Config, tx: Tx, now: float | None = None, count: int = 3) -> list[dict[str, Any]]:
    """Every schedule with its next `count` fire times (in its timezone) and its last tick."""
    now_dt = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    states = tx.source_states()
    db = tx.schedule_states()
    out: list[dict[str, Any]] = []
    for name, model in cfg.schedules.items():
        trigger = build_trigger(model)
        state = db.get(name)
        if state is not None and state.definition != definition(model):
            state = None  # changed since it last ran: it will start afresh
        cursor = state.cursor if state is not None else None
        active = sources.is_active(model, states.get(("schedules", name)))
        nexts = upcoming(trigger, cursor, now_dt, count) if active else []
        item: dict[str, Any] = {
            "name": name,
            "source": f"schedules.{name}",
            **describe_spec(model),
            "timezone": model.timezone,
            "active": active,
            "jitter": model.jitter,
            "misfire_grace": model.misfire_grace,
            "coalesce": model.coalesce,
            "next": [local_iso(s, model.timezone) for s in nexts],
            "last_slot": None,
            "last_fired_at": None,
            "last_signal_id": None,
        }
        if state is not None and state.last_slot:
            item["last_slot"] = local_iso(datetime.fromisoformat(state.last_slot), model.timezone)
            item["last_fired_at"] = state.last_fired_at
            item["last_signal_id"] = state.last_signal_id
        out.append(item)
    return out
