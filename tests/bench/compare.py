"""The router next to its peers, in one run on loopback, with the same load for each.

    .venv/bin/python tests/bench/compare.py [--seconds 10] [--connections 64] [--rounds 3] [--timeout 10s]
        [--only router,bare,node-red,n8n,webhook,smtp] [--tools ~/.cache/router-bench]
        [--messages 5000] [--sessions 20] [--size 2048] [--no-install]

HTTP (wrk -t2, same POST body, connections and duration for every peer; medians of `--rounds`
rounds that alternate the peers, all of which stay up for the whole section):
  router    the real daemon, journaled `data` endpoint with a 1-step async workflow (as http.py);
  bare      a bare hypercorn-trio ASGI app answering 200: the floor of the server we use;
  node-red  Node-RED 4, a flow `http in` (POST) -> `http response`, editor and admin API off;
  n8n       n8n 2.8, Webhook -> Respond to Webhook, imported and published with its CLI, SQLite;
  webhook   adnanh/webhook (Debian), a hook with no command.
Per peer: start-up (process start -> first 2xx; the router: -> READY=1), idle RSS, req/s, p50,
p99, peak RSS under load (all processes of the peer), and req/s relative to the router.
SMTP (`smtp` in --only): `smtp-source` against the router, an aiosmtpd sink and Postfix's
`smtp-sink`; msgs/s and ratios. Last, the router daemon's start-up time and idle RSS.

npm peers are installed on first use into --tools (outside the repo); Debian packages (wrk,
webhook, postfix) with apt-get when missing. A peer that cannot be had is reported as skipped.
Every process started is stopped, by PID, before the script exits. Not a CI test.
"""

from __future__ import annotations

import sys

# http.py and smtp.py in this folder are named like stdlib modules: keep the folder off sys.path.
sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("tests/bench")]

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bench.http import LUA, wrk
from tests.bench.peers.http_peers import HTTP_PEERS
from tests.bench.peers.procs import BODY, PeakRss, Service, Skip, rss_mb
from tests.bench.peers.smtp_peers import SMTP_PEERS
from tests.bench.peers.tools import DEFAULT_TOOLS, Context, ensure_command
from tests.bench.smtp import smtp_source

SETTLE_S = 3.0  # after a peer answers, before its idle RSS is read


@dataclass
class Peer:
    name: str
    label: str
    service: Service | None = None
    skipped: str | None = None
    idle_rss: float = 0.0
    idle_detail: list[tuple[str, float]] = field(default_factory=list)  # (process, RSS MB) at idle
    results: list[dict[str, float]] = field(default_factory=list)
    peaks: list[float] = field(default_factory=list)
    cpu_own: float = 0.0  # CPU seconds used during its own measured runs
    cpu_total: float = 0.0  # ... and during the whole measured section

    def median(self, key: str) -> float:
        return statistics.median(r[key] for r in self.results) if self.results else float("nan")


def start_peers(
    ctx: Context,
    table: dict[str, tuple[str, Callable[[Context], Service]]],
    names: list[str],
    peers: list[Peer],
) -> None:
    """Start the peers one after another (so each start-up has the machine to itself), appending
    each to `peers` as soon as it runs, so that the caller's `finally` can stop it."""
    for name in names:
        label, start = table[name]
        peer = Peer(name, label)
        peers.append(peer)
        print(f"starting {name} ...", flush=True)
        try:
            peer.service = start(ctx)
        except Skip as why:
            peer.skipped = str(why)
            print(f"  skipped: {peer.skipped}", flush=True)
            continue
        time.sleep(SETTLE_S)
        peer.idle_detail = [(describe(pid), rss_mb([pid])) for pid in peer.service.pids()]
        peer.idle_rss = sum(mb for _, mb in peer.idle_detail)
        extra = "; ".join(peer.service.notes)
        print(
            f"  answering after {peer.service.startup_s:.2f} s, idle RSS {peer.idle_rss:.0f} MB"
            f"{'; ' + extra if extra else ''}",
            flush=True,
        )


