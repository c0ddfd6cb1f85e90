"""The contract of issue 15's storage methods, for every backend: replay rounds (`requeue`,
`done_workflows`), raw bodies, `find_signals`/`count_signals` (filters, cursor, text search) and
the bounded refused-request ring."""

from __future__ import annotations

import time

from engine.entity import Entity, new_signal_id
from router.storage import Storage
from router.storage.rows import Refusal, Run, SignalQuery


def _append(store: Storage, source: str = "webhooks.a", *, raw: bytes | None = None, **data: object) -> str:
    entity = Entity(source.split(".")[0], source, dict(data), raw=raw)
    store.write_sync(lambda tx: tx.append_signal(entity, owner="me"))
    return entity.id


def _settle(store: Storage, sid: str, workflow: str, status: str, attempt: int) -> None:
    def job(tx):  # type: ignore[no-untyped-def]
        sig = tx.get_signal(sid)
        if sig.status != "running":
            sig = next(s for s in tx.claim("me", 10) if s.id == sid)
        tx.record_run(sid, Run(workflow, attempt, status, "2026-01-01T00:00:00.000Z", 1.0, None, []))
        tx.settle(sig.claim, status=status)

    store.write_sync(job)


def test_a_replay_is_a_new_round(store: Storage) -> None:
    sid = _append(store)
    _settle(store, sid, "w1", "done", 1)
    assert store.read(lambda tx: tx.done_workflows(sid)) == {"w1"}
    store.write_sync(lambda tx: tx.effect_remember((sid, "w1", "rec"), "r1"))
    assert store.write_sync(lambda tx: tx.requeue(sid))
    sig = store.read(lambda tx: tx.get_signal(sid))
    assert (sig.status, sig.replays, sig.replay_from, sig.attempts) == ("pending", 1, 2, 1)
    assert store.read(lambda tx: tx.done_workflows(sid, sig.replay_from)) == set()  # everything runs again
    assert store.read(lambda tx: tx.done_workflows(sid)) == {"w1"}  # the history stays
    assert store.read(lambda tx: tx.effect_recall((sid, "w1", "rec"))) is None  # record steps write again
    assert not store.write_sync(lambda tx: tx.requeue(sid))  # pending: refused
    # A delay makes it due later.
    _settle(store, sid, "w1", "done", 2)
    store.write_sync(lambda tx: tx.requeue(sid, delay=60))
    assert not store.read(lambda tx: tx.has_claimable())


def test_raw_bodies_are_kept_and_pruned_with_their_signal(store: Storage) -> None:
    sid = _append(store, raw=b"\x00raw \xff bytes")
    other = _append(store)
    assert store.read(lambda tx: tx.signal_body(sid)) == b"\x00raw \xff bytes"
    assert store.read(lambda tx: tx.signal_body(other)) is None
    _settle(store, sid, "w", "done", 1)
    assert store.write_sync(lambda tx: tx.prune_settled(new_signal_id(), 100)) == 1
    assert store.read(lambda tx: tx.signal_body(sid)) is None
    assert store.read(lambda tx: tx.find_signals(SignalQuery(search="raw"))) == []


