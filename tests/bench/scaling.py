"""How the journaled endpoint scales with HTTP workers: what a bigger machine would do.

    .venv/bin/python tests/bench/scaling.py [--seconds 20] [--paced-seconds 10] [--rounds 1]
        [--max-workers N] [--runners 1] [--connections 64] [--tree /path/to/other/worktree]

For `[http] workers` = 1 ... the CPU count (`--max-workers`), the journaled `data` endpoint with
a 1-step async workflow (tests/bench/http.py's `fast`), `[router] runners = --runners`. Per
setting, flat out with wrk (-t2 -c64) for `--seconds`:
  accepted/s   signals acknowledged (2xx) per second;
  processed/s  signals whose workflow finished within the same window: the sustained rate;
  backlog      accepted but not processed when wrk stopped, and that in seconds of processing;
  CPU ms/sig   CPU time (user + system) of every router process from the start of the window
               until the backlog is drained, over the signals accepted: the cost of one signal,
               which contention on a shared machine barely moves (wall-clock rates it does);
  p99 paced    wrk paced at half the measured acceptance rate (or `--paced-rate`) for
               `--paced-seconds`, and the CPU ms per signal at that rate (CPU paced);
  RSS          per process at the end of the window (main, http-N, run-N, smtp, forks).
A bare hypercorn-trio ASGI app (the floor of the server we use) is measured in the same run for
its accepted/s and CPU ms per request. `--tree` runs the same settings with another worktree's
code (its .venv), alternating rounds. Prints the load average. Not a CI test.
"""

from __future__ import annotations

import sys

sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("tests/bench")]

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).absolute().parents[2]
sys.path.insert(0, str(ROOT))
from tests.bench.http import ENDPOINTS, LUA, PACED_LUA, unfinished, wrk
from tests.bench.peers.procs import cpu_seconds, tree_pids
from tests.daemon import RouterProcess
from tests.standins.bare_asgi import BareServer


