"""Claims: exclusive across threads and processes; a lease taken over fences out the old owner."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from collections import Counter
from pathlib import Path

from engine.entity import Entity
from router.storage import Storage
from router.storage.rows import ClaimRef
from tests.storage_contract import workers
from tests.storage_contract.conftest import Backend, run_processes

SIGNALS = 20_000
PROCESSES, THREADS, BATCH = 2, 8, 25  # issue 13: 8 threads x 2 processes


def preload(store: Storage, n: int, source: str = "webhooks.load") -> list[str]:
    entities = [Entity("webhooks", source, {"n": i}) for i in range(n)]
    store.write_sync(lambda tx: [tx.append_signal(e) for e in entities])
    return [e.id for e in entities]


def test_claims_are_exclusive_across_threads_and_processes(
    backend: Backend, store: Storage, tmp_path: Path
) -> None:
    ids = preload(store, SIGNALS)
    started = time.perf_counter()
    results = run_processes(
        workers.claimers,
        [(backend.name, backend.where, f"p{p}", THREADS, BATCH) for p in range(PROCESSES)],
        tmp_path,
    )
    elapsed = time.perf_counter() - started
    threads = [t for proc in results for t in proc]
    claims = Counter(sid for t in threads for sid in t["claimed"])
    settled = Counter(sid for t in threads for sid in t["settled"])
    duplicates = sum(claims.values()) - len(claims)
    lost = len(set(ids) - set(settled))
    per_thread = sorted(len(t["claimed"]) for t in threads)
    print(
        f"\ncontract[{backend.name}] claim exclusivity: {SIGNALS} signals, {PROCESSES} processes x {THREADS} "
        f"threads, batch {BATCH}: claimed {sum(claims.values())}, duplicates {duplicates}, lost {lost}, "
        f"settled twice {sum(settled.values()) - len(settled)}, refused settles "
        f"{sum(t['refused'] for t in threads)}, per thread {per_thread[0]}..{per_thread[-1]}, {elapsed:.1f}s"
    )
    assert duplicates == 0 and lost == 0
    assert set(claims) == set(ids)
    assert all(n > 0 for n in per_thread), "every claimer got work: the claims really raced"
    assert store.read(lambda tx: tx.counts()) == {"done": SIGNALS}


def test_lease_takeover_after_a_kill_fences_out_the_old_owner(
    backend: Backend, store: Storage, tmp_path: Path
) -> None:
    ids = preload(store, 10)
    t0 = store.read(lambda tx: tx.now())
    out = tmp_path / "held.json"
    ctx = multiprocessing.get_context("spawn")
    holder = ctx.Process(
        target=workers.hold_claims, args=(backend.name, backend.where, "A", 10, t0, 5.0, str(out))
    )
    holder.start()
    try:
        deadline = time.monotonic() + 60
        while not out.exists() or not out.read_text():
            assert time.monotonic() < deadline and holder.is_alive(), "the holder never claimed"
            time.sleep(0.01)
    finally:
        assert holder.pid is not None
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(10)
    held = [ClaimRef(*c) for c in json.loads(out.read_text())]
    assert sorted(c.signal_id for c in held) == sorted(ids)
    # Within A's lease nobody else gets them; after it, B takes every one over, epoch + 1.
    assert store.write_sync(lambda tx: tx.claim("B", 10, lease=5, now=t0 + 4)) == []
    taken = store.write_sync(lambda tx: tx.claim("B", 10, lease=5, now=t0 + 6))
    assert {s.id: s.epoch for s in taken} == {c.signal_id: c.epoch + 1 for c in held}
    # A's late settle (a run that finished after all) is refused and changes nothing.
    assert store.write_sync(lambda tx: [tx.settle(c, status="done") for c in held]) == [False] * 10
    assert store.read(lambda tx: tx.counts()) == {"running": 10}
    # So is a stale claim of the same owner (its own lease lapsed and it re-claimed): only the
    # newest epoch settles.
    first = taken[0]
    again = store.write_sync(lambda tx: tx.claim("B", 1, lease=5, now=t0 + 12))
    assert [s.id for s in again] == [first.id] and again[0].epoch == first.epoch + 1
    assert not store.write_sync(lambda tx: tx.settle(first.claim, status="done"))
    assert store.write_sync(lambda tx: tx.settle(again[0].claim, status="failed", error="x"))
    assert store.write_sync(lambda tx: [tx.settle(s.claim, status="done") for s in taken[1:]]) == [True] * 9
    assert store.read(lambda tx: tx.counts()) == {"done": 9, "failed": 1}
    print(
        f"\ncontract[{backend.name}] takeover: 10 claims of a killed owner taken over, 10/10 late settles refused"
    )


def test_retry_waits_and_renewal_keeps_the_claim(store: Storage) -> None:
    [sid] = preload(store, 1)
    t0 = store.read(lambda tx: tx.now())
    [s] = store.write_sync(lambda tx: tx.claim("A", 5, lease=10, now=t0))
    assert store.write_sync(lambda tx: tx.renew("A", [sid], 10, now=t0 + 8)) == 1
    assert store.write_sync(lambda tx: tx.renew("B", [sid], 10, now=t0 + 8)) == 0
    assert store.write_sync(lambda tx: tx.claim("B", 5, lease=10, now=t0 + 12)) == []  # renewed to t0 + 18
    assert store.write_sync(
        lambda tx: tx.settle(s.claim, status="pending", error="later", retry_in=30, now=t0 + 13)
    )
    assert not store.read(lambda tx: tx.has_claimable(now=t0 + 40))
    assert store.read(lambda tx: tx.has_claimable(now=t0 + 44))
    [again] = store.write_sync(lambda tx: tx.claim("B", 5, lease=10, now=t0 + 44))
    assert (again.attempts, again.last_error, again.epoch) == (1, "later", 2)
    assert store.write_sync(lambda tx: tx.release("B")) == 1
    assert store.read(lambda tx: tx.counts()) == {"pending": 1}
