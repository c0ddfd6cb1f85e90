"""Issue 13, Must show 2: three router nodes on one PostgreSQL under HTTP, SMTP and Twilio load
with repeated Idempotency-Keys spread across them; a random node is SIGKILLed and restarted, 10
times. Afterwards every acknowledged signal is journaled and ran once, each record step wrote once,
each key has one signal. Counts are printed (CI's output)."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests import pg
from tests.daemon import RouterProcess
from tests.fault_load import MIXED, SOURCES, Acked, MixedLoad, check, reruns

NODES, CYCLES = 3, 10


def fetch(dsn: str, sources: tuple[str, ...] = SOURCES) -> tuple[list[Any], Counter[str], list[Any]]:
    """The audit's rows, straight from the shared database."""
    with psycopg.connect(dsn) as conn:
        signals = conn.execute(
            "SELECT id, source, status, dedup_key, entity::text FROM signals_v WHERE source = ANY(%s)",
            (list(sources),),
        ).fetchall()
        done = Counter(r[0] for r in conn.execute("SELECT signal_id FROM runs WHERE status = 'done'"))
        records = conn.execute(
            "SELECT fields->>'sid', fields->>'source', fields->>'n', fields->>'key'"
            " FROM records WHERE type = 'effect'"
        ).fetchall()
    return signals, done, records


def unsettled(dsn: str, sources: tuple[str, ...] = SOURCES) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM signals_v WHERE source = ANY(%s) AND status <> 'done'", (list(sources),)
        ).fetchone()
    return int(row[0]) if row else -1


def node(router_factory: Callable[..., RouterProcess], url: str) -> RouterProcess:
    proc = router_factory(MIXED, start=False, database_url=url)
    # A killed node's claims expire after 1 s; debug logs count the runs started over.
    proc.config_path.write_text(
        proc.config_path.read_text().replace('lease = "3s"', 'lease = "1s"\nlog_level = "debug"')
    )
    return proc


@pytest.mark.slow
def test_three_nodes_with_random_sigkills_lose_nothing_and_run_once(
    router_factory: Callable[..., RouterProcess], pg_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = pg.url(pg_database)
    nodes = [node(router_factory, url) for _ in range(NODES)]
    for n in nodes:
        n.start(wait=False)  # all at once: three nodes migrating one empty database
    for n in nodes:
        n.wait_ready(60)
    urls = [
        {s: str(i["url"]) for s, i in n.sources().items() if s in SOURCES and s.startswith("endpoints.")}
        for n in nodes
    ]
    paths = [{s: u.split("/", 3)[3] for s, u in u_.items()} for u_ in urls]
    assert paths[0] == paths[1] == paths[2]  # one sources table: the same URL (and key) on every node
    acked = Acked()
    rng = random.Random(13)
    kills: Counter[int] = Counter()
    started = time.monotonic()
    for cycle in range(CYCLES):
        before = {s: acked.count(s) for s in SOURCES}
        loads = [
            MixedLoad(n.base, n.smtp_port, urls[i], cycle, acked, tag=f"n{i}").start(
                http_async=2, http_sync=1, smtp=1, sms=1
            )
            for i, n in enumerate(nodes)
        ]
        t0 = time.monotonic()

        def busy(before: dict[str, int] = before, t0: float = t0) -> bool:
            return time.monotonic() - t0 > 0.8 and all(acked.count(s) > before[s] + 3 for s in SOURCES)

        nodes[0].wait_for(busy, timeout=30, interval=0.02)
        victim = rng.randrange(NODES)
        kills[victim] += 1
        nodes[victim].kill()  # SIGKILL while the other two keep taking load
        time.sleep(0.3)
        nodes[victim].start()
        for load in loads:
            load.stop()
    nodes[0].wait_for(lambda: unsettled(pg_database) == 0, timeout=90, interval=0.2)
    signals, done, records = fetch(pg_database)
    report = check(signals, done, records, acked)
    per_key = Counter((s[1], s[3]) for s in signals if s[3] and s[1].startswith("endpoints."))
    duplicates = sum(c - 1 for c in per_key.values())
    again = sum(reruns(n.log()) for n in nodes)
    with capsys.disabled():
        print(
            f"\ncluster: {NODES} nodes, {CYCLES} SIGKILLs (per node {dict(sorted(kills.items()))}) in "
            f"{time.monotonic() - started:.0f}s: acked={report['acked']} {report['acked_by_source']} "
            f"journaled={report['journaled']} (journaled, never acked: {report['journaled_unacked']}) "
            f"signals per idempotency key beyond the first={duplicates} effect records={report['records']} "
            f"runs logged twice by one node={again} keys acked={report['keys_acked']} "
            f"keys with their one record={report['keys_with_record']} problems={len(report['problems'])}",
            flush=True,
        )
    assert not report["problems"], "\n".join(report["problems"])
    assert report["records"] == report["journaled"] >= report["acked"] and duplicates == 0
