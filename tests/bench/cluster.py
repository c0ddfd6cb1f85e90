"""Several nodes on one PostgreSQL, next to the same node on SQLite, in one run (issue 13, Must show 6).

    .venv/bin/python tests/bench/cluster.py [--seconds 10] [--connections 32] [--nodes 1,2,3]

For 1, 2 and 3 router nodes on one PostgreSQL (a fresh database each), and 1 node on SQLite: wrk
POSTs flat out to every node at once (`--connections` per node) at an async `data` endpoint whose
1-step workflow runs in the node's runner. Prints journaled req/s, p50/p99 (the slowest node's),
async runs/s (runs done from the start of the load until the backlog drained), CPU ms per signal
of the router processes and of PostgreSQL (utime + stime from /proc), journal commits per signal
(the router's `router_journal_commit_seconds_count`), and each row's ratio to the SQLite node.
Last, SKIP LOCKED claims/s: 4 claimer processes, claim 10 + settle, over a preloaded journal.

PostgreSQL: ROUTER_TEST_PG_DSN, or a throwaway cluster started here with fsync ON (durable commits,
like the SQLite node's synchronous=FULL). On 2 shared cores absolute scaling is bounded by the
CPUs: the CPU cost per signal is the figure that predicts bigger machines. Needs `wrk`. Not a CI test.
"""

from __future__ import annotations

import sys

sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("tests/bench")]  # http.py shadows stdlib

import argparse
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests import pg
from tests.bench.http import LUA, children, wrk
from tests.daemon import RouterProcess

CONFIG = """
[endpoints.fast]
return_type = "data"
return_data = '{"received": true}'

[[workflows]]
name = "fast"
listen = "endpoints.fast"

[[workflows.steps]]
action = "store"
name = "x"
value = "{{ __data.n }}"
"""
TICK = os.sysconf("SC_CLK_TCK")


def cpu_ms(pids: list[int], with_children: bool = False) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
        if with_children:
            total += int(fields[13]) + int(fields[14])  # exited children waited for (backends that quit)
    return total * 1000 / TICK


def router_pids(nodes: list[RouterProcess]) -> list[int]:
    out = []
    for n in nodes:
        assert n.proc is not None
        out += [n.proc.pid, *children(n.proc.pid)]
    return out


def postmaster_pids(data_dir: Path | None) -> list[int]:
    if data_dir is None:
        return []
    master = int((data_dir / "postmaster.pid").read_text().split()[0])
    return [master, *children(master)]


def commits(node: RouterProcess) -> float:
    text = httpx.get(
        f"http://127.0.0.1:{node.admin_port}/metrics",
        headers={"Authorization": "Bearer test-admin-token"},
        timeout=10,
    ).text
    return sum(
        float(m) for m in re.findall(r"^router_journal_commit_seconds_count(?:\{[^}]*\})? (\S+)$", text, re.M)
    )


def counts(node: RouterProcess) -> dict[str, int]:
    return node.read(lambda tx: tx.counts(), {})  # type: ignore[no-any-return]


