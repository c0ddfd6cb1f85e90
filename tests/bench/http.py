"""HTTP throughput and latency with wrk, against a bare baseline started in the same run.

    .venv/bin/python tests/bench/http.py [--seconds 10] [--connections 64]

Runs, one after another on this machine:
  1. a bare hypercorn-trio ASGI app answering 200 (the ceiling of the server we use);
  2. our async `data` endpoint (every request journaled with fsync; its 1-step workflow runs in
     the runner process, `[router] runners = 1`, the default) with 1 HTTP worker;
  3. the same with `[http] workers = 2`;
  4. the same with `runners = 0` (the workflow runs in the listening process);
  5. a sync `continue` endpoint with a 3-step workflow (condition, store, respond).
Each flat out (wrk's 64 connections send as fast as answers come: p50 ~ connections / rate),
then bare and (2) again paced at `--paced-rate` req/s over the same 64 connections, which is
the latency a caller sees below saturation.
Prints req/s, p50, p99, RSS of the processes by role, and each rate's ratio to the bare app:
medians of `--rounds` rounds (default 3) that alternate the targets.
Needs `wrk` (Debian package).
"""

from __future__ import annotations

import sys

# This file is named http.py: keep its folder off sys.path so `import http` finds the stdlib.
sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("tests/bench")]

import argparse
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.daemon import RouterProcess
from tests.standins.bare_asgi import BareServer

ENDPOINTS = """
[endpoints.fast]
return_type = "data"
return_data = '{"received": true}'

[endpoints.flow]
return_type = "continue"

[[workflows]]
name = "fast"
listen = "endpoints.fast"

[[workflows.steps]]
action = "store"
name = "x"
value = "{{ __data.n }}"

[[workflows]]
name = "flow"
listen = "endpoints.flow"
run_mode = "sync"

[[workflows.steps]]
id = "check"
condition = { left = "{{ __data.n }}", operator = "is_not_empty" }

[[workflows.steps]]
id = "keep"
parent = "check"
branch = "yes"
action = "store"
name = "seen"
value = "{{ __data.n }}"

[[workflows.steps]]
parent = "keep"
action = "respond"
return_type = "data"
return_data = '{"ok": true, "n": "{{ __data.seen }}"}'
"""

LUA = """
wrk.method = "POST"
wrk.body = '{"n": 42, "email": "a@example.com"}'
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format("JSON {\\"rps\\": %f, \\"p50\\": %f, \\"p99\\": %f, \\"errors\\": %d, \\"non2xx\\": %d}\\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
"""


PACED_LUA = (
    LUA
    + """
function delay()
  return DELAY_MS
end
"""
)


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):  # the process is gone
            pass
    return total / 1024


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(x) for x in out]


