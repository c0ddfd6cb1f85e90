"""What the contract suite's child processes run (spawned, so each is a fresh interpreter with its
own connections, like a second router process or node). Each writes its findings as JSON."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from engine.entity import Entity
from router.schedules.store import Firing, acquire_lease, fire
from router.storage import Tx
from router.storage.base import LeaseLost
from tests.storage_contract.backends import open_backend

SCHEDULE_BASE = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
DEFINITION = '{"every": 1.0}'


def arrive_then(arrived: Any, target: Callable[..., None], *args: Any) -> None:
    """Report this process started (imports done), then run `target`, which waits for `go`."""
    arrived.wait(120)
    target(*args)


def in_threads(n: int, go: Any, body: Callable[[int], dict[str, Any]]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = [{} for _ in range(n)]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            go.wait(60)
            results[i] = body(i)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def claimers(backend: str, where: str, tag: str, threads: int, batch: int, out: str, go: Any) -> None:
    """Threads that claim and settle until nothing is left; each with its own store."""

    def body(i: int) -> dict[str, Any]:
        owner = f"{tag}-{i}"
        storage = open_backend(backend, where)
        claimed: list[str] = []
        settled: list[str] = []
        refused = 0
        try:
            while True:
                got = storage.write_sync(lambda tx: tx.claim(owner, batch, lease=600))
                if not got:
                    if not storage.read(lambda tx: tx.has_claimable()):
                        break
                    continue
                claimed += [s.id for s in got]
                oks = storage.write_sync(lambda tx, got=got: [tx.settle(s.claim, status="done") for s in got])
                settled += [s.id for s, ok in zip(got, oks, strict=True) if ok]
                refused += oks.count(False)
        finally:
            storage.close()
        return {"owner": owner, "claimed": claimed, "settled": settled, "refused": refused}

    Path(out).write_text(json.dumps(in_threads(threads, go, body)))


def deduppers(backend: str, where: str, tag: str, threads: int, keys: int, out: str, go: Any) -> None:
    """Threads that append one signal per key, all processes racing through the same keys."""

    def body(i: int) -> dict[str, Any]:
        storage = open_backend(backend, where)
        seen: dict[str, list[Any]] = {}
        try:
            for k in range(keys):
                entity = Entity("webhooks", "webhooks.race", {"by": f"{tag}-{i}", "k": k})
                got = storage.write_sync(
                    lambda tx, e=entity, k=k: tx.append_signal(
                        e, dedup_key=f"key-{k}", ack={"by": f"{tag}-{i}"}
                    )
                )
                seen[f"key-{k}"] = [got.signal_id, got.duplicate, entity.id]
        finally:
            storage.close()
        return seen

    Path(out).write_text(json.dumps(in_threads(threads, go, body)))


def scheduler(
    backend: str, where: str, owner: str, slots: int, ttl: float, stall_every: int, out: str, go: Any
) -> None:
    """A scheduler that takes the lease when it can, fires the next slots after the cursor, and hands
    the lease over (releases it) after each tick; every `stall_every` ticks it stalls past its lease
    while still believing it leads, so the other takes over and this one's next tick is refused."""
    storage = open_backend(backend, where)
    fired: list[str] = []
    lease_lost = ticks = 0
    last = SCHEDULE_BASE + timedelta(seconds=slots - 1)
    go.wait(60)
    try:
        while True:
            state = storage.read(lambda tx: tx.schedule_state("tick"))
            assert state is not None and state.cursor is not None
            if state.cursor >= last:
                break
            if not storage.write_sync(lambda tx: acquire_lease(tx, owner, ttl, tx.now())):
                time.sleep(0.002)
                continue
            ticks += 1
            if stall_every and ticks % stall_every == 0:
                time.sleep(ttl * 1.5)  # a GC pause, a stopped VM: the lease runs out under us
            nxt = [state.cursor + timedelta(seconds=s) for s in (1, 2, 3)]
            nxt = [s for s in nxt if s <= last]
            firing = Firing("tick", DEFINITION, "UTC", nxt, nxt[-1])

            def tick(tx: Tx, firing: Firing = firing) -> list[str]:
                return [f.signal_id for f in fire(tx, owner, [firing], ttl, tx.now())]

            try:
                fired += storage.write_sync(tick)
            except LeaseLost:
                lease_lost += 1
                continue
            storage.write_sync(lambda tx: tx.lease_release(owner))
    finally:
        storage.close()
    Path(out).write_text(
        json.dumps({"owner": owner, "fired": fired, "lease_lost": lease_lost, "ticks": ticks})
    )