def run(
    tmp: Path,
    n_nodes: int,
    url: str | None,
    seconds: int,
    connections: int,
    script: Path,
    pg_data: Path | None,
) -> dict[str, float]:
    nodes = []
    for i in range(n_nodes):
        sub = tmp / f"{'pg' if url else 'sqlite'}{n_nodes}-{i}"
        sub.mkdir()
        nodes.append(RouterProcess(sub, CONFIG, database_url=url))
    try:
        for n in nodes:
            n.start(wait=False)
        for n in nodes:
            n.wait_ready(60)
            n.wait_for(lambda n=n: n.log().count("msg=ready") >= 2, timeout=30)  # its runner too
        targets = [n.url("endpoints.fast") for n in nodes]
        for t in targets:
            wrk(t, 1, 4, script)  # warm-up
        done0 = counts(nodes[0]).get("done", 0)
        commits0 = sum(commits(n) for n in nodes)
        r0, p0 = cpu_ms(router_pids(nodes)), cpu_ms(postmaster_pids(pg_data), True)
        results: list[dict[str, float]] = [{} for _ in targets]
        started = time.monotonic()
        threads = [
            threading.Thread(
                target=lambda i=i, t=t: results.__setitem__(i, wrk(t, seconds, connections, script, "10s"))
            )
            for i, t in enumerate(targets)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        nodes[0].wait_for(
            lambda: not (c := counts(nodes[0])).get("pending") and not c.get("running"),
            timeout=300,
            interval=0.05,
        )
        drained = time.monotonic() - started
        r1, p1 = cpu_ms(router_pids(nodes)), cpu_ms(postmaster_pids(pg_data), True)
        done = counts(nodes[0]).get("done", 0) - done0
        journaled = sum(r["rps"] for r in results) * seconds
        return {
            "rps": sum(r["rps"] for r in results),
            "p50": max(r["p50"] for r in results),
            "p99": max(r["p99"] for r in results),
            "errors": sum(r["errors"] + r["non2xx"] for r in results),
            "runs": done / drained,
            "router_ms": (r1 - r0) / max(done, 1),
            "pg_ms": (p1 - p0) / max(done, 1),
            "commits": (sum(commits(n) for n in nodes) - commits0) / max(journaled, 1),
        }
    finally:
        for n in nodes:
            n.stop()


def claims_per_second(dsn: str, tmp: Path, signals: int = 20_000) -> tuple[float, int]:
    from router.storage import open_postgres
    from tests.storage_contract.conftest import run_processes
    from tests.storage_contract.test_claims import preload
    from tests.storage_contract.workers import claimers

    store = open_postgres(dsn)
    try:
        preload(store, signals)
    finally:
        store.close()
    started = time.perf_counter()
    out = run_processes(claimers, [("postgres", dsn, f"c{i}", 1, 10) for i in range(4)], tmp)
    elapsed = time.perf_counter() - started
    claimed = [sid for proc in out for t in proc for sid in t["claimed"]]
    return len(claimed) / elapsed, len(claimed) - len(set(claimed))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32, help="wrk connections per node")
    parser.add_argument("--nodes", default="1,2,3")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    tmp = Path(tempfile.mkdtemp(prefix="rbench."))
    script = tmp / "post.lua"
    script.write_text(LUA)
    cluster = None
    server = os.environ.get("ROUTER_TEST_PG_DSN")
    pg_data = Path(os.environ["ROUTER_TEST_PG_DATA"]) if os.environ.get("ROUTER_TEST_PG_DATA") else None
    if not server:
        bindir = pg.pg_bin()
        if bindir is None:
            sys.exit("no PostgreSQL: apt-get install postgresql, or set ROUTER_TEST_PG_DSN")
        cluster = pg.Cluster(bindir)
        cluster.start(fsync=True)
        server, pg_data = cluster.dsn, cluster.data
    try:
        pg.prepare_template(server)
        rows: list[tuple[str, dict[str, Any]]] = [
            ("1 node, SQLite", run(tmp, 1, None, args.seconds, args.connections, script, None))
        ]
        for n in (int(x) for x in args.nodes.split(",")):
            dsn = pg.create_database(server)
            rows.append(
                (
                    f"{n} node{'s' if n > 1 else ''}, PostgreSQL",
                    run(tmp, n, pg.url(dsn), args.seconds, args.connections, script, pg_data),
                )
            )
        claims, dups = claims_per_second(pg.create_database(server), tmp)
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    base = rows[0][1]
    print(
        f"\n{args.seconds}s of wrk per row, {args.connections} connections per node, "
        f"{os.cpu_count()} CPUs shared with everything else on this machine\n"
    )
    head = (
        "setup",
        "req/s",
        "x SQLite",
        "runs/s",
        "p50 ms",
        "p99 ms",
        "router CPU ms/sig",
        "PG CPU ms/sig",
        "CPU x SQLite",
        "commits/sig",
        "errors",
    )
    print(" | ".join(head))
    for name, r in rows:
        cpu = r["router_ms"] + r["pg_ms"]
        print(
            " | ".join(
                [
                    name,
                    f"{r['rps']:.0f}",
                    f"{r['rps'] / base['rps']:.2f}",
                    f"{r['runs']:.0f}",
                    f"{r['p50']:.1f}",
                    f"{r['p99']:.1f}",
                    f"{r['router_ms']:.2f}",
                    f"{r['pg_ms']:.2f}",
                    f"{cpu / (base['router_ms'] + base['pg_ms']):.2f}",
                    f"{r['commits']:.2f}",
                    f"{r['errors']:.0f}",
                ]
            )
        )
    print(
        f"\nSKIP LOCKED claims (4 claimer processes, claim 10 + settle per transaction): {claims:.0f} claims/s, "
        f"{dups} claimed twice"
    )


if __name__ == "__main__":
    main()