def wrk(url: str, seconds: int, connections: int, script: Path, timeout: str = "2s") -> dict[str, float]:
    """`timeout`: wrk's own per-request limit (its default 2s); slower answers count as errors."""
    out = subprocess.run(
        [
            "wrk",
            "-t",
            "2",
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--timeout",
            timeout,
            "-s",
            str(script),
            "--latency",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"JSON (\{.*\})", out)
    assert match, out
    return json.loads(match.group(1))


def role(pid: int) -> str:
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    if b"channels.smtp.worker" in cmdline:
        return "smtp"
    return "runner" if b"--runner" in cmdline else "http"


def unfinished(proc: RouterProcess) -> int:
    conn = sqlite3.connect(f"file:{proc.data_dir / 'router.db'}?mode=ro", uri=True, timeout=10)
    try:
        return int(
            conn.execute("SELECT count(*) FROM signals WHERE status IN ('pending', 'running')").fetchone()[0]
        )
    finally:
        conn.close()


Measured = tuple[dict[str, float], dict[str, float]]  # wrk result, RSS MB by role (http, runner, all)


def measure(
    sub: Path, workers: int, runners: int, source: str, seconds: int, connections: int, script: Path
) -> Measured:
    """One wrk run against the bare app (workers = 0) or a fresh router."""
    if workers == 0:
        bare = BareServer()
        try:
            wrk(bare.url(), 2, connections, script)  # warm-up
            res = wrk(bare.url(), seconds, connections, script)
            rss = rss_mb([bare.pid])
            return {**res, "backlog": 0.0, "drain_s": 0.0}, {"http": rss, "runner": 0.0, "all": rss}
        finally:
            bare.stop()
    sub.mkdir(parents=True)
    proc = RouterProcess(
        sub, textwrap.dedent(ENDPOINTS), workers=workers, router_extra=f"runners = {runners}"
    )
    proc.start()
    try:
        assert proc.proc is not None
        proc.wait_for(lambda: proc.log().count("msg=ready") >= 1 + (workers - 1) + runners, timeout=30)
        url = proc.url(source)
        wrk(url, 2, connections, script)
        res = wrk(url, seconds, connections, script)
        # Accepted is not done: how much is left for the runs when wrk stops, and how long it takes.
        res["backlog"] = float(unfinished(proc))
        drain_started = time.monotonic()
        proc.wait_for(lambda: unfinished(proc) == 0, timeout=120, interval=0.05)
        res["drain_s"] = time.monotonic() - drain_started
        by_role: dict[str, list[int]] = {"http": [proc.proc.pid], "runner": [], "smtp": []}
        for kid in children(proc.proc.pid):
            by_role[role(kid)].append(kid)
        rss = {r: rss_mb(pids) for r, pids in by_role.items()}
        rss["all"] = sum(rss.values())
        return res, rss
    finally:
        proc.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--paced-rate", type=int, default=500, help="req/s offered in the paced rows")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    tmp = Path(tempfile.mkdtemp())
    script = tmp / "post.lua"
    script.write_text(LUA)
    paced = tmp / "paced.lua"
    paced.write_text(
        PACED_LUA.replace("DELAY_MS", str(max(1, round(args.connections * 1000 / args.paced_rate))))
    )
    # label, HTTP workers (0: the bare app), runners, source, wrk script
    targets = [
        ("bare hypercorn-trio ASGI 200", 0, 0, "", script),
        ("router async data, 1 worker + 1 runner", 1, 1, "endpoints.fast", script),
        ("router async data, 2 workers + 1 runner", 2, 1, "endpoints.fast", script),
        ("router async data, 1 worker, runners = 0", 1, 0, "endpoints.fast", script),
        ("router sync continue, 3-step workflow", 1, 1, "endpoints.flow", script),
        (f"bare, paced {args.paced_rate} req/s", 0, 0, "", paced),
        (f"router async data 1+1, paced {args.paced_rate} req/s", 1, 1, "endpoints.fast", paced),
    ]
    results: dict[str, list[Measured]] = {t[0]: [] for t in targets}
    # Rounds alternate the targets so that a noisy moment on this shared box hits them all alike.
    for round_no in range(args.rounds):
        for n, (label, workers, runners, source, wrk_script) in enumerate(targets):
            results[label].append(
                measure(
                    tmp / f"{round_no}-{n}",
                    workers,
                    runners,
                    source,
                    args.seconds,
                    args.connections,
                    wrk_script,
                )
            )
            print(f"round {round_no + 1}: {label}: {results[label][-1][0]['rps']:.0f} req/s", flush=True)

    def median_of(label: str) -> Measured:
        runs = results[label]
        return (
            {k: statistics.median(r[0][k] for r in runs) for k in runs[0][0]},
            {k: statistics.median(r[1][k] for r in runs) for k in runs[0][1]},
        )

    rows = [(label, *median_of(label)) for label, *_ in targets]
    base = rows[0][1]["rps"]
    print(
        f"\nwrk -t2 -c{args.connections} -d{args.seconds}s, POST 40-byte JSON, {os.cpu_count()} cores, "
        f"medians of {args.rounds} alternating rounds\n"
    )
    print(
        "RSS MB by role: http = the processes serving HTTP, runner = the runner process(es), "
        "all = with the SMTP worker"
    )
    print("backlog: signals accepted but not yet processed when wrk stopped; drain s: until they were\n")
    print(
        f"{'target':<46} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'http':>6} {'runner':>6} {'all':>6} "
        f"{'vs bare':>7} {'errors':>6} {'backlog':>7} {'drain s':>7}"
    )
    for label, res, rss in rows:
        print(
            f"{label:<46} {res['rps']:>7.0f} {res['p50']:>7.2f} {res['p99']:>7.2f} {rss['http']:>6.1f} "
            f"{rss['runner']:>6.1f} {rss['all']:>6.1f} {res['rps'] / base:>7.2f} {int(res['errors'] + res['non2xx']):>6} {res['backlog']:>7.0f} {res['drain_s']:>7.2f}"
        )


if __name__ == "__main__":
    main()