def describe(pid: int) -> str:
    """A short name for a process: its program and first arguments."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return str(pid)
    words = [Path(argv[0]).name, *(a for a in argv[1:4] if a and not a.startswith("/") and not a.isdigit())]
    return " ".join(words)[:60]


def stop_peers(peers: list[Peer]) -> None:
    for peer in peers:
        if peer.service is not None:
            try:
                peer.service.stop()
            except Exception as error:  # noqa: BLE001 - keep stopping the others
                print(f"stopping {peer.name}: {error}", file=sys.stderr)


def ratio(value: float, base: float | None) -> str:
    return f"{value / base:.2f}" if base and value == value else "-"


def run_http(ctx: Context, names: list[str], args: argparse.Namespace) -> Peer | None:
    """The HTTP section; returns the router's Peer (for the closing summary) if it ran."""
    try:
        ensure_command(ctx, "wrk", "wrk")
    except Skip as why:
        print(f"HTTP section skipped: {why}")
        return None
    script = ctx.work / "post.lua"
    script.write_text(LUA)
    assert BODY.decode() in LUA, "the readiness probes must send what wrk sends"
    peers: list[Peer] = []
    try:
        start_peers(ctx, HTTP_PEERS, names, peers)
        for peer in peers:
            if peer.service is None:
                continue
            try:
                wrk(
                    peer.service.target, 2, args.connections, script, args.timeout
                )  # warm-up (JIT, caches, pools)
            except (subprocess.CalledProcessError, AssertionError) as error:
                peer.skipped = f"warm-up failed: {error}"
        live = [p for p in peers if p.service is not None and not p.skipped]
        # Rounds alternate the peers so that a noisy moment on a shared box hits them all alike.
        # All stay up: the CPU each uses while the others are measured is reported below.
        for peer in live:
            assert peer.service is not None
            peer.cpu_total = -peer.service.cpu_s()
        for round_no in range(args.rounds):
            for peer in live:
                assert peer.service is not None
                cpu_before = peer.service.cpu_s()
                try:
                    with PeakRss(peer.service) as peak:
                        result = wrk(
                            peer.service.target, args.seconds, args.connections, script, args.timeout
                        )
                except (subprocess.CalledProcessError, AssertionError) as error:
                    print(f"round {round_no + 1}: {peer.name}: wrk failed: {error}", flush=True)
                    continue
                cpu = peer.service.cpu_s() - cpu_before
                peer.cpu_own += cpu
                result["cpu_ms"] = 1000 * cpu / max(1.0, result["rps"] * args.seconds)
                peer.results.append(result)
                peer.peaks.append(peak.peak)
                print(f"round {round_no + 1}: {peer.name}: {result['rps']:.0f} req/s", flush=True)
        for peer in live:
            assert peer.service is not None
            peer.cpu_total += peer.service.cpu_s()
    finally:
        stop_peers(peers)

    router = next((p for p in peers if p.name == "router" and p.results), None)
    base = router.median("rps") if router else None
    print(
        f"\nHTTP: wrk -t2 -c{args.connections} -d{args.seconds}s --timeout {args.timeout}, POST {len(BODY)}-byte JSON, "
        f"medians of {args.rounds} alternating rounds; RSS = all processes of the peer\n"
    )
    print(
        f"{'peer':<50} {'start s':>7} {'idle MB':>7} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'peak MB':>7} {'CPU ms/req':>10} {'vs router':>9} {'errors':>6}"
    )
    for peer in peers:
        if peer.skipped or not peer.results:
            print(
                f"{peer.label:<50} skipped: {(peer.skipped or 'no wrk run succeeded').splitlines()[0][:200]}"
            )
            continue
        assert peer.service is not None
        errors = sum(int(r["errors"] + r["non2xx"]) for r in peer.results)
        print(
            f"{peer.label:<50} {peer.service.startup_s:>7.2f} {peer.idle_rss:>7.0f} {peer.median('rps'):>7.0f} "
            f"{peer.median('p50'):>7.2f} {peer.median('p99'):>7.2f} {statistics.median(peer.peaks):>7.0f} "
            f"{peer.median('cpu_ms'):>10.2f} {ratio(peer.median('rps'), base):>9} {errors:>6}"
        )
    versions = [n for p in peers if p.service for n in p.service.notes if p.name != "router"]
    if versions:
        print("  " + "; ".join(versions))
    background = [f"{p.name} {p.cpu_total - p.cpu_own:.1f} s" for p in peers if p.results]
    print("  CPU ms/req: the peer's own processes only (wrk's share not counted)")
    print(f"  CPU used by each peer while the others were measured: {', '.join(background)}")
    return next((p for p in peers if p.name == "router" and p.service), None)


