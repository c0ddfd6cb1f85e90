"""The scheduler in-process with a simulated clock (trio's MockClock): the tick transaction, the
lease, restarts, reloads and activation. Hours pass in milliseconds."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio
import trio.testing

from config import Config, ScheduleConfig
from router import sources
from router.schedules import scheduler as schedules
from router.schedules.scheduler import Firing, LeaseLost, Scheduler
from router.storage import Tx
from router.storage.sqlite import schema
from router.storage.sqlite.tx import SqliteTx
from router.storage.sqlite.writer import connect

T = TypeVar("T")
BASE = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC).timestamp()


class InlineStorage:
    """`Storage`'s interface, run inline (no writer thread) so a MockClock stays deterministic."""

    def __init__(self, path: Path) -> None:
        self.conn = connect(path, synchronous="OFF")
        schema.migrate(self.conn)
        self.tx = SqliteTx(self.conn)

    def write_sync(self, fn: Callable[[SqliteTx], T]) -> T:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(self.tx)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        return result

    async def write(self, fn: Callable[[SqliteTx], T]) -> T:
        await trio.lowlevel.checkpoint()
        return self.write_sync(fn)

    def read(self, fn: Callable[[SqliteTx], T]) -> T:
        return fn(self.tx)

    async def aread(self, fn: Callable[[SqliteTx], T]) -> T:
        return fn(self.tx)


@pytest.fixture
def store(tmp_path: Path) -> InlineStorage:
    return InlineStorage(tmp_path / "router.db")


def cfg(**schedules_: dict[str, Any]) -> Config:
    config = Config(schedules={name: ScheduleConfig(**kw) for name, kw in schedules_.items()})
    return config


def ticks(store: InlineStorage, name: str | None = None) -> list[dict[str, Any]]:
    rows = store.read(
        lambda c: c.conn.execute(
            "SELECT source, entity, dedup_key FROM signals WHERE channel = 'schedules' ORDER BY id"
        ).fetchall()
    )
    out = [
        {**json.loads(r["entity"])["__schedule"], "dedup_key": r["dedup_key"], "source": r["source"]}
        for r in rows
    ]
    return [t for t in out if name is None or t["name"] == name]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- the tick transaction and the lease ---------------------------------------------------------------


def _firing(model: ScheduleConfig, name: str, at: float) -> Firing:
    slot = datetime.fromtimestamp(at, UTC)
    return Firing(name, schedules.definition(model), model.timezone, [slot], slot)


def test_a_slot_is_journaled_once_even_if_fired_twice(store: InlineStorage) -> None:
    model = ScheduleConfig(every="1s")
    store.write_sync(lambda c: schedules.register(c, [("a", schedules.definition(model), False)], BASE))
    store.write_sync(lambda c: schedules.acquire_lease(c, "me", 15, BASE))
    first = store.write_sync(lambda c: schedules.fire(c, "me", [_firing(model, "a", BASE + 1)], 15, BASE + 1))
    again = store.write_sync(
        lambda c: schedules.fire(c, "me", [_firing(model, "a", BASE + 1)], 15, BASE + 1.5)
    )
    assert len(first) == 1 and again == []
    # Even with the cursor rewound (a stale process), the slot table refuses a second claim.
    store.write_sync(lambda c: c.conn.execute("UPDATE schedule_state SET cursor_ts = ?", (BASE,)))
    assert (
        store.write_sync(lambda c: schedules.fire(c, "me", [_firing(model, "a", BASE + 1)], 15, BASE + 2))
        == []
    )
    [tick] = ticks(store)
    assert tick["dedup_key"] == "a@2026-06-01T12:00:01Z"
    assert tick["scheduled_for"] == "2026-06-01T12:00:01+00:00"
    assert tick["fired_at"] == "2026-06-01T12:00:01+00:00"
    assert tick["source"] == "schedules.a"


def test_a_tick_without_the_lease_writes_nothing(store: InlineStorage) -> None:
    model = ScheduleConfig(every="1s")
    store.write_sync(lambda c: schedules.register(c, [("a", schedules.definition(model), False)], BASE))
    store.write_sync(lambda c: schedules.acquire_lease(c, "other", 15, BASE))
    with pytest.raises(LeaseLost):
        store.write_sync(lambda c: schedules.fire(c, "me", [_firing(model, "a", BASE + 1)], 15, BASE + 1))
    assert ticks(store) == []
    assert store.read(lambda c: c.conn.execute("SELECT count(*) FROM schedule_slots").fetchone()[0]) == 0


