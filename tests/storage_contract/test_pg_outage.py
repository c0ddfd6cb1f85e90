"""PostgreSQL going away: a restart under load loses nothing acknowledged and the store recovers
without being reopened; a commit whose answer was lost is resolved by looking its signal ids up."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from engine.entity import Entity
from router.storage import StorageUnavailable, open_postgres
from router.storage.postgres.writer import PgStorage
from tests import pg


def test_a_restart_under_load_loses_no_acknowledged_append(pg_database: str) -> None:
    if not pg.can_restart():
        pytest.skip("no control over the PostgreSQL server here")
    store = open_postgres(pg_database, pool_size=2, connect_timeout=2)
    acked: list[str] = []
    refused: list[str] = []
    others: list[BaseException] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            e = Entity("webhooks", "webhooks.load", {"n": len(acked)})
            started = time.monotonic()
            try:
                store.write_sync(lambda tx, e=e: tx.append_signal(e))
                acked.append(e.id)
            except StorageUnavailable:
                refused.append(e.id)
                time.sleep(0.02)
            except BaseException as exc:  # noqa: BLE001 - anything else is a failure of the test
                others.append(exc)
                return
            assert time.monotonic() - started < 30, "an append hung past its timeout"

    t = threading.Thread(target=load)
    t.start()
    try:
        deadline = time.monotonic() + 30
        while len(acked) < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        before = len(acked)
        pg.restart("immediate")
        deadline = time.monotonic() + 60
        while len(acked) < before + 200 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        t.join(60)
    assert not others, others
    assert len(acked) >= before + 200, "the store did not recover on its own after the restart"
    journaled = {s.id for s in store.read(lambda tx: tx.list_signals(source="webhooks.load", limit=10**6))}
    lost = set(acked) - journaled
    print(
        f"\ncontract[postgres] restart -m immediate under load: acked {len(acked)}, refused (503) {len(refused)}, "
        f"lost {len(lost)}, refused but journaled after all {len(set(refused) & journaled)}"
    )
    assert not lost
    store.close()


class _LostAnswer:
    """Wraps the writer connection's commit: the COMMIT happens (or not), then the connection dies
    before the answer arrives, as when the network drops at the worst moment."""

    def __init__(self, storage: PgStorage, *, commit: bool) -> None:
        self.storage, self.commit = storage, commit

    def __enter__(self) -> None:
        conn: Any = self.storage._writer()
        real = conn.commit

        def commit() -> None:
            if self.commit:
                real()
            conn.close()  # closing inside a transaction rolls it back on the server
            raise psycopg.OperationalError("server closed the connection unexpectedly")

        conn.commit = commit

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.mark.parametrize("committed", [True, False])
def test_a_commit_with_a_lost_answer_is_resolved_by_signal_id(pg_database: str, committed: bool) -> None:
    store = open_postgres(pg_database, pool_size=1)
    assert isinstance(store, PgStorage)
    e = Entity("webhooks", "webhooks.x", {})
    with _LostAnswer(store, commit=committed):
        if committed:
            got = store.write_sync(lambda tx: tx.append_signal(e))
            assert got.signal_id == e.id and not got.duplicate  # reported committed: no retry, no double
        else:
            with pytest.raises(StorageUnavailable):
                store.write_sync(lambda tx: tx.append_signal(e))
    ids = [s.id for s in store.read(lambda tx: tx.list_signals())]
    assert ids == ([e.id] if committed else [])
    store.write_sync(lambda tx: tx.append_signal(Entity("webhooks", "webhooks.x", {})))  # reconnected
    assert len(store.read(lambda tx: tx.list_signals())) == len(ids) + 1
    store.close()
