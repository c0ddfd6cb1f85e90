"""Issue 13, Must show 4: PostgreSQL restarted with `pg_ctl restart -m immediate` under load. While
it is away requests get 503 + Retry-After (none hangs past its timeout), no acknowledged signal is
lost, and the nodes serve again without being restarted."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import httpx
import psycopg
import pytest

from tests import pg
from tests.daemon import RouterProcess

CONFIG = """
[endpoints.load]
return_type = "data"
return_data = '{"n": "{{ __data.n }}"}'

[[workflows]]
name = "effect"
listen = "endpoints.load"

[[workflows.steps]]
action = "create_record"
record_type = "effect"
fields = { sid = "{{ __data.__signal_id }}", n = "{{ __data.n }}" }
"""
TIMEOUT = 30.0


def test_postgres_restarted_under_load(
    router_factory: Callable[..., RouterProcess], pg_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if not pg.can_restart():
        pytest.fail("no control over the test PostgreSQL server (tests/pg.py restart)")
    url = pg.url(pg_database)
    nodes = [router_factory(CONFIG, database_url=url) for _ in range(2)]
    targets = [n.url("endpoints.load") for n in nodes]
    acked: set[str] = set()
    statuses: Counter[int] = Counter()
    no_retry_after = 0
    slowest = 0.0
    lock = threading.Lock()
    stop = threading.Event()
    phase = {"name": "before"}
    after_ok = Counter[str]()

    def client(i: int) -> None:
        nonlocal no_retry_after, slowest
        with httpx.Client(timeout=TIMEOUT) as http:
            k = 0
            while not stop.is_set():
                k += 1
                n = f"t{i}-{k}"
                t0 = time.monotonic()
                try:
                    r = http.post(targets[i % len(targets)], json={"n": n})
                except httpx.TimeoutException:
                    with lock:
                        statuses[-1] += 1  # hung past its timeout
                    continue
                except httpx.HTTPError:
                    with lock:
                        statuses[0] += 1  # connection refused/reset: never happens (the node stays up)
                    time.sleep(0.05)
                    continue
                with lock:
                    slowest = max(slowest, time.monotonic() - t0)
                    statuses[r.status_code] += 1
                    if r.status_code == 200:
                        acked.add(n)
                        after_ok[phase["name"]] += 1
                    elif r.status_code == 503 and not r.headers.get("retry-after"):
                        no_retry_after += 1
                if r.status_code == 503:
                    time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(6)]
    for t in threads:
        t.start()
    try:
        nodes[0].wait_for(lambda: after_ok["before"] > 100, timeout=30, interval=0.05)
        phase["name"] = "outage"
        t0 = time.monotonic()
        pg.restart("immediate")
        outage = time.monotonic() - t0
        phase["name"] = "after"
        nodes[0].wait_for(lambda: after_ok["after"] > 100, timeout=60, interval=0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(TIMEOUT + 10)
    for n in nodes:
        assert n.proc is not None and n.proc.poll() is None, "a node died with the database"

    def journaled() -> tuple[set[str], int, int]:
        with psycopg.connect(pg_database) as conn:
            names = {r[0] for r in conn.execute("SELECT entity->>'n' FROM signals")}
            open_ = conn.execute("SELECT count(*) FROM claims").fetchone()[0]  # type: ignore[index]
            effects = conn.execute("SELECT count(*) FROM records WHERE type = 'effect'").fetchone()[0]  # type: ignore[index]
        return names, int(open_), int(effects)

    nodes[0].wait_for(lambda: journaled()[1] == 0, timeout=60, interval=0.2)
    names, _, effects = journaled()
    lost = acked - names
    with capsys.disabled():
        print(
            f"\npg restart -m immediate under load (2 nodes, 6 clients): restart took {outage:.1f}s; answers "
            f"{dict(sorted(statuses.items()))} (0 = connection error, -1 = timed out); 503 without Retry-After "
            f"{no_retry_after}; slowest answer {slowest:.1f}s; acked {len(acked)}, journaled {len(names)}, "
            f"lost {len(lost)}; effect records {effects}; ok before/during/after {dict(after_ok)}",
            flush=True,
        )
    assert not lost
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[503] > 0, "the restart was not noticed: nothing to show"
    assert no_retry_after == 0 and slowest < TIMEOUT
    assert effects == len(names)
