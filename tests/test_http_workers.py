"""`[http] workers = 2`: two processes on one port share the journal; every acknowledged signal is
processed exactly once (SPEC §10's sharing contract: claims, not in-memory hand-offs)."""

from __future__ import annotations

import os
import re
import sqlite3
import threading
from collections import Counter
from pathlib import Path

import httpx

CONFIG = """
[webhooks.ingest]

[[workflows]]
name = "count"
listen = "webhooks.ingest"

[[workflows.steps]]
action = "create_record"
record_type = "hit"
fields = { n = "{{ __data.n }}" }
"""


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_two_workers_process_each_acknowledged_signal_once(router_factory) -> None:  # type: ignore[no-untyped-def]
    router = router_factory(CONFIG, workers=2)
    url = router.url("webhooks.ingest")
    found = router.wait_for(
        lambda: re.search(r'msg="child started" worker=1 pid=(\d+)', router.log()), timeout=10
    )
    pids = [router.proc.pid, int(found.group(1))]
    router.wait_for(lambda: router.log().count("msg=ready") >= 3, timeout=20)  # main, worker, runner
    cpu_before = [_cpu_seconds(p) for p in pids]
    acked: dict[str, int] = {}
    lock = threading.Lock()

    def post(client_no: int) -> None:
        # A fresh connection per request, so the kernel spreads them over both listeners.
        for i in range(25):
            n = client_no * 100 + i
            r = httpx.post(url, json={"n": n}, timeout=10)
            if r.status_code == 200:
                with lock:
                    acked[r.json()["signal_id"]] = n

    threads = [threading.Thread(target=post, args=(c,)) for c in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpu_used = [_cpu_seconds(p) - b for p, b in zip(pids, cpu_before, strict=True)]
    assert len(acked) == 200, f"only {len(acked)} of 200 acknowledged"

    db = router.data_dir / "router.db"

    def query(sql: str) -> list[tuple]:  # type: ignore[type-arg]
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    def all_done() -> bool:
        rows = query("SELECT id FROM signals WHERE source = 'webhooks.ingest' AND status = 'done'")
        return {r[0] for r in rows} >= set(acked)

    router.wait_for(all_done, timeout=30)
    runs = query("SELECT signal_id, workflow, status, attempt FROM runs")
    per_signal = Counter(r[0] for r in runs)
    assert set(per_signal) == set(acked)
    assert all(count == 1 for count in per_signal.values()), [s for s, c in per_signal.items() if c > 1]
    assert {(r[1], r[2], r[3]) for r in runs} == {("count", "done", 1)}
    hits = [int(r[0]) for r in query("SELECT n FROM record_hit")]
    assert sorted(hits) == sorted(acked.values())  # each stored once, none lost
    # Both processes served (SO_REUSEPORT spreads 200 fresh connections over both listeners): each
    # did a real share of the work, far above what an idle process spends polling.
    share = [used / sum(cpu_used) for used in cpu_used]
    assert min(share) > 0.15, (cpu_used, share)


def test_a_listener_runs_pending_work_when_the_runners_lag(router_factory) -> None:  # type: ignore[no-untyped-def]
    """The runner is stopped (SIGSTOP: alive, taking nothing): past the help threshold the
    listening process claims the backlog and runs it itself, each signal still run once."""
    import signal

    from router.dispatch.dispatcher import HELP_BACKLOG
    from tests.daemon import descendants

    threshold = HELP_BACKLOG
    router = router_factory(CONFIG, router_extra="runners = 1")
    url = router.url("webhooks.ingest")
    router.wait_for(lambda: router.log().count("msg=ready") >= 2, timeout=20)  # main, runner
    runner = next(
        p
        for p in descendants(router.proc.pid)
        if Path(f"/proc/{p}/comm").read_text().strip() == "router-run-1"
    )
    db = router.data_dir / "router.db"

    def count(status: str) -> int:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return int(conn.execute("SELECT count(*) FROM signals WHERE status = ?", (status,)).fetchone()[0])
        finally:
            conn.close()

    os.kill(runner, signal.SIGSTOP)
    total = threshold + 200
    try:
        with httpx.Client(timeout=10) as client:
            for n in range(total):
                assert client.post(url, json={"n": n}).status_code == 200
        # Below the threshold the runners' work is left to them; above it the listener takes it.
        router.wait_for(
            lambda: count("pending") <= threshold and count("done") >= total - threshold, timeout=30
        )
    finally:
        os.kill(runner, signal.SIGCONT)
    router.wait_for(lambda: count("done") == total, timeout=30)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        runs = Counter(r[0] for r in conn.execute("SELECT signal_id FROM runs"))
        hits = sorted(int(r[0]) for r in conn.execute("SELECT n FROM record_hit"))
    finally:
        conn.close()
    assert len(runs) == total and set(runs.values()) == {1}
    assert hits == list(range(total))
