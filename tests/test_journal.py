"""The journal and its storage seam, against a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from engine.entity import Entity
from router.dispatch.journal import Journal
from router.storage import Storage, Tx, open_storage


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    return open_storage(tmp_path / "router.db")


async def test_group_commit_batches_concurrent_appends(storage: Storage) -> None:
    jr = Journal(storage)
    before_jobs, before_commits = storage.jobs_committed, storage.commits
    async with trio.open_nursery() as nursery:
        await nursery.start(storage.run_writer)
        ids: list[str] = []

        async def one(i: int) -> None:
            ids.append((await jr.append(Entity("webhooks", "webhooks.x", {"i": i}))).signal_id)

        async with trio.open_nursery() as clients:
            for i in range(200):
                clients.start_soon(one, i)
        storage.stop_writer()
    assert len(set(ids)) == 200
    assert storage.jobs_committed - before_jobs == 200
    assert storage.commits - before_commits < 200  # appends that arrived together shared transactions
    assert storage.read(lambda tx: tx.counts()) == {"pending": 200}


async def test_failing_job_does_not_undo_its_batch_neighbours(storage: Storage) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(storage.run_writer)

        def bad(tx: Tx) -> None:
            tx.record_create("note", {"key": "a"})
            raise ValueError("boom")

        results: dict[str, object] = {}

        async def run(name: str, fn) -> None:  # type: ignore[no-untyped-def]
            try:
                results[name] = await storage.write(fn)
            except ValueError as exc:
                results[name] = exc

        async with trio.open_nursery() as clients:
            clients.start_soon(run, "bad", bad)
            clients.start_soon(run, "good", lambda tx: tx.record_create("note", {"key": "b"})["key"])
        storage.stop_writer()
    assert isinstance(results["bad"], ValueError)
    assert results["good"] == "b"
    keys = storage.read(lambda tx: [r["key"] for r in tx.record_find("note")])
    assert keys == ["b"]


def test_dedup_within_window_returns_original(storage: Storage) -> None:
    first = storage.write_sync(
        lambda tx: tx.append_signal(Entity("webhooks", "webhooks.x", {}), dedup_key="k1", ack={"status": 200})
    )
    again = storage.write_sync(
        lambda tx: tx.append_signal(Entity("webhooks", "webhooks.x", {}), dedup_key="k1")
    )
    assert again.duplicate and again.signal_id == first.signal_id and again.ack == {"status": 200}
    other_source = storage.write_sync(
        lambda tx: tx.append_signal(Entity("webhooks", "webhooks.y", {}), dedup_key="k1")
    )
    assert not other_source.duplicate
    # After the window the key is free again.
    later = storage.write_sync(
        lambda tx: tx.append_signal(
            Entity("webhooks", "webhooks.x", {}), dedup_key="k1", dedup_window=1, now=1e12
        )
    )
    assert not later.duplicate


def test_claims_lease_and_reclaim(storage: Storage) -> None:
    for i in range(3):
        storage.write_sync(lambda tx, i=i: tx.append_signal(Entity("e", "endpoints.a", {"i": i})))
    got = storage.write_sync(lambda tx: tx.claim("A", 2, lease=10, now=1000))
    assert len(got) == 2
    rest = storage.write_sync(lambda tx: tx.claim("B", 10, lease=10, now=1001))
    assert len(rest) == 1  # the first two are leased to A
    # A dies; once its leases expire B takes them over.
    retaken = storage.write_sync(lambda tx: tx.claim("B", 10, lease=10, now=1011))
    assert {s.id for s in retaken} == {s.id for s in got}
    # A's late completion is refused: it no longer owns the claim.
    assert not storage.write_sync(lambda tx: tx.settle(got[0].claim, status="done"))
    mine = next(s for s in retaken if s.id == got[0].id)
    assert mine.epoch == got[0].epoch + 1
    assert storage.write_sync(lambda tx: tx.settle(mine.claim, status="done"))
