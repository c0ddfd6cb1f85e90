"""Appends in bulk: `Tx.append_signals` writes what `append_signal` writes, one by one, and the
group-commit writer merges neighbouring appends (`Storage.append`) without letting one bad
append fail the others."""

from __future__ import annotations

from dataclasses import replace

import pytest
import trio

from engine.entity import Entity
from engine.ports import StorageError
from router.storage import Storage, Tx
from router.storage.rows import Appended, NewSignal, Signal, SignalQuery
from tests.storage_contract.conftest import Backend


def _variants(source: str) -> list[NewSignal]:
    """One of each kind of new signal: pending, claimed, settled, with an ack, with and without a
    body (an empty one is no body), one with a dedup key."""

    def entity(n: int, raw: bytes | None) -> Entity:
        return Entity("endpoints", source, {"n": n, "word": f"zebra{n}", "__headers": {"x": "y"}}, raw=raw)

    return [
        NewSignal(entity(1, b'{"n": 1}')),
        NewSignal(entity(2, None), owner="A", lease=30),
        NewSignal(entity(3, b"\x00\xff raw bytes"), settled=True),
        NewSignal(entity(4, b""), ack={"status": 200, "body": "ok"}),
        NewSignal(entity(5, b"five"), dedup_key="key-5", ack={"status": 202}),
        NewSignal(entity(6, b"six"), dedup_key="key-5"),  # a repeat within the lot: a duplicate of 5
        NewSignal(entity(7, None), dedup_key="key\x00seven ключ"),  # keys may hold any character
    ]


def _seen(store: Storage, sid: str) -> tuple[object, ...]:
    def read(tx: Tx) -> tuple[object, ...]:
        s: Signal | None = tx.get_signal(sid)
        assert s is not None
        return (s.status, s.owner, s.epoch, s.ack, s.dedup_key, s.entity.data["n"], tx.signal_body(sid))

    return store.read(read)


@pytest.mark.parametrize("with_dedup", [False, True], ids=["plain", "with-dedup-key"])
def test_append_signals_writes_what_append_signal_writes(store: Storage, with_dedup: bool) -> None:
    one_by_one, together = _variants("endpoints.single"), _variants("endpoints.bulk")
    if not with_dedup:
        one_by_one, together = one_by_one[:4], together[:4]
    singles = [
        store.write_sync(
            lambda tx, s=s: tx.append_signal(
                s.entity, dedup_key=s.dedup_key, owner=s.owner, lease=s.lease, ack=s.ack, settled=s.settled
            )
        )
        for s in one_by_one
    ]
    bulk = store.write_sync(lambda tx: tx.append_signals(together))
    position = {s.entity.id: i for i, s in enumerate(one_by_one)} | {
        s.entity.id: i for i, s in enumerate(together)
    }
    # The same outcome for each: written, or a duplicate of the same position with the same ack.
    assert [(position[a.signal_id], a.duplicate, a.ack) for a in singles] == [
        (position[a.signal_id], a.duplicate, a.ack) for a in bulk
    ]
    assert [a.duplicate for a in bulk] == ([False] * 5 + [True, False] if with_dedup else [False] * 4)
    for single, merged in zip(singles, bulk, strict=True):
        assert _seen(store, single.signal_id) == _seen(store, merged.signal_id)
    # Search finds the bulk ones by their payload, like the single ones.
    for n in (1, 2, 3, 4, 5, 7) if with_dedup else (1, 2, 3, 4):
        found = store.read(lambda tx, n=n: tx.find_signals(SignalQuery(search=f"zebra{n}")))
        assert sorted(s.source for s in found) == ["endpoints.bulk", "endpoints.single"]
    if with_dedup:  # the keys were taken by the bulk call: a later repeat is a duplicate of it
        again = store.write_sync(
            lambda tx: tx.append_signals(
                [replace(together[i], entity=Entity("e", "endpoints.bulk")) for i in (4, 6)]
            )
        )
        assert [(a.duplicate, a.signal_id, a.ack) for a in again] == [
            (True, together[4].entity.id, {"status": 202}),
            (True, together[6].entity.id, None),
        ]


def test_merged_appends_commit_together_and_a_bad_one_fails_alone(store: Storage, backend: Backend) -> None:
    taken = Entity("endpoints", "endpoints.taken", {"n": -1})
    store.write_sync(lambda tx: tx.append_signal(taken))
    good = [NewSignal(Entity("endpoints", "endpoints.many", {"n": i}, raw=b"%d" % i)) for i in range(150)]
    bad = NewSignal(Entity("endpoints", "endpoints.many", {"n": 999}, id=taken.id))  # its id is taken
    jobs = good[:70] + [bad] + good[70:]
    results: dict[int, Appended | BaseException] = {}
    commits_before = store.commits

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run_writer)

            async def one(i: int, signal: NewSignal) -> None:
                try:
                    results[i] = await store.append(signal)
                except StorageError as exc:
                    results[i] = exc

            async with trio.open_nursery() as appenders:
                for i, signal in enumerate(jobs):
                    appenders.start_soon(one, i, signal)
            store.stop_writer()

    trio.run(main)
    assert isinstance(results[70], StorageError)
    ok = [results[i] for i in range(len(jobs)) if i != 70]
    assert all(isinstance(r, Appended) and not r.duplicate for r in ok)
    assert [r.signal_id for r in ok if isinstance(r, Appended)] == [s.entity.id for s in good]
    assert store.read(lambda tx: tx.count_signals(SignalQuery(source="endpoints.many"))) == 150
    assert store.read(lambda tx: tx.signal_body(good[149].entity.id)) == b"149"
    first = store.read(lambda tx: tx.get_signal(taken.id))
    assert first is not None and first.source == "endpoints.taken"
    commits = store.commits - commits_before
    assert commits <= 10, commits  # group commit: 151 appends queued at once share a few
    print(
        f"\ncontract[{backend.name}] merged appends: 150 committed in {commits} commits, the bad one failed alone"
    )
