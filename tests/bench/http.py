"""HTTP throughput and latency with wrk, against a bare baseline started in the same run.

    .venv/bin/python tests/bench/http.py [--seconds 10] [--connections 64]

Runs, one after another on this machine:
  1. a bare hypercorn-trio ASGI app answering 200 (the ceiling of the server we use);
  2. our async `data` endpoint (every request journaled with fsync) with 1 worker;
  3. the same with `[http] workers = 2`;
  4. a sync `continue` endpoint with a 3-step workflow (condition, store, respond).
Prints req/s, p50, p99, RSS of the serving processes, and each rate's ratio to the bare app:
medians of `--rounds` rounds (default 3) that alternate the four targets.
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
import statistics
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.daemon import RouterProcess  # noqa: E402
from tests.standins.bare_asgi import BareServer  # noqa: E402

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


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(x) for x in out]


def wrk(url: str, seconds: int, connections: int, script: Path, timeout: str = "2s") -> dict[str, float]:
    """`timeout`: wrk's own per-request limit (its default 2s); slower answers count as errors."""
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--timeout", timeout, "-s", str(script),
         "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout
    match = re.search(r"JSON (\{.*\})", out)
    assert match, out
    return json.loads(match.group(1))


def measure(
    sub: Path, workers: int, source: str, seconds: int, connections: int, script: Path
) -> tuple[dict[str, float], float, float]:
    """One wrk run against the bare app (workers = 0) or a fresh router; (result, RSS http, RSS all)."""
    if workers == 0:
        bare = BareServer()
        try:
            wrk(bare.url(), 2, connections, script)  # warm-up
            res = wrk(bare.url(), seconds, connections, script)
            return res, rss_mb([bare.pid]), rss_mb([bare.pid])
        finally:
            bare.stop()
    sub.mkdir(parents=True)
    proc = RouterProcess(sub, textwrap.dedent(ENDPOINTS), workers=workers)
    proc.start()
    try:
        time.sleep(1.0 if workers == 1 else 3.0)
        url = proc.url(source)
        wrk(url, 2, connections, script)
        res = wrk(url, seconds, connections, script)
        assert proc.proc is not None
        kids = children(proc.proc.pid)
        http_kids = [k for k in kids if b"channels.smtp.worker" not in Path(f"/proc/{k}/cmdline").read_bytes()]
        return res, rss_mb([proc.proc.pid, *http_kids]), rss_mb([proc.proc.pid, *kids])
    finally:
        proc.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    tmp = Path(tempfile.mkdtemp())
    script = tmp / "post.lua"
    script.write_text(LUA)
    targets = [
        ("bare hypercorn-trio ASGI 200", 0, ""),
        ("router async data endpoint, 1 worker", 1, "endpoints.fast"),
        ("router async data endpoint, 2 workers", 2, "endpoints.fast"),
        ("router sync continue, 3-step workflow", 1, "endpoints.flow"),
    ]
    results: dict[str, list[tuple[dict[str, float], float, float]]] = {t[0]: [] for t in targets}
    # Rounds alternate the targets so that a noisy moment on this shared box hits them all alike.
    for round_no in range(args.rounds):
        for label, workers, source in targets:
            results[label].append(measure(tmp / f"{round_no}-{workers}-{source or 'bare'}", workers, source,
                                          args.seconds, args.connections, script))
            print(f"round {round_no + 1}: {label}: {results[label][-1][0]['rps']:.0f} req/s", flush=True)

    def median_of(label: str) -> tuple[dict[str, float], float, float]:
        runs = results[label]
        return (
            {k: statistics.median(r[0][k] for r in runs) for k in runs[0][0]},
            statistics.median(r[1] for r in runs),
            statistics.median(r[2] for r in runs),
        )

    rows = [(label, *median_of(label)) for label, _, _ in targets]
    base = rows[0][1]["rps"]
    print(f"\nwrk -t2 -c{args.connections} -d{args.seconds}s, POST 40-byte JSON, {os.cpu_count()} cores, "
          f"medians of {args.rounds} alternating rounds\n")
    print("RSS http: the processes serving HTTP; RSS all: with the SMTP worker process\n")
    print(f"{'target':<42} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'RSS http':>9} {'RSS all':>8} "
          f"{'vs bare':>8} {'errors':>7}")
    for label, res, rss, rss_all in rows:
        print(f"{label:<42} {res['rps']:>8.0f} {res['p50']:>8.2f} {res['p99']:>8.2f} {rss:>9.1f} {rss_all:>8.1f} "
              f"{res['rps'] / base:>8.2f} {int(res['errors'] + res['non2xx']):>7}")


if __name__ == "__main__":
    main()
