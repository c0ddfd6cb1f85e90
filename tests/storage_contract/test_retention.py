"""Retention forgets settled signals (with their runs and effects) and never pending or running ones."""

from __future__ import annotations

from ulid import ULID

from engine.entity import Entity
from router.storage import Storage
from router.storage.rows import Run


def old(n: int, at: float) -> Entity:
    return Entity("webhooks", "webhooks.old", {"n": n}, id=str(ULID.from_timestamp(at + n / 1000)))


def test_prune_keeps_pending_and_running(store: Storage) -> None:
    t0 = store.read(lambda tx: tx.now())
    long_ago = t0 - 90 * 86400
    entities = [old(n, long_ago) for n in range(6)]
    store.write_sync(lambda tx: [tx.append_signal(e) for e in entities])
    done, failed, retrying, running, pending, replayed = entities
    claims = {s.id: s for s in store.write_sync(lambda tx: tx.claim("A", 10, lease=600))}

    def settle(e: Entity, **kw: object) -> None:
        store.write_sync(
            lambda tx: (
                tx.record_run(e.id, Run("wf", 1, "x", "t", 1.0, None, [])),
                tx.effect_remember((e.id, "wf", "step"), None),
                tx.settle(claims[e.id].claim, **kw),
            )
        )  # type: ignore[arg-type]

    settle(done, status="done")
    settle(failed, status="failed", error="boom")
    settle(retrying, status="pending", retry_in=60)
    settle(replayed, status="done")
    assert store.write_sync(lambda tx: tx.requeue(replayed.id))
    store.write_sync(lambda tx: tx.release("A"))
    store.write_sync(lambda tx: tx.claim("B", 1, lease=600))  # one of the released ones runs again
    store.write_sync(lambda tx: tx.effect_remember((running.id, "wf", "step"), None))
    cutoff = str(ULID.from_timestamp(t0 - 30 * 86400))[:10]
    assert store.write_sync(lambda tx: tx.prune_settled(cutoff, 1)) == 1  # in batches
    assert store.write_sync(lambda tx: tx.prune_settled(cutoff, 100)) == 1
    assert store.write_sync(lambda tx: tx.prune_settled(cutoff, 100)) == 0
    left = {s.id: s.status for s in store.read(lambda tx: tx.list_signals(limit=100))}
    assert set(left) == {retrying.id, running.id, pending.id, replayed.id}
    assert sorted(left.values()) == ["pending", "pending", "pending", "running"]
    assert (
        store.read(lambda tx: tx.runs_for(done.id)) == []
        and store.read(lambda tx: tx.runs_for(failed.id)) == []
    )
    assert store.read(lambda tx: tx.effect_recall((done.id, "wf", "step"))) is None
    assert len(store.read(lambda tx: tx.runs_for(retrying.id))) == 1
    assert store.read(lambda tx: tx.effect_recall((retrying.id, "wf", "step"))) is not None
    # Young settled signals stay too.
    young = Entity("webhooks", "webhooks.new", {})
    store.write_sync(lambda tx: tx.append_signal(young, settled=True))
    assert store.write_sync(lambda tx: tx.prune_settled(cutoff, 100)) == 0