def done(proc: RouterProcess) -> int:
    conn = sqlite3.connect(f"file:{proc.data_dir / 'router.db'}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute("SELECT count(*) FROM signals WHERE status = 'done'").fetchone()[0])
    finally:
        conn.close()


def role(pid: int, root: int) -> str:
    if pid == root:
        return "main"
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    if comm.startswith("router-"):
        return comm.removeprefix("router-")
    if b"channels.smtp.worker" in argv:
        return "smtp"
    for flag, name in ((b"--runner", "run"), (b"--worker", "http")):
        if flag in argv:
            return f"{name}-{argv[argv.index(flag) + 1].decode()}"
    return "?"


def rss_by_role(root: int) -> dict[str, float]:
    out = {}
    for pid in tree_pids(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out[role(pid, root)] = int(line.split()[1]) / 1024
        except OSError:
            pass
    return out


def measure_router(
    tree: Path, work: Path, workers: int, runners: int, args: argparse.Namespace, scripts: dict[str, Path]
) -> dict[str, object]:
    proc = RouterProcess(
        work,
        textwrap.dedent(ENDPOINTS),
        workers=workers,
        router_extra=f"runners = {runners}",
        env={"PYTHONPATH": str(tree)},
    )
    proc.env.pop("PYTHONDONTWRITEBYTECODE", None)
    log = open(proc.log_path, "ab")
    proc.proc = subprocess.Popen(
        [str(tree / ".venv" / "bin" / "python"), "-m", "router.cli", "serve", "-c", str(proc.config_path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=proc.env,
        cwd=tree,
    )
    try:
        proc.wait_ready(60)
        proc.wait_for(lambda: proc.log().count("msg=ready") >= workers + runners, timeout=60)
        url = proc.url("endpoints.fast")
        try:
            wrk(url, 2, args.connections, scripts["flat"])  # warm-up
        except subprocess.CalledProcessError as error:  # a warm-up may time out on a loaded machine
            print(f"  warm-up: {error.stdout or error}"[:300], flush=True)
        proc.wait_for(lambda: unfinished(proc) == 0, timeout=120, interval=0.05)
        root = proc.proc.pid
        done0, cpu0 = done(proc), cpu_seconds(tree_pids(root))
        res = wrk(url, args.seconds, args.connections, scripts["flat"], "10s")
        done1 = done(proc)
        backlog = unfinished(proc)
        rss = rss_by_role(root)
        drain_started = time.monotonic()
        proc.wait_for(lambda: unfinished(proc) == 0, timeout=300, interval=0.05)
        drain_s = time.monotonic() - drain_started
        cpu1 = cpu_seconds(tree_pids(root))
        accepted = res["rps"]
        processed = (done1 - done0) / args.seconds
        paced_rate = args.paced_rate or max(1, round(accepted / 2))
        paced = scripts["dir"] / f"paced-{paced_rate}.lua"
        paced.write_text(
            PACED_LUA.replace("DELAY_MS", str(max(1, round(args.connections * 1000 / paced_rate))))
        )
        p99, paced_cpu = float("nan"), float("nan")
        if args.paced_seconds:
            cpu2 = cpu_seconds(tree_pids(root))
            paced_res = wrk(url, args.paced_seconds, args.connections, paced, "10s")
            proc.wait_for(lambda: unfinished(proc) == 0, timeout=300, interval=0.05)
            p99 = paced_res["p99"]
            paced_cpu = (
                1000 * (cpu_seconds(tree_pids(root)) - cpu2) / max(1.0, paced_res["rps"] * args.paced_seconds)
            )
        return {
            "accepted": accepted,
            "processed": processed,
            "backlog": float(backlog),
            "backlog_s": backlog / processed if processed else float("inf"),
            "drain_s": drain_s,
            "cpu_ms": 1000 * (cpu1 - cpu0) / max(1.0, accepted * args.seconds),
            "p99_paced": p99,
            "paced_rate": float(paced_rate),
            "paced_cpu_ms": paced_cpu,
            "rss": rss,
            "errors": res["errors"] + res["non2xx"],
        }
    finally:
        proc.stop()
        log.close()


def measure_bare(args: argparse.Namespace, scripts: dict[str, Path]) -> dict[str, object]:
    bare = BareServer()
    try:
        wrk(bare.url(), 2, args.connections, scripts["flat"])
        cpu0 = cpu_seconds([bare.pid])
        res = wrk(bare.url(), args.seconds, args.connections, scripts["flat"], "10s")
        cpu1 = cpu_seconds([bare.pid])
        return {
            "accepted": res["rps"],
            "cpu_ms": 1000 * (cpu1 - cpu0) / max(1.0, res["rps"] * args.seconds),
            "p99": res["p99"],
        }
    finally:
        bare.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--paced-seconds", type=int, default=10)
    parser.add_argument(
        "--paced-rate",
        type=int,
        default=0,
        help="req/s of the paced run (default: half the measured acceptance rate); a fixed "
        "rate makes its CPU ms/sig comparable between trees and settings",
    )
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--max-workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--min-workers", type=int, default=1)
    parser.add_argument("--runners", type=int, default=1)
    parser.add_argument("--tree", type=Path, action="append", default=[], help="another worktree to compare")
    parser.add_argument("--no-bare", action="store_true")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    trees = [ROOT, *[t.absolute() for t in args.tree]]
    settings = list(range(args.min_workers, args.max_workers + 1))
    tmp = Path(tempfile.mkdtemp(prefix="scaling-"))
    scripts = {"dir": tmp, "flat": tmp / "post.lua"}
    scripts["flat"].write_text(LUA)
    results: dict[tuple[str, int], list[dict[str, object]]] = {}
    bare: list[dict[str, object]] = []
    loads = [os.getloadavg()[0]]
    try:
        for round_no in range(args.rounds):
            if not args.no_bare:
                bare.append(measure_bare(args, scripts))
                print(
                    f"round {round_no + 1}: bare: {bare[-1]['accepted']:.0f} req/s, "
                    f"{bare[-1]['cpu_ms']:.3f} CPU ms/req",
                    flush=True,
                )
            for workers in settings:
                for i, tree in enumerate(trees):
                    work = tmp / f"{round_no}-{workers}-{i}"
                    work.mkdir()
                    r = measure_router(tree, work, workers, args.runners, args, scripts)
                    results.setdefault((tree.name, workers), []).append(r)
                    loads.append(os.getloadavg()[0])
                    print(
                        f"round {round_no + 1}: {tree.name} workers={workers}: accepted {r['accepted']:.0f}/s, "
                        f"processed {r['processed']:.0f}/s, backlog {r['backlog']:.0f}, "
                        f"{r['cpu_ms']:.3f} CPU ms/signal, load {loads[-1]:.1f}",
                        flush=True,
                    )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def med(runs: list[dict[str, object]], key: str) -> float:
        return statistics.median(float(r[key]) for r in runs)  # type: ignore[arg-type]

    print(
        f"\n{len(os.sched_getaffinity(0))} CPUs, load {min(loads):.1f}-{max(loads):.1f} during the run; "
        f"wrk -t2 -c{args.connections} -d{args.seconds}s flat out, then paced at half the accepted rate for "
        f"{args.paced_seconds}s; runners = {args.runners}; medians of {args.rounds} round(s)\n"
    )
    if bare:
        print(
            f"bare hypercorn-trio ASGI 200: {med(bare, 'accepted'):.0f} req/s, {med(bare, 'cpu_ms'):.3f} CPU ms/req\n"
        )
    print(
        f"{'code':<14} {'workers':>7} {'accepted/s':>10} {'processed/s':>11} {'backlog':>7} {'backlog s':>9} "
        f"{'CPU ms/sig':>10} {'p99 paced':>9} {'at /s':>6} {'CPU paced':>9} {'errors':>6}   RSS MB per process"
    )
    for (tree_name, workers), runs in results.items():
        roles = sorted({name for r in runs for name in r["rss"]})  # type: ignore[attr-defined]
        rss = ", ".join(
            f"{name} {statistics.median(r['rss'][name] for r in runs if name in r['rss']):.0f}"  # type: ignore[index,operator]
            for name in roles
        )
        print(
            f"{tree_name:<14} {workers:>7} {med(runs, 'accepted'):>10.0f} {med(runs, 'processed'):>11.0f} "
            f"{med(runs, 'backlog'):>7.0f} {med(runs, 'backlog_s'):>9.2f} {med(runs, 'cpu_ms'):>10.3f} "
            f"{med(runs, 'p99_paced'):>9.1f} {med(runs, 'paced_rate'):>6.0f} {med(runs, 'paced_cpu_ms'):>9.3f} "
            f"{med(runs, 'errors'):>6.0f}   {rss}"
        )
    print(
        "\nbacklog s: the backlog over the processed rate, i.e. how far behind the acknowledgements the "
        "workflows ran; CPU ms/sig: all router processes, window start -> backlog drained, over signals accepted"
    )


if __name__ == "__main__":
    main()
