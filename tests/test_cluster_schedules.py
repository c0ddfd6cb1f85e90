"""Issue 13, Must show 3: 100 schedules `every = "1s"` on three nodes for 60 s while the holder of the
scheduler lease is SIGKILLed twice: each slot fires exactly once in the cluster. With
`coalesce = false` and a `misfire_grace` longer than a takeover, the slots missed while the lease
changed hands fire late, once each, so the count per schedule has no gap either."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime

import psycopg
import pytest

from tests import pg
from tests.daemon import RouterProcess

SCHEDULES, SECONDS = 100, 60
CONFIG = "".join(
    f'[schedules.s{i}]\nevery = "1s"\ncoalesce = false\nmisfire_grace = "1h"\n\n' for i in range(SCHEDULES)
)


def holder_pid(dsn: str) -> int | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT owner FROM schedule_lease WHERE id = 1").fetchone()
    return int(row[0].split(":")[1]) if row else None


def fired(dsn: str) -> list[tuple[str, str]]:
    with psycopg.connect(dsn) as conn:
        return [
            (r[0], r[1])
            for r in conn.execute(
                "SELECT source, entity->'__schedule'->>'scheduled_for' FROM signals WHERE source LIKE 'schedules.%'"
            )
        ]


@pytest.mark.slow
def test_each_slot_fires_once_across_three_nodes_while_the_lease_holder_is_killed(
    router_factory: Callable[..., RouterProcess], pg_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = pg.url(pg_database)
    nodes = [router_factory(CONFIG, start=False, database_url=url) for _ in range(3)]
    for n in nodes:
        n.start(wait=False)
    for n in nodes:
        n.wait_ready(60)
    started = time.monotonic()
    killed: list[int] = []
    for at in (SECONDS / 3, 2 * SECONDS / 3):
        while time.monotonic() - started < at:
            time.sleep(0.2)
        pid = nodes[0].wait_for(lambda: holder_pid(pg_database), timeout=30)
        [victim] = [i for i, n in enumerate(nodes) if n.proc is not None and n.proc.pid == pid]
        nodes[victim].kill()  # the scheduler lease holder, mid-tick
        killed.append(victim)
        nodes[victim].start()
    while time.monotonic() - started < SECONDS:
        time.sleep(0.2)
    for n in nodes:
        n.stop()
    rows = fired(pg_database)
    per_slot = Counter(rows)
    duplicates = sum(c - 1 for c in per_slot.values())
    by_schedule: dict[str, list[float]] = defaultdict(list)
    for source, slot in per_slot:
        by_schedule[source].append(datetime.fromisoformat(slot).timestamp())
    gaps = 0
    for slots in by_schedule.values():
        slots.sort()
        gaps += sum(round(b - a) - 1 for a, b in zip(slots, slots[1:], strict=False))
    per_schedule = sorted(len(s) for s in by_schedule.values())
    with capsys.disabled():
        print(
            f"\ncluster schedules: {SCHEDULES} x every 1s on 3 nodes for {SECONDS}s, lease holder SIGKILLed "
            f"twice (nodes {killed}): signals {len(rows)}, slots {len(per_slot)}, duplicates {duplicates}, "
            f"missing slots between first and last {gaps}, slots per schedule {per_schedule[0]}..{per_schedule[-1]}",
            flush=True,
        )
    assert len(by_schedule) == SCHEDULES
    assert duplicates == 0 and gaps == 0
    assert per_schedule[0] >= SECONDS - 10