def test_lease_is_exclusive_until_expiry_or_death(store: InlineStorage) -> None:
    import socket

    host = socket.gethostname()
    alive = f"{host}:{subprocess.os.getppid()}:1"  # type: ignore[attr-defined]
    assert store.write_sync(lambda c: schedules.acquire_lease(c, alive, 15, BASE))
    assert not store.write_sync(lambda c: schedules.acquire_lease(c, "me", 15, BASE + 5))
    assert store.write_sync(lambda c: schedules.acquire_lease(c, "me", 15, BASE + 16))  # expired
    # A holder that is a dead process of this host is replaced at once.
    dead = f"{host}:{dead_pid()}:1"
    store.write_sync(
        lambda c: c.conn.execute("UPDATE schedule_lease SET owner = ?, lease_until = ?", (dead, BASE + 100))
    )
    assert store.write_sync(lambda c: schedules.acquire_lease(c, "me", 15, BASE + 20))
    # ... but not one on another host.
    store.write_sync(
        lambda c: c.conn.execute(
            "UPDATE schedule_lease SET owner = 'elsewhere:1:1', lease_until = ?", (BASE + 100,)
        )
    )
    assert not store.write_sync(lambda c: schedules.acquire_lease(c, "me", 15, BASE + 21))


# -- the scheduler loop under a simulated clock --------------------------------------------------------


class Sim:
    def __init__(self, store: InlineStorage, config: Config) -> None:
        self.store = store
        self.config = config
        self.pokes = 0

    def scheduler(self, owner: str = "sim:1:1") -> Scheduler:
        def poke() -> None:
            self.pokes += 1

        return Scheduler(
            self.store,
            lambda: self.config,
            poke,
            owner=owner,  # type: ignore[arg-type]
            clock=lambda: BASE + trio.current_time(),
        )

    async def run_for(self, seconds: float, owner: str = "sim:1:1") -> Scheduler:
        s = self.scheduler(owner)
        async with trio.open_nursery() as nursery:
            await nursery.start(s.run)
            await trio.sleep(seconds)
            nursery.cancel_scope.cancel()
        return s


async def test_many_schedules_fire_on_time_and_once(
    store: InlineStorage, autojump_clock: trio.testing.MockClock
) -> None:
    sim = Sim(
        store,
        cfg(
            sec={"every": "1s"},
            five={"cron": "*/5 * * * *", "timezone": "Europe/Tirane"},
            once={"at": datetime.fromtimestamp(BASE + 90.5, UTC).isoformat()},
            off={"every": "1s", "active": False},
        ),
    )
    s = await sim.run_for(15 * 60 + 0.5)
    sec = ticks(store, "sec")
    assert len(sec) == 900
    assert len({t["scheduled_for"] for t in sec}) == 900
    assert all(t["fired_at"] == t["scheduled_for"] for t in sec)  # the simulated clock is never late
    assert [t["scheduled_for"] for t in ticks(store, "five")] == [
        "2026-06-01T14:05:00+02:00",
        "2026-06-01T14:10:00+02:00",
        "2026-06-01T14:15:00+02:00",
    ]
    assert [t["scheduled_for"] for t in ticks(store, "once")] == ["2026-06-01T12:01:30.500+00:00"]
    assert ticks(store, "off") == []
    assert s.fired == 904 and sim.pokes > 0


async def test_restart_fires_missed_slot_once_within_grace(
    store: InlineStorage, autojump_clock: trio.testing.MockClock
) -> None:
    sim = Sim(
        store,
        cfg(
            minute={"cron": "* * * * *", "misfire_grace": "30s"},
            hourly={"cron": "0 * * * *", "misfire_grace": "30s"},
            tight={"every": "10s", "misfire_grace": "15s", "coalesce": False},
        ),
    )
    await sim.run_for(59)  # up to 12:00:59 - nothing of "minute" yet, "tight" five times
    assert len(ticks(store, "tight")) == 5 and ticks(store, "minute") == []
    await trio.sleep(20)  # down from 12:00:59 to 12:01:19: the 12:01 slot is 19 s late
    await sim.run_for(0.5, owner="sim:2:2")
    assert [t["scheduled_for"] for t in ticks(store, "minute")] == ["2026-06-01T12:01:00+00:00"]
    # tight: 12:01:00 and 12:01:10 are due; 12:01:00 is 19.5 s late > 15 s: skipped; 12:01:10 fires
    assert [t["scheduled_for"][11:19] for t in ticks(store, "tight")][-2:] == ["12:00:50", "12:01:10"]
    # Down for two hours: the minute slots are far too old, only what is due within grace fires.
    await trio.sleep(2 * 3600)
    await sim.run_for(0.5, owner="sim:3:3")
    minute = [t["scheduled_for"] for t in ticks(store, "minute")]
    assert minute == ["2026-06-01T12:01:00+00:00", "2026-06-01T14:01:00+00:00"]  # 19.5 s late: fires
    assert [t["scheduled_for"] for t in ticks(store, "hourly")] == []  # 14:00 is 79.5 s late > 30 s: skipped


