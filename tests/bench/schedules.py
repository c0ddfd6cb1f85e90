"""Schedules at scale: 10,000 loaded, idle CPU, and tick lateness of 100 `every = "1s"`.

    .venv/bin/python tests/bench/schedules.py [--idle-seconds 30] [--seconds 60] [--workflow]

Runs the real daemon (`router serve`) twice on a temp data dir:
  1. 10,000 schedules (cron, spread over the day, none due in the window): start-up time, RSS and
     the daemon's CPU % while idle.
  2. The same 10,000 with 100 of them `every = "1s"`: for `--seconds`, the daemon's CPU % and the
     lateness of each tick (`fired_at - scheduled_for`, as journaled) p50 / p99 / max, and whether
     any slot was missed or fired twice. `--workflow` adds a workflow listening to the 100.
CPU % is of one core (utime + stime of the daemon process from /proc over wall time).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Run as a script, this folder is first on sys.path, and its http.py (the HTTP bench) would shadow
# the standard library's http package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

import httpx

from tests.daemon import free_port

TOTAL = 10_000
FAST = 100


def config(data_dir: Path, port: int, fast: int, workflow: bool) -> str:
    rng = random.Random(10_000)
    now = datetime.now()
    lines = [
        f'[router]\ndata_dir = "{data_dir}"\n',
        f'[http]\nlisten = "127.0.0.1:{port}"\n',
        f'[smtp]\nlisten = "127.0.0.1:{free_port()}"\n',
        f'[admin]\nlisten = "127.0.0.1:{free_port()}"\n',
    ]
    for i in range(TOTAL - fast):
        # Daily at a time at least two hours away from now: never due while we measure.
        hour = (now.hour + 2 + rng.randrange(20)) % 24
        tz = rng.choice(["UTC", "Europe/Tirane", "America/New_York", "Asia/Tokyo"])
        lines.append(f'[schedules.idle{i}]\ncron = "{rng.randrange(60)} {hour} * * *"\ntimezone = "{tz}"\n')
    for i in range(fast):
        lines.append(f'[schedules.fast{i}]\nevery = "1s"\n')
    if workflow and fast:
        lines.append(
            '[[workflows]]\nname = "on-fast"\nlisten = "schedules.*"\n\n[[workflows.steps]]\n'
            'action = "store"\nname = "seen"\nvalue = "{{ __data.__schedule.scheduled_for }}"\n'
        )
    return "\n".join(lines)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start(tmp: Path, fast: int, workflow: bool) -> tuple[subprocess.Popen[bytes], Path, float]:
    port = free_port()
    data_dir = tmp / f"var{fast}"
    path = tmp / f"router{fast}.toml"
    path.write_text(config(data_dir, port, fast, workflow))
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "router.cli", "serve", "-c", str(path), "--log-level", "info"],
        cwd=ROOT,
        stdout=open(tmp / f"log{fast}", "wb"),
        stderr=subprocess.STDOUT,
    )
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"router exited: {(tmp / f'log{fast}').read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=0.5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    # Ready means listening; the scheduler has loaded once `router schedules` sees no change pending.
    return proc, data_dir / "router.db", time.perf_counter() - t0


def wait_loaded(db: Path, count: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            n = conn.execute("SELECT count(*) FROM schedule_state").fetchone()[0]
            conn.close()
            if n >= count:
                return
        except sqlite3.Error:
            pass
        time.sleep(0.2)
    raise SystemExit("schedules not loaded in time")


def measure_cpu(pid: int, seconds: float) -> float:
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100.0 * (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 10) - 1] if len(values) > 1 else values[0]


def lateness(db: Path, start: float, end: float) -> tuple[list[float], int]:
    """Tick lateness in ms for slots in [start, end - 1), and how many slots were journaled twice."""
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT source, entity FROM signals WHERE channel = 'schedules'").fetchall()
    conn.close()
    late: list[float] = []
    per: dict[str, list[float]] = {}
    for source, entity in rows:
        s = json.loads(entity)["__schedule"]
        slot = datetime.fromisoformat(s["scheduled_for"]).timestamp()
        if start <= slot < end - 1:
            late.append((datetime.fromisoformat(s["fired_at"]).timestamp() - slot) * 1000)
            per.setdefault(source, []).append(slot)
    return late, sum(len(v) - len(set(v)) for v in per.values())


def scheduler_alone(tmp: Path, seconds: float, fast: int) -> tuple[float, float]:
    """The Scheduler task alone in this process (real Storage, no daemon around it): load time and
    CPU % over `seconds` - what the schedules channel itself costs."""
    import trio

    from config import load_config
    from router import sources
    from router.schedules.scheduler import Scheduler
    from router.storage import open_storage

    path = tmp / f"alone{fast}.toml"
    path.write_text(config(tmp / f"alone{fast}", free_port(), fast, False))
    cfg = load_config(path)
    storage = open_storage(tmp / f"alone{fast}" / "router.db")
    storage.write_sync(lambda tx: sources.ensure_sources(tx, cfg))
    result: dict[str, float] = {}

    async def run() -> None:
        scheduler = Scheduler(storage, lambda: cfg)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(storage.run_writer)
            await trio.sleep(0.1)
            t0 = time.perf_counter()
            await nursery.start(scheduler.run)
            while len(scheduler.entries) < TOTAL:  # noqa: ASYNC110 - timing the load: polled, not awaited
                await trio.sleep(0.01)
            result["load"] = time.perf_counter() - t0
            await trio.sleep(2)
            c0, w0 = time.process_time(), time.perf_counter()
            result["start"] = time.time()
            await trio.sleep(seconds)
            result["end"] = time.time()
            result["cpu"] = 100.0 * (time.process_time() - c0) / (time.perf_counter() - w0)
            nursery.cancel_scope.cancel()

    trio.run(run)
    storage.close()
    if fast:
        late, dup = lateness(tmp / f"alone{fast}" / "router.db", result["start"], result["end"])
        print(
            f"scheduler task alone: tick lateness ms p50 {pct(late, 50):.1f} p99 {pct(late, 99):.1f} "
            f"max {max(late):.1f} over {len(late)} ticks, duplicates {dup}"
        )
    return result["load"], result["cpu"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workflow", action="store_true", help="a workflow listens to the fast schedules")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)

        load, cpu = scheduler_alone(tmp, args.idle_seconds, 0)
        print(
            f"scheduler task alone: {TOTAL} schedules loaded in {load:.1f}s, idle CPU {cpu:.2f}% of one core"
        )
        load, cpu = scheduler_alone(tmp, args.idle_seconds, FAST)
        print(f"scheduler task alone, {FAST} of them every=1s: CPU {cpu:.2f}% of one core")

        proc, db, ready = start(tmp, 0, False)
        t0 = time.perf_counter()
        wait_loaded(db, TOTAL)
        loaded = ready + time.perf_counter() - t0
        time.sleep(2)
        idle = measure_cpu(proc.pid, args.idle_seconds)
        rss = rss_mib(proc.pid)
        stop(proc)
        print(f"{TOTAL} schedules loaded in {loaded:.1f}s (ready {ready:.1f}s), RSS {rss:.0f} MiB")
        print(f"idle CPU over {args.idle_seconds:.0f}s: {idle:.2f}% of one core")

        proc, db, ready = start(tmp, FAST, args.workflow)
        wait_loaded(db, TOTAL)
        time.sleep(2)
        window_start = time.time()
        busy = measure_cpu(proc.pid, args.seconds)
        window_end = time.time()
        stop(proc)
        late, dup = lateness(db, window_start, window_end)
        expected = FAST * int(window_end - 1 - window_start)
        log = (tmp / f"log{FAST}").read_text()
        coalesced = log.count("schedule coalesced ticks")
        missed = log.count("schedule missed ticks")
        print(
            f"{FAST} x every=1s (+{TOTAL - FAST} idle) over {args.seconds:.0f}s"
            f"{' with a workflow' if args.workflow else ''}: CPU {busy:.1f}% of one core"
        )
        print(
            f"ticks {len(late)} (expected ~{expected}), duplicates {dup}; "
            f"coalesce events {coalesced} (a stall over 1 s folds due ticks into one), missed {missed}"
        )
        print(f"tick lateness ms: p50 {pct(late, 50):.1f}  p99 {pct(late, 99):.1f}  max {max(late):.1f}")


if __name__ == "__main__":
    main()
