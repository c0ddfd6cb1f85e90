"""The record store on the SQLite backend (router/storage/sqlite/records.py, via sqlite-utils)
and the engine's facade over it (engine/records.py), on a real SQLite file."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from engine.ports import RecordTx
from engine.records import RecordError, RecordStore, delete_with_sink
from router.storage.sqlite import schema
from router.storage.sqlite.tx import SqliteTx
from router.storage.sqlite.writer import connect

T = TypeVar("T")


def open_tx(path: Path) -> SqliteTx:
    conn = connect(path, synchronous="OFF")
    schema.migrate(conn)
    return SqliteTx(conn)


@contextmanager
def txn(tx: SqliteTx) -> Iterator[SqliteTx]:
    """One transaction: committed, or rolled back if the block raises."""
    if not tx.conn.in_transaction:
        tx.conn.execute("BEGIN")
    try:
        yield tx
    except BaseException:
        tx.conn.execute("ROLLBACK")
        raise
    if tx.conn.in_transaction:
        tx.conn.execute("COMMIT")


class SqliteDb:
    """A minimal `engine.ports.Database` over the SQLite backend: each write is one transaction."""

    def __init__(self, path: Path) -> None:
        self.tx = open_tx(path)

    async def write(self, fn: Callable[[SqliteTx], T]) -> T:
        with txn(self.tx):
            return fn(self.tx)

    def read(self, fn: Callable[[SqliteTx], T]) -> T:
        return fn(self.tx)


class Sink:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def record_deleted(self, tx: RecordTx, record_type: str, record: dict[str, Any]) -> str | None:
        assert isinstance(tx, SqliteTx) and tx.conn.in_transaction, (
            "the sink must run inside the delete's transaction"
        )
        tx.conn.execute("CREATE TABLE IF NOT EXISTS outbox (type TEXT, id TEXT)")
        tx.conn.execute("INSERT INTO outbox VALUES (?, ?)", (record_type, record["id"]))
        self.calls.append((record_type, record))
        if self.fail:
            raise RuntimeError("sink failed")
        return None


@pytest.fixture
def tx(tmp_path: Path) -> Iterator[SqliteTx]:
    t = open_tx(tmp_path / "records.db")
    yield t
    t.conn.close()


def test_create_get_and_columns(tx: SqliteTx) -> None:
    with txn(tx):
        rec = tx.record_create("note", {"body": "hi", "n": 3, "tags": ["a", "b"], "meta": {"x": 1}})
    assert len(rec["id"]) == 26 and rec["created_at"] == rec["updated_at"]
    assert rec["body"] == "hi" and rec["n"] == 3 and rec["tags"] == ["a", "b"] and rec["meta"] == {"x": 1}
    cols = [r[1] for r in tx.conn.execute("PRAGMA table_info(record_note)")]
    assert cols[:3] == ["id", "created_at", "updated_at"]
    # nested values are JSON text on disk
    assert tx.conn.execute("SELECT tags FROM record_note").fetchone()[0] == '["a","b"]'
    assert tx.record_get("note", rec["id"]) == rec
    assert tx.record_get("note", "nope") is None
    assert tx.record_get("missing", "x") is None


def test_functions_do_not_commit(tx: SqliteTx) -> None:
    tx.record_create("note", {"body": "a"})
    assert tx.conn.in_transaction
    tx.conn.execute("ROLLBACK")
    assert tx.record_count("note") == 0


def test_new_fields_add_columns_and_update_merges(tx: SqliteTx) -> None:
    with txn(tx):
        rec = tx.record_create("contact", {"email": "a@x.io"})
        updated = tx.record_update("contact", rec["id"], {"name": "Ann", "id": "ignored"})
    assert updated is not None
    assert updated["email"] == "a@x.io" and updated["name"] == "Ann" and updated["id"] == rec["id"]
    assert updated["updated_at"] >= rec["updated_at"]
    with txn(tx):
        assert tx.record_update("contact", "nope", {"name": "x"}) is None


def test_upsert_matches_on_key(tx: SqliteTx) -> None:
    with txn(tx):
        a = tx.record_upsert("contact", ["email"], {"email": "a@x.io", "n": 1})
        b = tx.record_upsert("contact", ["email"], {"email": "a@x.io", "n": 2})
        c = tx.record_upsert("contact", ["email"], {"email": "b@x.io", "n": 3})
    assert a["id"] == b["id"] != c["id"]
    assert b["n"] == 2 and tx.record_count("contact") == 2
    with pytest.raises(RecordError):
        tx.record_upsert("contact", ["email"], {"n": 1})


def test_find_count_and_missing_columns(tx: SqliteTx) -> None:
    with txn(tx):
        for i in range(5):
            tx.record_create("deal", {"stage": "won" if i % 2 else "open", "amount": i * 10})
    assert tx.record_count("deal") == 5
    assert tx.record_count("deal", {"stage": "won"}) == 2
    assert [r["amount"] for r in tx.record_find("deal", {"stage": "open"}, order_by="-amount")] == [40, 20, 0]
    assert len(tx.record_find("deal", {"stage": ["won", "open"]}, limit=3)) == 3
    # a filter on a field that no record has, or on a type that does not exist: empty, no error
    assert tx.record_find("deal", {"colour": "red"}) == []
    assert tx.record_count("deal", {"colour": "red"}) == 0
    assert tx.record_find("ghost", {"a": 1}) == [] and tx.record_count("ghost") == 0
    assert tx.record_types() == ["deal"]
    newest = tx.record_list("deal", limit=2)
    assert [r["amount"] for r in newest] == [40, 30]
    assert [r["amount"] for r in tx.record_list("deal", limit=2, offset=2)] == [20, 10]


def test_invalid_names_refused(tx: SqliteTx) -> None:
    for bad in ("Note", "1note", "note-x", "", "x" * 64, "note;drop"):
        with pytest.raises(RecordError):
            tx.record_create(bad, {})
    with pytest.raises(RecordError):
        tx.record_create("note", {"bad\nname": 1})


def test_delete_calls_sink_in_same_transaction(tx: SqliteTx) -> None:
    sink = Sink()
    with txn(tx):
        rec = tx.record_create("contact", {"email": "a@x.io"})
    with txn(tx):
        gone = delete_with_sink(tx, "contact", rec["id"], sink)
    assert gone == rec and sink.calls == [("contact", rec)]
    assert tx.record_get("contact", rec["id"]) is None
    assert [tuple(r) for r in tx.conn.execute("SELECT type, id FROM outbox")] == [("contact", rec["id"])]
    assert delete_with_sink(tx, "contact", rec["id"], sink) is None


def test_delete_rolled_back_leaves_neither(tx: SqliteTx) -> None:
    with txn(tx):
        rec = tx.record_create("contact", {"email": "a@x.io"})
        tx.conn.execute("CREATE TABLE outbox (type TEXT, id TEXT)")
    # the caller's transaction rolls back (here because the sink fails): record and signal both stay/vanish
    with pytest.raises(RuntimeError), txn(tx):
        delete_with_sink(tx, "contact", rec["id"], Sink(fail=True))
    assert tx.record_get("contact", rec["id"]) == rec
    assert tx.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
    # and an explicit rollback after a successful delete undoes both as well
    sink = Sink()
    delete_with_sink(tx, "contact", rec["id"], sink)
    tx.conn.execute("ROLLBACK")
    assert sink.calls and tx.record_get("contact", rec["id"]) == rec
    assert tx.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0


async def test_record_store_over_database(tmp_path: Path) -> None:
    sink = Sink()
    store = RecordStore(SqliteDb(tmp_path / "s.db"), sink)
    a = await store.create("contact", {"email": "a@x.io", "n": 1})
    await store.create("contact", {"email": "b@x.io", "n": 2})
    assert store.find_one("contact", {"email": "b@x.io"})["n"] == 2  # type: ignore[index]
    assert store.find_one("contact", {"email": "zz"}) is None
    assert [r["n"] for r in store.find_many("contact", {}, order_by="-n")] == [2, 1]
    assert store.find_count("contact", {"nope": 1}) == 0
    assert (await store.update("contact", a["id"], {"n": 5}))["n"] == 5  # type: ignore[index]
    up = await store.upsert("contact", ["email"], {"email": "a@x.io", "n": 6})
    assert up["id"] == a["id"]
    assert (await store.delete("contact", a["id"]))["id"] == a["id"]  # type: ignore[index]
    assert sink.calls[0][0] == "contact" and store.find_count("contact") == 1


async def test_a_step_run_again_writes_once(tmp_path: Path) -> None:
    """A run started over after a crash: each record step returns what it wrote the first time."""
    store = RecordStore(SqliteDb(tmp_path / "r.db"), Sink())
    step = ("01SIGNAL", "wf", "rec")
    first = await store.create("note", {"body": "one"}, effect=step)
    again = await store.create("note", {"body": "one"}, effect=step)
    assert again["id"] == first["id"] and store.find_count("note") == 1
    other = await store.create("note", {"body": "one"}, effect=("01SIGNAL", "wf", "other-step"))
    assert other["id"] != first["id"]
    removed = ("01SIGNAL", "wf", "del")
    assert await store.delete("note", first["id"], effect=removed) is not None
    assert (
        await store.delete("note", first["id"], effect=removed) is not None
    )  # same outcome as the first try
    assert store.find_count("note") == 1
    await store.db.write(lambda t: t.effects_forget("01SIGNAL"))  # the signal is done: a replay writes anew
    assert (await store.create("note", {"body": "one"}, effect=step))["id"] != first["id"]