def run_smtp(ctx: Context, args: argparse.Namespace) -> None:
    try:
        ensure_command(ctx, "smtp-source", "postfix")
    except Skip as why:
        print(f"SMTP section skipped: {why}")
        return
    peers: list[Peer] = []
    stored = 0
    try:
        start_peers(ctx, SMTP_PEERS, list(SMTP_PEERS), peers)
        for peer in peers:
            if peer.service is None:
                continue
            try:
                smtp_source(
                    int(peer.service.target.rsplit(":", 1)[1]),
                    min(500, args.messages),
                    args.sessions,
                    args.size,
                )  # warm-up
            except RuntimeError as error:
                peer.skipped = f"warm-up failed: {error}"
        live = [p for p in peers if p.service is not None and not p.skipped]
        for round_no in range(args.rounds):
            for peer in live:
                assert peer.service is not None
                before = peer.service.count_stored() if peer.service.count_stored else 0
                try:
                    with PeakRss(peer.service) as peak:
                        rate, _ = smtp_source(
                            int(peer.service.target.rsplit(":", 1)[1]),
                            args.messages,
                            args.sessions,
                            args.size,
                        )
                except RuntimeError as error:
                    print(f"round {round_no + 1}: {peer.name}: {error}", flush=True)
                    continue
                if peer.service.count_stored:
                    stored += peer.service.count_stored() - before
                peer.results.append({"rate": rate})
                peer.peaks.append(peak.peak)
                print(f"round {round_no + 1}: {peer.name}: {rate:.0f} msgs/s", flush=True)
    finally:
        stop_peers(peers)

    router = next((p for p in peers if p.name == "router" and p.results), None)
    base = router.median("rate") if router else None
    print(
        f"\nSMTP: smtp-source -s {args.sessions} -m {args.messages} -l {args.size}, "
        f"medians of {args.rounds} alternating rounds\n"
    )
    print(f"{'peer':<50} {'msgs/s':>7} {'peak MB':>7} {'vs router':>9}")
    for peer in peers:
        if peer.skipped or not peer.results:
            print(f"{peer.label:<50} skipped: {(peer.skipped or 'no run succeeded').splitlines()[0][:200]}")
            continue
        print(
            f"{peer.label:<50} {peer.median('rate'):>7.0f} {statistics.median(peer.peaks):>7.0f} "
            f"{ratio(peer.median('rate'), base):>9}"
        )
    if router:
        sent = len(router.results) * args.messages
        print(f"  router journal: {stored}/{sent} messages of the measured rounds stored")


def print_router_summary(router: Peer) -> None:
    assert router.service is not None
    print("\nrouter daemon (the HTTP section's instance, before any load):")
    print(f"  {'; '.join(router.service.notes)}; start-up = process start -> READY=1 (sd_notify)")
    detail = ", ".join(f"{name} {mb:.0f} MB" for name, mb in router.idle_detail)
    print(f"  idle RSS {router.idle_rss:.0f} MB, {SETTLE_S:.0f} s after it answered: {detail}")


def exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the `finally` blocks that stop the peers


def main() -> None:
    # SIGTERM/SIGHUP would end Python without running `finally`; SIGINT is ignored in background jobs.
    signal.signal(signal.SIGTERM, exit_on_signal)
    signal.signal(signal.SIGHUP, exit_on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per peer and round")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--timeout", default="10s", help="wrk's per-request limit; slower answers count as errors"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--only",
        default=",".join([*HTTP_PEERS, "smtp"]),
        help="comma-separated: " + ", ".join([*HTTP_PEERS, "smtp"]),
    )
    parser.add_argument("--tools", type=Path, default=DEFAULT_TOOLS, help="where npm peers are installed")
    parser.add_argument(
        "--no-install", action="store_true", help="print install commands instead of running them"
    )
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--size", type=int, default=2048)
    args = parser.parse_args()
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(only) - {*HTTP_PEERS, "smtp"}
    if unknown:
        parser.error(f"unknown peers: {', '.join(sorted(unknown))}")

    node = "none"
    if shutil.which("node"):
        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    print(
        f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, python {sys.version.split()[0]}, "
        f"node {node} (absolute numbers depend on the machine and its neighbours: read ratios)\n"
    )
    with tempfile.TemporaryDirectory(prefix="router-compare-") as work:
        ctx = Context(Path(work), args.tools.expanduser(), not args.no_install)
        router = None
        http_names = [name for name in HTTP_PEERS if name in only]
        if http_names:
            router = run_http(ctx, http_names, args)
        if "smtp" in only:
            if http_names:
                print()
            run_smtp(ctx, args)
        if router is not None:
            print_router_summary(router)


if __name__ == "__main__":
    main()
