"""Each schedule slot journals one signal, whichever scheduler fires it, across lease handovers."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

from router.schedules.store import register
from router.storage import Storage
from tests.storage_contract import workers
from tests.storage_contract.conftest import Backend, run_processes

SLOTS = 300
TTL = 0.3


def test_two_schedulers_through_lease_handovers_fire_each_slot_once(
    backend: Backend, store: Storage, tmp_path: Path
) -> None:
    start = workers.SCHEDULE_BASE - timedelta(seconds=1)
    store.write_sync(lambda tx: register(tx, [("tick", workers.DEFINITION, False)], start.timestamp()))
    started = time.perf_counter()
    results = run_processes(
        workers.scheduler,
        [(backend.name, backend.where, owner, SLOTS, TTL, stall) for owner, stall in (("A", 7), ("B", 11))],
        tmp_path,
    )
    elapsed = time.perf_counter() - started
    signals = store.read(lambda tx: tx.list_signals(source="schedules.tick", limit=10 * SLOTS))
    per_slot = Counter(s.entity.data["__schedule"]["scheduled_for"] for s in signals)
    fired_by = {r["owner"]: len(r["fired"]) for r in results}
    lost = sum(r["lease_lost"] for r in results)
    print(
        f"\ncontract[{backend.name}] schedule handover: {SLOTS} slots, fired by {fired_by}, "
        f"refused ticks after a lost lease {lost}, signals {len(signals)}, slots fired twice "
        f"{sum(1 for n in per_slot.values() if n > 1)}, {elapsed:.1f}s"
    )
    assert len(signals) == SLOTS and set(per_slot.values()) == {1}
    assert sorted(sid for r in results for sid in r["fired"]) == sorted(s.id for s in signals)
    assert all(n > 0 for n in fired_by.values()), "the lease really changed hands"
    assert lost > 0, "a stalled leader's tick was refused at least once"
    state = store.read(lambda tx: tx.schedule_state("tick"))
    assert state is not None and state.cursor == workers.SCHEDULE_BASE + timedelta(seconds=SLOTS - 1)


def test_a_slot_is_claimed_once_and_the_cursor_never_goes_back(store: Storage) -> None:
    store.write_sync(lambda tx: tx.schedule_register("s", "d1", cursor="c0", cursor_ts=100.0, now=100.0))
    assert not store.write_sync(
        lambda tx: tx.schedule_register("s", "d1", cursor="c9", cursor_ts=900.0, now=900.0)
    )
    assert store.write_sync(lambda tx: tx.slot_claim("s", "slot-1", "sig-1", "f", 101.0))
    assert not store.write_sync(lambda tx: tx.slot_claim("s", "slot-1", "sig-2", "f", 101.5))
    store.write_sync(lambda tx: tx.schedule_advance("s", "c2", 200.0, 201.0))
    store.write_sync(lambda tx: tx.schedule_advance("s", "c1", 150.0, 202.0))
    state = store.read(lambda tx: tx.schedule_state("s"))
    assert state is not None and state.cursor_ts == 200.0
    # A changed definition starts afresh.
    assert store.write_sync(
        lambda tx: tx.schedule_register("s", "d2", cursor="cx", cursor_ts=300.0, now=300.0)
    )
    assert store.read(lambda tx: tx.schedule_states())["s"].cursor_ts == 300.0
    assert store.write_sync(lambda tx: tx.prune_slots(102.0)) == 1


def test_the_scheduler_lease_is_exclusive_until_it_expires(store: Storage) -> None:
    assert store.write_sync(lambda tx: tx.lease_acquire("A", 10, 1000.0))
    assert not store.write_sync(lambda tx: tx.lease_acquire("B", 10, 1005.0))
    assert store.write_sync(lambda tx: tx.lease_acquire("A", 10, 1005.0))  # the holder keeps it
    assert store.write_sync(lambda tx: tx.lease_acquire("B", 10, 1005.0, take_from="A"))  # A known dead
    holder = store.read(lambda tx: tx.lease_holder())
    assert holder is not None and holder.owner == "B"
    assert store.write_sync(lambda tx: tx.lease_acquire("A", 10, 1016.0))  # expired
