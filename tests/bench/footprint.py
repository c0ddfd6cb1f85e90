"""Start-up time and memory at rest of the default daemon (`router serve -c router.toml`).

    .venv/bin/python tests/bench/footprint.py [--rounds 5] [--settle 3] [--tree /path/to/other/worktree ...]

Each round starts the embedded default config (the repository's router.toml: HTTP, SMTP, admin,
schedules, the default `runners = 1`) in a fresh data dir on free loopback ports, and measures:
  start s   process start -> first 200 from GET /readyz on the HTTP port (polled every 5 ms);
            /readyz is 200 only once every channel serves and every child is up (runners listening);
  CPU s     the CPU time (user + system) of all its processes at that moment: what a start costs,
            whatever the neighbours on a shared machine do to the wall clock;
  RSS, PSS  of every process of the daemon's tree, `--settle` s after READY, from
            /proc/PID/smaps_rollup. RSS counts a page shared by N processes N times; PSS counts 1/N
            of it in each, so the PSS sum is what the daemon really costs the machine (the number
            the issue's aim is about). USS (private pages) is shown too.
Every `--tree` (another worktree with its own .venv, e.g. one checked out at main) is measured in
the same run, rounds alternating between trees so that a noisy moment hits them all alike.
Medians of the rounds. Every process started is stopped by PID. Not a CI test.
"""

from __future__ import annotations

import sys

sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("tests/bench")]

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).absolute().parents[2]
sys.path.insert(0, str(ROOT))
from tests.bench.peers.procs import cpu_seconds, start_time, tree_pids
from tests.daemon import free_port


def smaps(pid: int) -> dict[str, float]:
    """RSS, PSS and USS of one process in MB (smaps_rollup), {} if it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return {}
    kb: dict[str, int] = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            kb[parts[0].rstrip(":")] = int(parts[1])
    return {
        "rss": kb.get("Rss", 0) / 1024,
        "pss": kb.get("Pss", 0) / 1024,
        "uss": (kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)) / 1024,
    }


def role(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"
    if comm.startswith("router"):  # children that name themselves (router-runner-1, ...)
        return comm
    joined = b" ".join(argv)
    if b"channels.smtp.worker" in joined:
        return "smtp"
    for flag in (b"--runner", b"--worker"):
        if flag in argv:
            return f"{flag.decode().lstrip('-')}-{argv[argv.index(flag) + 1].decode()}"
    return "main"


def one_round(tree: Path, work: Path, settle: float) -> dict[str, object]:
    python = tree / ".venv" / "bin" / "python"
    config = work / "router.toml"
    shutil.copy(tree / "router.toml", config)
    http_port, smtp_port, admin_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "ROUTER_DATA_DIR": str(work / "var"),
        "ROUTER_HTTP_LISTEN": f"127.0.0.1:{http_port}",
        "ROUTER_SMTP_LISTEN": f"127.0.0.1:{smtp_port}",
        "ROUTER_ADMIN_LISTEN": f"127.0.0.1:{admin_port}",
        "ROUTER_PUBLIC_URL": f"http://127.0.0.1:{http_port}",
    }
    env.pop("NOTIFY_SOCKET", None)
    # An installed package has its bytecode compiled; a dev shell may say not to write it.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    log = open(work / "router.log", "ab")
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(python), "-m", "router.cli", "serve", "-c", str(config)],
        cwd=work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    seen: dict[int, str | None] = {}
    try:
        ready = None
        with httpx.Client(timeout=1.0) as client:
            while time.perf_counter() - started < 60:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{tree}: exited {proc.returncode}:\n{(work / 'router.log').read_text()[-2000:]}"
                    )
                for pid in tree_pids(proc.pid):
                    seen.setdefault(pid, start_time(pid))
                try:
                    if client.get(f"http://127.0.0.1:{http_port}/readyz").status_code == 200:
                        ready = time.perf_counter() - started
                        cpu = cpu_seconds(tree_pids(proc.pid))
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.005)
        if ready is None:
            raise RuntimeError(f"{tree}: not ready in 60 s")
        time.sleep(settle)
        procs = {}
        for pid in tree_pids(proc.pid):
            seen.setdefault(pid, start_time(pid))
            mem = smaps(pid)
            if mem:
                procs[f"{role(pid)}"] = mem
        return {"start": ready, "cpu": cpu, "procs": procs}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()
        for pid, t in seen.items():  # anything of its tree still alive after the main process went
            if t is not None and start_time(pid) == t:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after READY before memory is read")
    parser.add_argument(
        "--tree",
        type=Path,
        action="append",
        default=[],
        help="another worktree (with .venv) to measure alongside this one",
    )
    args = parser.parse_args()
    trees = [ROOT, *[t.absolute() for t in args.tree]]
    results: dict[Path, list[dict[str, object]]] = {t: [] for t in trees}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="router-footprint-") as tmp:
        for i, tree in enumerate(trees):  # not counted: writes the bytecode cache an installed package has
            (Path(tmp) / f"warm-{i}").mkdir()
            one_round(tree, Path(tmp) / f"warm-{i}", 0.0)
        for n in range(args.rounds):
            for i, tree in enumerate(trees):
                work = Path(tmp) / f"{n}-{i}"
                work.mkdir()
                r = one_round(tree, work, args.settle)
                results[tree].append(r)
                procs: dict[str, dict[str, float]] = r["procs"]  # type: ignore[assignment]
                print(
                    f"round {n + 1}: {tree.name}: ready {r['start']:.2f} s (CPU {r['cpu']:.2f} s), "
                    f"PSS {sum(p['pss'] for p in procs.values()):.1f} MB, "
                    f"RSS {sum(p['rss'] for p in procs.values()):.1f} MB",
                    flush=True,
                )
                load.append(os.getloadavg()[0])
    print(
        f"\n{os.cpu_count()} CPUs, load {min(load):.1f}-{max(load):.1f} during the run; "
        f"medians of {args.rounds} alternating rounds; memory {args.settle:g} s after READY\n"
    )
    print(
        "start s: process start -> /readyz 200 (wall clock: the load above stretches it); "
        "start CPU s: CPU time all its processes had used by then\n"
    )
    print(
        f"{'tree':<16} {'start s':>7} {'CPU s':>7} {'PSS MB':>7} {'RSS MB':>7} {'USS MB':>7}   per process (PSS / RSS MB)"
    )
    for tree in trees:
        runs = results[tree]

        def med(key: str, runs: list[dict[str, object]] = runs) -> float:
            return statistics.median(sum(p[key] for p in r["procs"].values()) for r in runs)  # type: ignore[attr-defined]

        names = sorted({name for r in runs for name in r["procs"]})  # type: ignore[attr-defined]
        detail = ", ".join(
            f"{name} {statistics.median(r['procs'][name]['pss'] for r in runs if name in r['procs']):.1f}"  # type: ignore[index,operator]
            f"/{statistics.median(r['procs'][name]['rss'] for r in runs if name in r['procs']):.1f}"  # type: ignore[index,operator]
            for name in names
        )
        start = statistics.median(float(r["start"]) for r in runs)  # type: ignore[arg-type]
        cpu = statistics.median(float(r["cpu"]) for r in runs)  # type: ignore[arg-type]
        print(
            f"{tree.name:<16} {start:>7.2f} {cpu:>7.2f} {med('pss'):>7.1f} {med('rss'):>7.1f} {med('uss'):>7.1f}   {detail}"
        )


if __name__ == "__main__":
    main()
