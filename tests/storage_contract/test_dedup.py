"""Idempotency keys: one signal per key, whoever races for it, until the key expires."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

from engine.entity import Entity
from router.storage import Storage
from tests.storage_contract import workers
from tests.storage_contract.conftest import Backend, run_processes

PROCESSES, THREADS, KEYS = 2, 4, 300


def test_a_key_raced_from_two_processes_journals_one_signal(
    backend: Backend, store: Storage, tmp_path: Path
) -> None:
    started = time.perf_counter()
    results = run_processes(
        workers.deduppers,
        [(backend.name, backend.where, f"p{p}", THREADS, KEYS) for p in range(PROCESSES)],
        tmp_path,
    )
    elapsed = time.perf_counter() - started
    by_key: dict[str, list[list[object]]] = defaultdict(list)
    for proc in results:
        for thread in proc:
            for key, outcome in thread.items():
                by_key[key].append(outcome)
    attempts = sum(len(v) for v in by_key.values())
    accepted = {key: [o for o in outcomes if not o[1]] for key, outcomes in by_key.items()}
    winners_per_key = {len(v) for v in accepted.values()}
    journaled = store.read(lambda tx: tx.list_signals(source="webhooks.race", limit=10 * KEYS))
    mismatched = sum(1 for key, outcomes in by_key.items() for o in outcomes if o[0] != accepted[key][0][2])
    print(
        f"\ncontract[{backend.name}] dedup race: {KEYS} keys x {PROCESSES} processes x {THREADS} threads = "
        f"{attempts} appends: accepted {sum(len(v) for v in accepted.values())}, duplicates "
        f"{attempts - sum(len(v) for v in accepted.values())}, journaled {len(journaled)}, "
        f"answers naming another id {mismatched}, {elapsed:.1f}s"
    )
    assert len(by_key) == KEYS and winners_per_key == {1}
    assert len(journaled) == KEYS and {s.dedup_key for s in journaled} == set(by_key)
    assert mismatched == 0  # every duplicate names the one signal that was journaled
    for s in journaled:
        assert s.ack is not None and s.ack["by"] == s.entity.data["by"]


def test_a_duplicate_returns_the_original_ack_and_an_expired_key_is_free(store: Storage) -> None:
    t0 = store.read(lambda tx: tx.now())
    first = store.write_sync(
        lambda tx: tx.append_signal(
            Entity("webhooks", "webhooks.x", {}), dedup_key="k1", dedup_window=60, ack={"status": 200}, now=t0
        )
    )
    again = store.write_sync(
        lambda tx: tx.append_signal(
            Entity("webhooks", "webhooks.x", {}), dedup_key="k1", dedup_window=60, now=t0 + 59
        )
    )
    assert again.duplicate and again.signal_id == first.signal_id and again.ack == {"status": 200}
    other = store.write_sync(
        lambda tx: tx.append_signal(Entity("webhooks", "webhooks.y", {}), dedup_key="k1", now=t0)
    )
    assert not other.duplicate  # keys are per source
    later = store.write_sync(
        lambda tx: tx.append_signal(
            Entity("webhooks", "webhooks.x", {}), dedup_key="k1", dedup_window=60, now=t0 + 61
        )
    )
    assert not later.duplicate and later.signal_id != first.signal_id
    again2 = store.write_sync(
        lambda tx: tx.append_signal(Entity("webhooks", "webhooks.x", {}), dedup_key="k1", now=t0 + 62)
    )
    assert again2.duplicate and again2.signal_id == later.signal_id
    assert store.write_sync(lambda tx: tx.prune_dedup(now=t0 + 10**6)) == 2
