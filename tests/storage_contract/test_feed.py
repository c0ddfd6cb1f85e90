"""The dashboard's live feed: a reader following it while others commit sees every row, once."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

from router.storage import Storage
from tests.storage_contract import workers
from tests.storage_contract.conftest import Backend, run_processes

PROCESSES, THREADS, BATCHES, PER_BATCH = 2, 2, 150, 3


def test_the_live_feed_never_skips_a_row(backend: Backend, store: Storage, tmp_path: Path) -> None:
    reader = backend.open()
    cursor = reader.read(lambda tx: tx.feed_start())
    seen: list[str] = []
    polls = 0
    stop = threading.Event()

    def follow() -> None:
        nonlocal cursor, polls
        while True:
            finished = stop.is_set()  # read before the poll: a last poll after the writers are done
            rows, cursor = reader.read(lambda tx, c=cursor: tx.feed_after(c, limit=50))
            seen.extend(r["id"] for r in rows)
            polls += 1
            if finished and not rows:
                return
            if not rows:
                time.sleep(0.001)

    follower = threading.Thread(target=follow)
    follower.start()
    started = time.perf_counter()
    try:
        results = run_processes(
            workers.appenders,
            [(backend.name, backend.where, f"p{p}", THREADS, BATCHES, PER_BATCH) for p in range(PROCESSES)],
            tmp_path,
        )
    finally:
        stop.set()
        follower.join(60)
    reader.close()
    written = [sid for proc in results for t in proc for sid in t["ids"]]
    missed = set(written) - set(seen)
    print(
        f"\ncontract[{backend.name}] live feed: {len(written)} signals from {PROCESSES} processes x {THREADS} "
        f"threads, {PER_BATCH} per transaction; the follower polled {polls} times, saw {len(seen)}, missed "
        f"{len(missed)}, twice {len(seen) - len(set(seen))}, {time.perf_counter() - started:.1f}s"
    )
    assert not missed and len(seen) == len(set(seen)) == len(written)
    assert polls > 10, "the follower read while the writers committed"
    assert multiprocessing.active_children() == []


def test_signals_now_follows_status_changes(store: Storage) -> None:
    from engine.entity import Entity

    e = Entity("webhooks", "webhooks.x", {})
    store.write_sync(lambda tx: tx.append_signal(e))
    assert [r["status"] for r in store.read(lambda tx: tx.signals_now([e.id]))] == ["pending"]
    [s] = store.write_sync(lambda tx: tx.claim("A", 1))
    store.write_sync(lambda tx: tx.settle(s.claim, status="failed", error="no"))
    [row] = store.read(lambda tx: tx.signals_now([e.id, "nope"]))
    assert (row["status"], row["attempts"], row["last_error"]) == ("failed", 1, "no")
