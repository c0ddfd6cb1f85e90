"""Records and step effects through the storage interface: the same answers on every backend, and
an upsert raced from two processes never creates two records for one key."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from engine.records import RecordError, delete_with_sink
from router.dispatch.deletions import JournalDeletionSink
from router.storage import Storage, Tx
from tests.storage_contract import workers
from tests.storage_contract.conftest import Backend, run_processes


def test_create_update_find_list_delete(store: Storage) -> None:
    rec = store.write_sync(
        lambda tx: tx.record_create(
            "note", {"body": "hi", "n": 3, "tags": ["a", "b"], "meta": {"x": 1}, "id": "ignored"}
        )
    )
    assert len(rec["id"]) == 26 and rec["created_at"] == rec["updated_at"]
    assert (rec["body"], rec["n"], rec["tags"], rec["meta"]) == ("hi", 3, ["a", "b"], {"x": 1})
    assert store.read(lambda tx: tx.record_get("note", rec["id"])) == rec
    assert store.read(lambda tx: tx.record_get("note", "nope")) is None
    assert store.read(lambda tx: tx.record_get("ghost", "x")) is None
    up = store.write_sync(lambda tx: tx.record_update("note", rec["id"], {"n": 4, "extra": True}))
    assert up is not None and (up["body"], up["n"], up["extra"]) == ("hi", 4, True)
    assert up["updated_at"] >= rec["updated_at"] and up["created_at"] == rec["created_at"]
    assert store.write_sync(lambda tx: tx.record_update("note", "nope", {"n": 1})) is None

    def deals(tx: Tx) -> None:
        for i in range(5):
            tx.record_create("deal", {"stage": "won" if i % 2 else "open", "amount": i * 10})

    store.write_sync(deals)
    assert store.read(lambda tx: tx.record_count("deal")) == 5
    assert store.read(lambda tx: tx.record_count("deal", {"stage": "won"})) == 2
    found = store.read(lambda tx: tx.record_find("deal", {"stage": "open"}, order_by="-amount"))
    assert [r["amount"] for r in found] == [40, 20, 0]
    assert len(store.read(lambda tx: tx.record_find("deal", {"stage": ["won", "open"]}, limit=3))) == 3
    assert store.read(lambda tx: tx.record_find("deal", {"colour": "red"})) == []
    assert store.read(lambda tx: tx.record_find("ghost", {"a": 1})) == []
    assert sorted(store.read(lambda tx: tx.record_types())) == ["deal", "note"]
    assert [r["amount"] for r in store.read(lambda tx: tx.record_list("deal", limit=2))] == [40, 30]
    assert [r["amount"] for r in store.read(lambda tx: tx.record_list("deal", limit=2, offset=2))] == [20, 10]
    gone = store.write_sync(lambda tx: tx.record_delete("note", rec["id"]))
    assert gone is not None and gone["n"] == 4
    assert store.write_sync(lambda tx: tx.record_delete("note", rec["id"])) is None
    with pytest.raises(RecordError):
        store.write_sync(lambda tx: tx.record_create("Bad-Type", {}))
    with pytest.raises(RecordError):
        store.write_sync(lambda tx: tx.record_upsert("deal", ["email"], {"n": 1}))


def test_a_delete_journals_its_deletion_signal_in_the_same_transaction(store: Storage) -> None:
    rec = store.write_sync(lambda tx: tx.record_create("contact", {"email": "a@x.io"}))
    sink = JournalDeletionSink()

    def delete_then_fail(tx: Tx) -> None:
        delete_with_sink(tx, "contact", rec["id"], sink)
        raise RuntimeError("the job fails after the delete")

    with pytest.raises(RuntimeError):
        store.write_sync(delete_then_fail)
    assert store.read(lambda tx: tx.record_get("contact", rec["id"])) == rec
    assert store.read(lambda tx: tx.list_signals()) == []  # neither the delete nor its signal
    store.write_sync(lambda tx: delete_with_sink(tx, "contact", rec["id"], sink))
    [signal] = store.read(lambda tx: tx.list_signals())
    assert signal.channel == "deletions" and signal.entity.data["deleted_record"]["email"] == "a@x.io"


def test_step_effects_remember_and_forget(store: Storage) -> None:
    key = ("01SIGNAL", "wf", "step")
    assert store.read(lambda tx: tx.effect_recall(key)) is None
    store.write_sync(lambda tx: tx.effect_remember(key, "R1"))
    store.write_sync(lambda tx: tx.effect_remember(key, "R2"))  # the same step again: replaced
    assert store.read(lambda tx: tx.effect_recall(key)).record_id == "R2"  # type: ignore[union-attr]
    store.write_sync(lambda tx: tx.effect_remember(("01SIGNAL", "wf", "none"), None))
    assert store.read(lambda tx: tx.effect_recall(("01SIGNAL", "wf", "none"))).record_id is None  # type: ignore[union-attr]
    store.write_sync(lambda tx: tx.effects_forget("01SIGNAL"))
    assert store.read(lambda tx: tx.effect_recall(key)) is None


def test_an_upsert_raced_from_two_processes_creates_one_record_per_key(
    backend: Backend, store: Storage, tmp_path: Path
) -> None:
    keys = 100
    results = run_processes(
        workers.upserters, [(backend.name, backend.where, f"p{p}", 4, keys) for p in range(2)], tmp_path
    )
    ids_per_key: dict[str, set[str]] = {}
    for proc in results:
        for thread in proc:
            for key, rid in thread.items():
                ids_per_key.setdefault(key, set()).add(rid)
    rows = store.read(lambda tx: tx.record_find("contact", None, limit=None))
    per_email = Counter(r["email"] for r in rows)
    print(
        f"\ncontract[{backend.name}] upsert race: {keys} keys x 2 processes x 4 threads: records "
        f"{len(rows)}, keys with more than one record {sum(1 for n in per_email.values() if n > 1)}"
    )
    assert len(rows) == keys and set(per_email.values()) == {1}
    assert all(len(ids) == 1 for ids in ids_per_key.values())


def test_a_record_step_raced_from_two_processes_writes_once(
    backend: Backend, store: Storage, tmp_path: Path
) -> None:
    steps = 100
    results = run_processes(
        workers.oncers, [(backend.name, backend.where, f"p{p}", 4, steps) for p in range(2)], tmp_path
    )
    answers = Counter(rid for proc in results for thread in proc for rid in thread.values())
    notes = store.read(lambda tx: tx.record_find("note", None, limit=None))
    print(
        f"\ncontract[{backend.name}] record step race: {steps} steps x 2 processes x 4 threads: records "
        f"{len(notes)}, distinct answers {len(answers)}"
    )
    assert len(notes) == steps and set(answers) == {n["id"] for n in notes}
