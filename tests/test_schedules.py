"""Issue 6, schedules, against the real daemon: ticks run workflows; kill -9 never makes a slot
fire twice; a slot missed by less than misfire_grace fires once on start, an older one is skipped."""

from __future__ import annotations

import json
import math
import random
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

TICK = """
[schedules.tick]
every = "1s"
{extra}

[[workflows]]
name = "on-tick"
listen = "schedules.tick"

[[workflows.steps]]
action = "create_record"
record_type = "tick"
fields = {{ name = "{{{{ __data.__schedule.name }}}}", scheduled_for = "{{{{ __data.__schedule.scheduled_for }}}}", fired_at = "{{{{ __data.__schedule.fired_at }}}}" }}
"""


def records(router, record_type: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return router.read(lambda tx: tx.record_find(record_type, limit=None), [])  # type: ignore[no-any-return]


def ticks(router, source: str = "schedules.tick") -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    rows = router.read(lambda tx: tx.list_signals(source=source, limit=100_000), [])
    return [s.entity.data["__schedule"] for s in sorted(rows, key=lambda s: s.id)]


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


@pytest.mark.usefixtures("any_backend")  # SQLite and PostgreSQL
def test_every_second_runs_its_workflow_with_schedule_fields(router_factory) -> None:  # type: ignore[no-untyped-def]
    router = router_factory(TICK.format(extra=""))
    rows = router.wait_for(
        lambda: (r := records(router, "tick")) and len(r) >= 4 and r, timeout=15, interval=0.5
    )
    router.stop()
    rows = sorted(
        json.loads(router.cli("records", "list", "--json", "tick", "--limit", "1000").stdout),
        key=lambda r: r["scheduled_for"],
    )
    assert {r["name"] for r in rows} == {"tick"}
    slots = [ts(r["scheduled_for"]) for r in rows]
    assert all(s == int(s) for s in slots), "every = 1s slots are whole seconds"
    assert [b - a for a, b in zip(slots, slots[1:], strict=False)] == [1.0] * (len(slots) - 1)
    for r in rows:
        late = ts(r["fired_at"]) - ts(r["scheduled_for"])
        assert 0 <= late < 1.0, r
    # `router schedules` shows what ran last and what comes next.
    [item] = json.loads(router.cli("schedules", "--json").stdout)
    assert item["name"] == "tick" and item["kind"] == "every" and item["active"]
    assert len(item["next"]) == 3 and item["last_slot"] == rows[-1]["scheduled_for"]


@pytest.mark.usefixtures("any_backend")
def test_kill9_around_fire_times_never_fires_a_slot_twice(router_factory) -> None:  # type: ignore[no-untyped-def]
    # coalesce = false and a long grace: every slot missed while down is fired on restart, which is
    # where a double fire would show. The journal must hold each slot exactly once, with no gaps.
    router = router_factory(TICK.format(extra='misfire_grace = "1h"\ncoalesce = false'), start=False)
    rng = random.Random(6)
    for _ in range(3):
        router.start()
        time.sleep(rng.uniform(0.5, 1.5))
        target = math.ceil(time.time()) + rng.choice([-0.01, 0.0, 0.002, 0.005, 0.02])
        time.sleep(max(0.0, target - time.time()))
        router.kill()
        time.sleep(rng.uniform(0.0, 1.2))
    router.start()
    up = time.time()
    # Caught up: the slots missed while down fired, and a slot after the restart too.
    router.wait_for(lambda: any(ts(t["scheduled_for"]) > up for t in ticks(router)), timeout=20)
    router.stop()
    slots = sorted(ts(t["scheduled_for"]) for t in ticks(router))
    assert len(slots) == len(set(slots)), "a slot fired twice"
    assert slots == [slots[0] + i for i in range(len(slots))], "a slot was lost"
    assert len(slots) >= 6


def _at(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0).isoformat()


@pytest.mark.usefixtures("any_backend")
def test_missed_slot_fires_once_on_start_within_grace_older_is_skipped(router_factory) -> None:  # type: ignore[no-untyped-def]
    body = """
    [schedules.recent]
    at = "{recent}"
    misfire_grace = "30s"

    [schedules.stale]
    at = "{stale}"
    misfire_grace = "1s"

    [schedules.fresh]
    at = "{fresh}"
    """
    # "fresh" was due before the daemon ever started (a run date in the past, within grace): it fires.
    # 20 s ahead: room for a start and a first tick on a loaded machine (8 s was not, at load 14).
    due = _at(20)
    router = router_factory(body.format(recent=due, stale=due, fresh=_at(-5)))
    router.wait_for(lambda: ticks(router, "schedules.fresh"), timeout=15)
    router.kill()  # down across the run date of "recent" and "stale"
    assert time.time() < ts(due), "the daemon took too long to start"
    time.sleep(ts(due) + 2.5 - time.time())  # restart 2.5 s late: within 30 s, beyond 1 s
    router.start()
    router.wait_for(lambda: ticks(router, "schedules.recent"), timeout=10)
    router.wait_for(lambda: "missed" in router.log() and "name=stale" in router.log(), timeout=5)
    router.stop()
    router.start()  # and once more: nothing fires again
    time.sleep(1.5)  # a window in which nothing may happen (not a wait for something)
    router.stop()
    assert len(ticks(router, "schedules.recent")) == 1
    assert len(ticks(router, "schedules.fresh")) == 1
    assert ticks(router, "schedules.stale") == []
    [recent] = ticks(router, "schedules.recent")
    assert ts(recent["fired_at"]) - ts(recent["scheduled_for"]) > 2  # it ran late, on start
    items = {i["name"]: i for i in json.loads(router.cli("schedules", "--json").stdout)}
    assert items["recent"]["next"] == [] and items["recent"]["last_slot"] == recent["scheduled_for"]


def test_sighup_adds_and_removes_schedules(router_factory) -> None:  # type: ignore[no-untyped-def]
    router = router_factory('[schedules.a]\nevery = "1s"\n')
    router.wait_for(lambda: ticks(router, "schedules.a"), timeout=10)
    router.write_config('[schedules.b]\nevery = "1s"\n')
    router.signal(signal.SIGHUP)
    router.wait_for(lambda: len(ticks(router, "schedules.b")) >= 2, timeout=10)
    stopped = len(ticks(router, "schedules.a"))
    time.sleep(1.5)  # a window in which `a` (every 1 s) would have ticked
    assert len(ticks(router, "schedules.a")) == stopped
    # Deactivated from the CLI: no more ticks, without a restart.
    router.cli("endpoints", "deactivate", "b")
    router.wait_for(
        lambda: any(
            "schedule stopped" in line and "name=b" in line.split() for line in router.log().splitlines()
        ),
        timeout=10,
    )
    count = len(ticks(router, "schedules.b"))
    time.sleep(1.5)  # a window in which `b` would have ticked
    assert len(ticks(router, "schedules.b")) == count
    assert router.stop() == 0


def test_router_schedules_lists_next_fire_times(router_factory) -> None:  # type: ignore[no-untyped-def]
    router = router_factory(
        """
    [schedules.nightly]
    cron = "30 2 * * *"
    timezone = "Europe/Tirane"

    [schedules.later]
    at = "2099-12-01T09:00:00+01:00"
    """,
        start=False,
    )
    items = {i["name"]: i for i in json.loads(router.cli("schedules", "--json").stdout)}
    nightly = items["nightly"]
    assert nightly["kind"] == "cron" and nightly["timezone"] == "Europe/Tirane"
    assert len(nightly["next"]) == 3
    assert all("T02:30:00+0" in n or "T03:30:00+02:00" in n for n in nightly["next"])
    assert [ts(n) for n in nightly["next"]] == sorted(ts(n) for n in nightly["next"])
    assert items["later"]["next"] == ["2099-12-01T08:00:00+00:00"]
    text = router.cli("schedules").stdout
    assert "nightly" in text and 'cron "30 2 * * *"' in text


def test_two_daemons_on_one_data_dir_fire_each_slot_once_and_fail_over(router_factory) -> None:  # type: ignore[no-untyped-def]
    body = '[schedules.tick]\nevery = "1s"\nmisfire_grace = "1h"\ncoalesce = false\n'
    first = router_factory(body)
    second = router_factory(body, start=False)
    second.data_dir = first.data_dir  # the same journal, as [http] workers or two nodes would share
    second.write_config(body)
    second.start()
    # Slots fire while both are up: the first drives, the second stands by.
    seen = len(ticks(first))
    first.wait_for(lambda: len(ticks(first)) >= seen + 2, timeout=15)
    assert "scheduler driving schedules" in first.log()
    assert "scheduler driving schedules" not in second.log()  # standing by: the lease is held
    first.kill()
    before = len(ticks(first))
    second.wait_for(lambda: len(ticks(second)) >= before + 3, timeout=15)
    assert "scheduler lease taken over" in second.log()
    second.stop()
    slots = sorted(ts(t["scheduled_for"]) for t in ticks(second))
    assert len(slots) == len(set(slots)), "a slot fired twice"
    assert slots == [slots[0] + i for i in range(len(slots))], "a slot was lost in the failover"
