"""Schedule bookkeeping over the storage interface: slot claims, cursors and the scheduler lease.

Plain functions of a `Tx`, each run inside one `Storage` transaction. The guard that a slot fires
once is the slot claim (`Tx.slot_claim`, a primary key), taken in the same transaction as the
signal's append and the cursor's move; the lease only saves work (one process plans ticks).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from engine.entity import Entity
from router.schedules.triggers import local_iso, slot_key
from router.storage.base import LeaseLost, Tx
from router.storage.rows import ScheduleState

log = structlog.get_logger("router.schedules")

SLOT_RETENTION = 3600.0  # claimed slots are kept at least this long (and 2 x the largest grace)
State = ScheduleState

__all__ = [
    "SLOT_RETENTION",
    "Fired",
    "Firing",
    "LeaseLost",
    "State",
    "acquire_lease",
    "fire",
    "make_owner",
    "register",
]


def make_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{int(time.time() * 1000) % 10**8}"


def _owner_is_dead(owner: str) -> bool:
    """True when `owner` is a process of this host that no longer exists."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # ourselves, or an earlier Scheduler in this process: not dead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


# -- functions over a transaction ------------------------------------------------------------------


def register(tx: Tx, items: Iterable[tuple[str, str, bool]], now: float) -> dict[str, State]:
    """Ensure a state row per `(name, definition, one_off)`; a new or changed definition starts
    afresh from `now` (one-off `at` schedules from the beginning, so a recent run date fires)."""
    known = tx.schedule_states()
    for name, defn, one_off in items:
        cursor_ts = None if one_off else now
        cursor = None if one_off else slot_key(datetime.fromtimestamp(now, UTC))
        if tx.schedule_register(name, defn, cursor=cursor, cursor_ts=cursor_ts, now=now) and name in known:
            log.info("schedule changed, starting afresh", name=name)
    return tx.schedule_states()


def acquire_lease(tx: Tx, owner: str, ttl: float, now: float) -> bool:
    """Take or keep the scheduler lease; a holder that is a dead process of this host loses it at once."""
    holder = tx.lease_holder()
    dead = (
        holder.owner
        if holder is not None and holder.owner != owner and _owner_is_dead(holder.owner)
        else None
    )
    if not tx.lease_acquire(owner, ttl, now, take_from=dead):
        return False
    if holder is not None and holder.owner != owner:
        log.info("scheduler lease taken over", previous_owner=holder.owner)
    return True


@dataclass
class Firing:
    """What one schedule does in a tick: fire `slots` and move its cursor to `cursor`."""

    name: str
    definition: str
    timezone: str
    slots: list[datetime]
    cursor: datetime | None


@dataclass
class Fired:
    name: str
    slot: datetime
    signal_id: str


def fire(tx: Tx, owner: str, firings: list[Firing], ttl: float, now: float) -> list[Fired]:
    """Claim, journal and record the slots of one tick (one transaction; see module docstring)."""
    tx.lease_renew(owner, ttl, now)  # raises LeaseLost: the whole tick is rolled back
    fired: list[Fired] = []
    for f in firings:
        state = tx.schedule_state(f.name)
        if state is None or state.definition != f.definition:
            continue  # the schedule changed under us; its new entry plans afresh
        cursor_ts = state.cursor_ts
        last: tuple[str, str, str] | None = None
        for slot in f.slots:
            slot_ts = slot.timestamp()
            if cursor_ts is not None and slot_ts <= cursor_ts:
                continue  # handled already (by us before a crash, or by another process)
            key = slot_key(slot)
            fired_at = local_iso(datetime.fromtimestamp(now, UTC), f.timezone)
            entity = Entity(
                "schedules",
                f"schedules.{f.name}",
                {
                    "__schedule": {
                        "name": f.name,
                        "scheduled_for": local_iso(slot, f.timezone),
                        "fired_at": fired_at,
                        "timezone": f.timezone,
                    }
                },
            )
            if not tx.slot_claim(f.name, key, entity.id, fired_at, now):
                continue
            # The slot row is the lasting guard; the dedup entry names the tick in the journal.
            appended = tx.append_signal(
                entity, dedup_key=f"{f.name}@{key}", dedup_window=SLOT_RETENTION, now=now
            )
            if appended.duplicate:
                continue
            fired.append(Fired(f.name, slot, entity.id))
            last = (key, fired_at, entity.id)
        new_ts = f.cursor.timestamp() if f.cursor is not None else None
        if new_ts is not None and (cursor_ts is None or new_ts > cursor_ts):
            assert f.cursor is not None
            tx.schedule_advance(f.name, slot_key(f.cursor), new_ts, now)
        if last is not None:
            tx.schedule_fired(f.name, *last)
    return fired
