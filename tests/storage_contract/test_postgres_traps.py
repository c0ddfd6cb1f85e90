"""What PostgreSQL adds to the contract (SCALE-OUT §8): commits landing out of order, migrations
racing at start-up, NUL bytes, jsonb's types, poison signals. Run on every backend where they apply."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from engine.entity import Entity
from engine.records import RecordError
from router.storage import Storage, Tx
from tests.storage_contract import workers
from tests.storage_contract.conftest import Backend, run_processes


def test_the_live_feed_waits_for_a_transaction_that_commits_late(backend: Backend, store: Storage) -> None:
    """A holds its transaction open with an older id while B (newer id) commits: the feed shows B
    only once A is done, then A too: nothing is skipped for having committed late."""
    if backend.name == "sqlite":
        pytest.skip("SQLite has one writer at a time: commits cannot land out of order")
    cursor = store.read(lambda tx: tx.feed_start())
    a, b = Entity("webhooks", "webhooks.a", {}), Entity("webhooks", "webhooks.b", {})
    assert a.id < b.id
    other = backend.open()
    inside, release = threading.Event(), threading.Event()

    def slow(tx: Tx) -> None:
        tx.append_signal(a)
        inside.set()
        assert release.wait(30)

    t = threading.Thread(target=lambda: other.write_sync(slow))
    t.start()
    try:
        assert inside.wait(30)
        store.write_sync(lambda tx: tx.append_signal(b))
        rows, cursor2 = store.read(lambda tx: tx.feed_after(cursor))
        assert rows == [] and cursor2 == cursor, "a row behind an open transaction must wait"
        assert [s.id for s in store.read(lambda tx: tx.list_signals())] == [b.id]  # committed, visible
    finally:
        release.set()
        t.join(30)
        other.close()
    rows, cursor = store.read(lambda tx: tx.feed_after(cursor))
    seen = [r["id"] for r in rows]
    assert sorted(seen) == sorted([a.id, b.id]) and len(seen) == 2
    assert store.read(lambda tx: tx.feed_after(cursor))[0] == []
    print(
        f"\ncontract[{backend.name}] out-of-order commits: the newer row waited for the older open "
        f"transaction, then the feed gave both ({', '.join(sorted(seen))})"
    )


def test_three_processes_migrating_at_once(backend: Backend, tmp_path: Path) -> None:
    if backend.name == "postgres":
        from tests import pg

        server = pg.dsn_with(backend.where, dbname="postgres")
        where = pg.create_database(server, template=None)  # empty: every process finds version 0
    else:
        where = str(tmp_path / "fresh.db")
    results = run_processes(workers.migrator, [(backend.name, where, f"p{i}") for i in range(3)], tmp_path)
    assert sorted(r["found"] for r in results).count(0) == 1, results  # one migrated, two found it done
    assert {r["version"] for r in results} == {results[0]["version"]}
    assert sum(r["appended"] for r in results) == 3
    print(
        f"\ncontract[{backend.name}] 3 processes migrating at once: versions found {[r['found'] for r in results]},"
        f" all at {results[0]['version']}"
    )


def test_a_nul_byte_in_an_entity_survives(store: Storage) -> None:
    body = "line one\x00line two \u0000 and \\u0000 literally"
    e = Entity("mailboxes", "mailboxes.in", {"text": body, "headers": {"x\x00": "y"}})
    store.write_sync(lambda tx: tx.append_signal(e, dedup_key="msg\x00id"))
    got = store.read(lambda tx: tx.get_signal(e.id))
    assert (
        got is not None and got.entity.data["text"] == body and got.entity.data["headers"] == {"x\x00": "y"}
    )
    assert got.dedup_key is not None and got.dedup_key.startswith("msg")
    [s] = store.write_sync(lambda tx: tx.claim("A", 1))
    assert store.write_sync(lambda tx: tx.settle(s.claim, status="failed", error="bad\x00input"))
    assert store.read(lambda tx: tx.get_signal(e.id)).status == "failed"  # type: ignore[union-attr]


def test_records_compare_numbers_as_numbers(store: Storage) -> None:
    def make(tx: Tx) -> None:
        tx.record_create("item", {"n": 10, "code": "7", "name": "ten", "tags": ["a"]})
        tx.record_create("item", {"n": 9, "code": "08", "name": "nine"})
        tx.record_create("item", {"n": 2.5, "code": "x", "name": "two and a half"})

    store.write_sync(make)

    def names(**filters: object) -> list[str]:
        return [r["name"] for r in store.read(lambda tx: tx.record_find("item", filters, limit=None))]

    assert names(n=10) == ["ten"] and names(n=10.0) == ["ten"] and names(n="10") == ["ten"]
    assert names(n=2.5) == ["two and a half"] and names(n="2.5") == ["two and a half"]
    assert names(code="7") == ["ten"] and names(code=7) == ["ten"]
    assert names(code="8") == [] and names(code="08") == ["nine"]
    assert names(n=[9, 10]) == ["ten", "nine"] and names(n=[]) == []
    assert names(nosuch=1) == []
    by_n = [r["n"] for r in store.read(lambda tx: tx.record_find("item", None, limit=None, order_by="n"))]
    assert by_n == [2.5, 9, 10]  # numerically, not as text ("10" < "2.5" < "9")
    assert [r["n"] for r in store.read(lambda tx: tx.record_find("item", None, limit=2, order_by="-n"))] == [
        10,
        9,
    ]
    assert store.read(lambda tx: tx.record_count("item", {"n": "9"})) == 1
    upserted = store.write_sync(
        lambda tx: tx.record_upsert("item", ["code"], {"code": "x", "name": "x again"})
    )
    assert upserted["n"] == 2.5 and store.read(lambda tx: tx.record_count("item")) == 3


def test_a_nul_byte_in_a_record_field_is_refused_or_kept(backend: Backend, store: Storage) -> None:
    try:
        rec = store.write_sync(lambda tx: tx.record_create("mail", {"body": "a\x00b"}))
    except RecordError as exc:
        assert backend.name == "postgres" and "NUL" in str(exc)  # jsonb cannot hold it: said, not mangled
        assert store.read(lambda tx: tx.record_count("mail")) == 0
    else:
        assert store.read(lambda tx: tx.record_get("mail", rec["id"]))["body"] == "a\x00b"  # type: ignore[index]


def test_a_signal_that_never_settles_is_failed_after_max_deliveries(backend: Backend, store: Storage) -> None:
    if backend.name == "sqlite":
        pytest.skip("the delivery cap is PostgreSQL's ([database] max_deliveries)")
    e = Entity("webhooks", "webhooks.poison", {})
    store.write_sync(lambda tx: tx.append_signal(e))
    t0 = store.read(lambda tx: tx.now())
    epochs = []
    for i in range(40):  # each claim's owner "dies": its lease runs out, the next one claims
        got = store.write_sync(lambda tx, i=i: tx.claim(f"n{i}", 1, lease=1, now=t0 + 2 * i))
        if not got:
            break
        epochs.append(got[0].epoch)
    limit = store.max_deliveries  # type: ignore[attr-defined]
    assert epochs == list(range(1, limit + 1))
    s = store.read(lambda tx: tx.get_signal(e.id))
    assert s is not None and s.status == "failed" and "without ever settling" in (s.last_error or "")
    assert not store.read(lambda tx: tx.has_claimable(now=t0 + 10**6))
    print(f"\ncontract[{backend.name}] poison: claimed {len(epochs)} times, then failed: {s.last_error}")