async def test_restart_without_release_after_crash_takes_over(
    store: InlineStorage, autojump_clock: trio.testing.MockClock
) -> None:
    import socket

    sim = Sim(store, cfg(sec={"every": "1s", "misfire_grace": "5s"}))
    crashed = f"{socket.gethostname()}:{dead_pid()}:1"
    await sim.run_for(10.5, owner=crashed)
    # Simulate SIGKILL: the lease row is still there, held by the dead process.
    store.write_sync(lambda c: schedules.acquire_lease(c, crashed, 15, BASE + trio.current_time()))
    await trio.sleep(3)
    await sim.run_for(2.2, owner="sim:9:9")
    got = [t["scheduled_for"][11:19] for t in ticks(store, "sec")]
    assert len(got) == len(set(got))
    # 12:00:01-10 by the first; 12:00:11-13 were missed while down: coalesced into 12:00:13; then 14, 15
    assert got == [f"12:00:{i:02d}" for i in range(1, 11)] + ["12:00:13", "12:00:14", "12:00:15"]


async def test_reload_and_deactivate_apply_without_restart(
    store: InlineStorage, autojump_clock: trio.testing.MockClock
) -> None:
    sim = Sim(store, cfg(a={"every": "1s"}))
    s = sim.scheduler()
    async with trio.open_nursery() as nursery:
        await nursery.start(s.run)
        await trio.sleep(5.5)
        sim.config = cfg(a={"every": "1s"}, b={"every": "2s"})  # SIGHUP adds b
        await trio.sleep(10)
        sim.config = cfg(b={"every": "2s"})  # ... and removes a
        await trio.sleep(10)
        store.write_sync(lambda c: sources.ensure_sources(c, sim.config))
        store.write_sync(
            lambda c: c.source_set_active("schedules", "b", False)
        )  # router endpoints deactivate b
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    a, b = ticks(store, "a"), ticks(store, "b")
    assert 14 <= len(a) <= 16
    assert 8 <= len(b) <= 11
    last_b = datetime.fromisoformat(b[-1]["scheduled_for"]).timestamp() - BASE
    assert last_b <= 25


async def test_changed_definition_starts_afresh(
    store: InlineStorage, autojump_clock: trio.testing.MockClock
) -> None:
    sim = Sim(store, cfg(a={"every": "10s", "misfire_grace": "1h", "coalesce": False}))
    await sim.run_for(30.5)
    assert len(ticks(store, "a")) == 3
    await trio.sleep(60)
    sim.config = cfg(a={"every": "7s", "misfire_grace": "1h", "coalesce": False})
    await sim.run_for(1)
    # No back-fill of the new definition's slots from before the change.
    assert len(ticks(store, "a")) == 3


async def test_shutdown_with_a_write_queued_does_not_hang(tmp_path: Path) -> None:
    """A tick or lease renewal queued while the writer is busy when the daemon stops: the writer is
    cancelled, and the queued job must fail (StorageUnavailable), not leave its caller waiting."""
    import time as _time

    from router.storage import StorageUnavailable, open_storage

    storage = open_storage(tmp_path / "x.db")
    results: list[str] = []

    async def writer(fn: Callable[[Tx], str]) -> None:
        try:
            results.append(await storage.write(fn))
        except StorageUnavailable:
            results.append("unavailable")

    async with trio.open_nursery() as nursery:
        await nursery.start(storage.run_writer)
        nursery.start_soon(writer, lambda c: _time.sleep(0.3) or "slow")
        await trio.sleep(0.05)
        nursery.start_soon(writer, lambda c: "queued")
        await trio.sleep(0.05)
        storage.stop_writer()
        nursery.cancel_scope.cancel()
    storage.close()
    assert results == ["slow", "unavailable"]


async def test_jitter_delays_the_firing_not_the_slot(
    store: InlineStorage, autojump_clock: trio.testing.MockClock
) -> None:
    sim = Sim(store, cfg(j={"every": "10s", "jitter": "3s"}))
    await sim.run_for(203.5)
    got = ticks(store, "j")
    assert len(got) == 20
    delays = [
        datetime.fromisoformat(t["fired_at"]).timestamp()
        - datetime.fromisoformat(t["scheduled_for"]).timestamp()
        for t in got
    ]
    assert all(0 <= d <= 3.001 for d in delays) and len({round(d, 2) for d in delays}) > 5
    slots = [datetime.fromisoformat(t["scheduled_for"]).timestamp() - BASE for t in got]
    assert slots == [10.0 * i for i in range(1, 21)]  # the slots stay on the grid