def test_find_and_count_signals(store: Storage) -> None:
    ids = [
        _append(store, "webhooks.a" if i % 2 else "endpoints.b", n=i, ref=f"ORD-{i:03d}-Z") for i in range(30)
    ]
    time.sleep(0.002)
    _settle(store, ids[3], "notify", "failed", 1)
    q = SignalQuery
    assert [s.id for s in store.read(lambda tx: tx.find_signals(q(limit=5)))] == ids[::-1][:5]
    assert [s.id for s in store.read(lambda tx: tx.find_signals(q(limit=5, before=ids[10])))] == ids[5:10][
        ::-1
    ]
    assert [s.id for s in store.read(lambda tx: tx.find_signals(q(limit=3, after=ids[10])))] == ids[11:14][
        ::-1
    ]
    assert store.read(lambda tx: tx.count_signals(q(source="webhooks.a"))) == 15
    assert store.read(lambda tx: tx.count_signals(q(channel="endpoints"))) == 15
    assert [s.id for s in store.read(lambda tx: tx.find_signals(q(workflow="notify")))] == [ids[3]]
    assert store.read(lambda tx: tx.count_signals(q(status="failed"))) == 1
    assert store.read(lambda tx: tx.count_signals(q(statuses=("failed", "done")))) == 1
    assert [s.id for s in store.read(lambda tx: tx.find_signals(q(search="ORD-017-Z")))] == [ids[17]]
    assert [s.id for s in store.read(lambda tx: tx.find_signals(q(search=ids[4])))] == [ids[4]]
    assert store.read(lambda tx: tx.count_signals(q(search="ORD-01*"))) == 10
    assert store.read(lambda tx: tx.count_signals(q(search='" OR 1'))) == 0
    assert store.read(lambda tx: tx.count_signals(q(search="ORD-017-Z ORD-018-Z"))) == 0
    assert store.read(lambda tx: tx.count_signals(q(upto=ids[9]))) == 10
    mid = store.read(lambda tx: tx.get_signal(ids[20])).received_at
    newer = store.read(lambda tx: tx.find_signals(q(since=mid, limit=100)))
    assert {s.id for s in newer} >= set(ids[21:]) and all(s.received_at >= mid for s in newer)
    older = store.read(lambda tx: tx.count_signals(q(until=mid)))
    assert older + len(newer) == 30


def _refusal(source: str, n: int) -> Refusal:
    return Refusal(
        new_signal_id(),
        "2026-01-01T00:00:00.000Z",
        "webhooks",
        source,
        "POST",
        "/x",
        "",
        "127.0.0.1",
        {"a": "b"},
        b"body %d" % n,
        6,
        401,
        "invalid API key",
        "{}",
        f"req{n}",
    )


def test_refused_keeps_the_newest_n_per_source(store: Storage) -> None:
    batch = [_refusal("webhooks.a", n) for n in range(8)] + [_refusal("unknown", n) for n in range(3)]
    dropped = store.write_sync(lambda tx: tx.refused_add(batch, 5))
    assert dropped == 3
    kept = store.read(lambda tx: tx.refused_list(source="webhooks.a"))
    assert [r.request_id for r in kept] == ["req7", "req6", "req5", "req4", "req3"]
    assert len(store.read(lambda tx: tx.refused_list(source="unknown"))) == 3
    page = store.read(lambda tx: tx.refused_list(limit=2))
    assert len(page) == 2 and store.read(lambda tx: tx.refused_list(before=page[-1].id, limit=100))
    one = store.read(lambda tx: tx.refused_get(kept[0].id))
    assert one is not None and one.body == b"body 7" and one.headers == {"a": "b"} and one.status == 401
    assert store.read(lambda tx: tx.refused_get("nope")) is None


def test_a_nul_byte_is_searched_kept_and_refused_safely(store: Storage) -> None:
    """Email bodies and forms carry NUL bytes: the signal is journaled, searchable by the words
    around it, its raw body comes back byte for byte, and a refusal with one is kept too."""
    raw = b"before\x00after \xff\xfe"
    sid = _append(store, raw=raw, text="alpha\x00omega", big="word " * 60_000)
    assert store.read(lambda tx: tx.signal_body(sid)) == raw
    assert [s.id for s in store.read(lambda tx: tx.find_signals(SignalQuery(search="omega")))] == [sid]
    assert store.read(lambda tx: tx.get_signal(sid)).entity.data["text"] == "alpha\x00omega"
    nul = _refusal("webhooks.nul", 1)
    nul.headers = {"x-evil": "a\x00b"}
    nul.reason = "bad\x00reason"
    store.write_sync(lambda tx: tx.refused_add([nul], 5))
    kept = store.read(lambda tx: tx.refused_get(nul.id))
    assert kept is not None and kept.body == nul.body and kept.status == 401