def appenders(
    backend: str, where: str, tag: str, threads: int, batches: int, per_batch: int, out: str, go: Any
) -> None:
    """Threads that journal signals a few per transaction, for the live-feed test."""

    def body(i: int) -> dict[str, Any]:
        storage = open_backend(backend, where)
        ids: list[str] = []
        try:
            for b in range(batches):
                entities = [
                    Entity("webhooks", f"webhooks.{tag}", {"t": i, "b": b, "n": n}) for n in range(per_batch)
                ]
                storage.write_sync(lambda tx, es=entities: [tx.append_signal(e) for e in es])
                ids += [e.id for e in entities]
        finally:
            storage.close()
        return {"ids": ids}

    Path(out).write_text(json.dumps(in_threads(threads, go, body)))


def hold_claims(backend: str, where: str, owner: str, count: int, now: float, lease: float, out: str) -> None:
    """Claim `count` signals, report the claims, then wait to be killed."""
    storage = open_backend(backend, where)
    got = storage.write_sync(lambda tx: tx.claim(owner, count, lease=lease, now=now))
    Path(out).write_text(json.dumps([list(s.claim) for s in got]))
    time.sleep(600)


def migrator(backend: str, where: str, tag: str, out: str, go: Any) -> None:
    """Open (and so migrate) a fresh store together with two other processes, then append once."""
    go.wait(60)
    if backend == "postgres":
        import psycopg

        from router.storage.postgres import schema

        with psycopg.connect(where, autocommit=True) as conn:
            found = schema.migrate(conn)
        version = schema.VERSION
    else:
        import sqlite3

        from router.storage.sqlite import schema as sqlite_schema

        conn = sqlite3.connect(where, isolation_level=None, timeout=30)
        found = sqlite_schema.migrate(conn)
        conn.close()
        version = sqlite_schema.VERSION
    storage = open_backend(backend, where)
    try:
        storage.write_sync(lambda tx: tx.append_signal(Entity("webhooks", f"webhooks.{tag}", {})))
    finally:
        storage.close()
    Path(out).write_text(json.dumps({"found": found, "version": version, "appended": 1}))


def upserters(backend: str, where: str, tag: str, threads: int, keys: int, out: str, go: Any) -> None:
    """Threads that upsert one contact per key, all processes racing through the same keys."""

    def body(i: int) -> dict[str, Any]:
        storage = open_backend(backend, where)
        seen: dict[str, str] = {}
        try:
            for k in range(keys):
                rec = storage.write_sync(
                    lambda tx, k=k: tx.record_upsert(
                        "contact", ["email"], {"email": f"c{k}@x.io", "by": f"{tag}-{i}"}
                    )
                )
                seen[f"c{k}"] = rec["id"]
        finally:
            storage.close()
        return seen

    Path(out).write_text(json.dumps(in_threads(threads, go, body)))


def oncers(backend: str, where: str, tag: str, threads: int, keys: int, out: str, go: Any) -> None:
    """Threads that run the same record steps (`engine.records.once`), as two nodes running one
    signal after a lease takeover would."""
    from engine.records import once

    def body(i: int) -> dict[str, Any]:
        storage = open_backend(backend, where)
        seen: dict[str, str] = {}
        try:
            for k in range(keys):
                step = once(
                    ("01SIGNAL", "wf", f"step{k}"),
                    "note",
                    lambda tx, k=k: tx.record_create("note", {"k": k, "by": f"{tag}-{i}"}),
                )
                rec = storage.write_sync(step)
                seen[f"step{k}"] = rec["id"] if rec else ""
        finally:
            storage.close()
        return seen

    Path(out).write_text(json.dumps(in_threads(threads, go, body)))
