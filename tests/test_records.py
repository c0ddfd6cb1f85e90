"""The record store (engine/records.py) on a real SQLite file."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from engine import records
from engine.records import RecordError, RecordStore

T = TypeVar("T")


class SqliteDb:
    """A minimal `engine.ports.Database`: runs fn(conn) and commits (rolls back on error)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, check_same_thread=False)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self.conn:
            return fn(self.conn)

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return fn(self.conn)


class Sink:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def record_deleted(self, conn: sqlite3.Connection, record_type: str, record: dict[str, Any]) -> None:
        assert conn.in_transaction, "the sink must run inside the delete's transaction"
        conn.execute("CREATE TABLE IF NOT EXISTS outbox (type TEXT, id TEXT)")
        conn.execute("INSERT INTO outbox VALUES (?, ?)", (record_type, record["id"]))
        self.calls.append((record_type, record))
        if self.fail:
            raise RuntimeError("sink failed")


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = sqlite3.connect(tmp_path / "records.db")
    yield c
    c.close()


def test_create_get_and_columns(conn: sqlite3.Connection) -> None:
    with conn:
        rec = records.create_record(conn, "note", {"body": "hi", "n": 3, "tags": ["a", "b"], "meta": {"x": 1}})
    assert len(rec["id"]) == 26 and rec["created_at"] == rec["updated_at"]
    assert rec["body"] == "hi" and rec["n"] == 3 and rec["tags"] == ["a", "b"] and rec["meta"] == {"x": 1}
    cols = [r[1] for r in conn.execute("PRAGMA table_info(record_note)")]
    assert cols[:3] == ["id", "created_at", "updated_at"]
    # nested values are JSON text on disk
    assert conn.execute("SELECT tags FROM record_note").fetchone()[0] == '["a","b"]'
    assert records.get_record(conn, "note", rec["id"]) == rec
    assert records.get_record(conn, "note", "nope") is None
    assert records.get_record(conn, "missing", "x") is None


def test_functions_do_not_commit(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "r.db")
    records.create_record(conn, "note", {"body": "a"})
    assert conn.in_transaction
    conn.rollback()
    assert records.count(conn, "note") == 0


def test_new_fields_add_columns_and_update_merges(conn: sqlite3.Connection) -> None:
    with conn:
        rec = records.create_record(conn, "contact", {"email": "a@x.io"})
        updated = records.update_record(conn, "contact", rec["id"], {"name": "Ann", "id": "ignored"})
    assert updated is not None
    assert updated["email"] == "a@x.io" and updated["name"] == "Ann" and updated["id"] == rec["id"]
    assert updated["updated_at"] >= rec["updated_at"]
    with conn:
        assert records.update_record(conn, "contact", "nope", {"name": "x"}) is None


def test_upsert_matches_on_key(conn: sqlite3.Connection) -> None:
    with conn:
        a = records.upsert_record(conn, "contact", ["email"], {"email": "a@x.io", "n": 1})
        b = records.upsert_record(conn, "contact", ["email"], {"email": "a@x.io", "n": 2})
        c = records.upsert_record(conn, "contact", ["email"], {"email": "b@x.io", "n": 3})
    assert a["id"] == b["id"] != c["id"]
    assert b["n"] == 2 and records.count(conn, "contact") == 2
    with pytest.raises(RecordError):
        records.upsert_record(conn, "contact", ["email"], {"n": 1})


def test_find_count_and_missing_columns(conn: sqlite3.Connection) -> None:
    with conn:
        for i in range(5):
            records.create_record(conn, "deal", {"stage": "won" if i % 2 else "open", "amount": i * 10})
    assert records.count(conn, "deal") == 5
    assert records.count(conn, "deal", {"stage": "won"}) == 2
    assert [r["amount"] for r in records.find(conn, "deal", {"stage": "open"}, order_by="-amount")] == [40, 20, 0]
    assert len(records.find(conn, "deal", {"stage": ["won", "open"]}, limit=3)) == 3
    # a filter on a field that no record has, or on a type that does not exist: empty, no error
    assert records.find(conn, "deal", {"colour": "red"}) == []
    assert records.count(conn, "deal", {"colour": "red"}) == 0
    assert records.find(conn, "ghost", {"a": 1}) == [] and records.count(conn, "ghost") == 0
    assert records.list_record_types(conn) == ["deal"]
    newest = records.list_records(conn, "deal", limit=2)
    assert [r["amount"] for r in newest] == [40, 30]
    assert [r["amount"] for r in records.list_records(conn, "deal", limit=2, offset=2)] == [20, 10]


def test_invalid_names_refused(conn: sqlite3.Connection) -> None:
    for bad in ("Note", "1note", "note-x", "", "x" * 64, "note;drop"):
        with pytest.raises(RecordError):
            records.create_record(conn, bad, {})
    with pytest.raises(RecordError):
        records.create_record(conn, "note", {"bad\nname": 1})


def test_delete_calls_sink_in_same_transaction(conn: sqlite3.Connection) -> None:
    sink = Sink()
    with conn:
        rec = records.create_record(conn, "contact", {"email": "a@x.io"})
    with conn:
        gone = records.delete_record(conn, "contact", rec["id"], sink)
    assert gone == rec and sink.calls == [("contact", rec)]
    assert records.get_record(conn, "contact", rec["id"]) is None
    assert conn.execute("SELECT type, id FROM outbox").fetchall() == [("contact", rec["id"])]
    assert records.delete_record(conn, "contact", rec["id"], sink) is None


def test_delete_rolled_back_leaves_neither(conn: sqlite3.Connection) -> None:
    with conn:
        rec = records.create_record(conn, "contact", {"email": "a@x.io"})
        conn.execute("CREATE TABLE outbox (type TEXT, id TEXT)")
    # the caller's transaction rolls back (here because the sink fails): record and signal both stay/vanish
    with pytest.raises(RuntimeError), conn:
        records.delete_record(conn, "contact", rec["id"], Sink(fail=True))
    assert records.get_record(conn, "contact", rec["id"]) == rec
    assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
    # and an explicit rollback after a successful delete undoes both as well
    sink = Sink()
    records.delete_record(conn, "contact", rec["id"], sink)
    conn.rollback()
    assert sink.calls and records.get_record(conn, "contact", rec["id"]) == rec
    assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0


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
    assert await store.delete("note", first["id"], effect=removed) is not None  # same outcome as the first try
    assert store.find_count("note") == 1
    store.db.read(lambda c: records.forget_effects(c, "01SIGNAL"))  # the signal is done: a replay writes anew
    assert (await store.create("note", {"body": "one"}, effect=step))["id"] != first["id"]
