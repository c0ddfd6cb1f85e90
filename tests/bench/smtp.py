"""SMTP throughput against a bare aiosmtpd sink, and HTTP latency under a flood of large mail.

    .venv/bin/python tests/bench/smtp.py [--messages 5000] [--sessions 20] [--size 2048]
                                         [--requests 3000] [--flood-senders 4] [--flood-mb 5]

Runs, one after another on this machine, and prints in one report:
  1. `smtp-source -s 20 -m 5000 -l 2048` against a bare aiosmtpd server with a no-op handler
     (the ceiling of the library we use), then against the router (each message parsed and
     journaled with fsync before the 250): msgs/s for both and the ratio;
  2. HTTP p50/p99 of sequential keep-alive requests to a JSON `data` endpoint of the same
     router, first idle, then while `--flood-senders` clients keep sending ~5 MB emails (a
     base64 attachment, the common shape of large mail); the p99 ratio.
Needs `smtp-source` (Debian package postfix). Not a CI test: numbers depend on the machine.
"""

from __future__ import annotations

import sys

# Scripts in this folder are named like stdlib modules (http.py, smtp.py): keep it off sys.path.
sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("tests/bench")]

import argparse
import base64
import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.daemon import RouterProcess, free_port

SINK = """
import asyncio, sys
from aiosmtpd.smtp import SMTP

class Handler:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Handler(), hostname="sink"), "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    await server.serve_forever()

asyncio.run(main())
"""

ROUTER_CONFIG = """
[mailboxes.bench]
address = "bench@example.com"

[endpoints.ping]
return_type = "data"
return_data = '{"ok": true}'
"""


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.recv(100)
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


def smtp_source(port: int, messages: int, sessions: int, size: int) -> tuple[float, int]:
    """msgs/s and how many messages got a 2xx, from smtp-source's own run."""
    t0 = time.perf_counter()
    result = subprocess.run(
        [
            "smtp-source",
            "-s",
            str(sessions),
            "-m",
            str(messages),
            "-l",
            str(size),
            "-f",
            "bench@sender.example",
            "-t",
            "bench@example.com",
            f"127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    elapsed = time.perf_counter() - t0
    if result.returncode != 0:
        raise RuntimeError(f"smtp-source failed: {result.stderr.strip()[-500:]}")
    return messages / elapsed, messages


def start_sink() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", SINK, str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    wait_port(port)
    return proc, port


def journaled(router: RouterProcess) -> int:
    import sqlite3

    db = sqlite3.connect(router.data_dir / "router.db")
    try:
        return int(db.execute("SELECT count(*) FROM signals WHERE source = 'mailboxes.bench'").fetchone()[0])
    finally:
        db.close()


def big_message(megabytes: float, index: int) -> bytes:
    raw = os.urandom(int(megabytes * 1024 * 1024 * 3 / 4))
    body = base64.encodebytes(raw)
    return (
        (
            f"From: Flood <flood@sender.example>\r\nTo: bench@example.com\r\nSubject: flood {index}\r\n"
            f"Message-ID: <flood-{index}-{time.time_ns()}@sender.example>\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n--b0\r\nContent-Type: text/plain\r\n\r\n'
            "see attachment\r\n--b0\r\nContent-Type: application/octet-stream\r\n"
            'Content-Disposition: attachment; filename="big.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        ).encode()
        + body.replace(b"\n", b"\r\n")
        + b"\r\n--b0--\r\n"
    )


def flood(port: int, payloads: list[bytes], stop: threading.Event, sent: list[int]) -> None:
    """One sender: raw SMTP over a socket (sendall is C; the client stays cheap)."""
    i = 0
    while not stop.is_set():
        payload = payloads[i % len(payloads)].replace(
            b"Message-ID: <flood-", f"Message-ID: <f{i}-".encode(), 1
        )
        i += 1
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
                f = s.makefile("rb")
                f.readline()
                s.sendall(b"EHLO flood\r\n")
                while f.readline()[3:4] == b"-":
                    pass
                s.sendall(b"MAIL FROM:<flood@sender.example>\r\nRCPT TO:<bench@example.com>\r\nDATA\r\n")
                for _ in range(3):
                    f.readline()
                s.sendall(payload + b".\r\n")
                if f.readline().startswith(b"250"):
                    sent[0] += 1
                s.sendall(b"QUIT\r\n")
        except OSError:
            time.sleep(0.1)


def http_latencies(url: str, requests: int) -> list[float]:
    out = []
    with httpx.Client(timeout=30) as client:
        for _ in range(50):
            client.get(url)
        for _ in range(requests):
            t0 = time.perf_counter()
            response = client.get(url)
            out.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, response.text
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--flood-senders", type=int, default=4)
    parser.add_argument("--flood-mb", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("smtp-source") is None:
        sys.exit("smtp-source not found: apt-get install postfix")

    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, load {os.getloadavg()[0]:.1f}")
    sink, sink_port = start_sink()
    with tempfile.TemporaryDirectory() as tmp:
        router = RouterProcess(Path(tmp), ROUTER_CONFIG)
        router.start()
        try:
            url = router.url("endpoints.ping")
            wait_port(router.smtp_port)
            for port in (sink_port, router.smtp_port):  # warm-up
                smtp_source(port, min(500, args.messages), args.sessions, args.size)
            # Alternate the two so a noisy neighbour hurts both alike; report medians.
            sink_rates, router_rates, stored, sent = [], [], 0, 0
            for _ in range(args.rounds):
                sink_rates.append(smtp_source(sink_port, args.messages, args.sessions, args.size)[0])
                before = journaled(router)
                rate, n = smtp_source(router.smtp_port, args.messages, args.sessions, args.size)
                router_rates.append(rate)
                stored, sent = stored + journaled(router) - before, sent + n
            sink.terminate()
            s_med, r_med = statistics.median(sink_rates), statistics.median(router_rates)
            rounds = ", ".join(f"{a:.0f}/{b:.0f}" for a, b in zip(sink_rates, router_rates, strict=True))
            print(
                f"smtp-source -s {args.sessions} -m {args.messages} -l {args.size}, {args.rounds} rounds (sink/router: {rounds})"
            )
            print(f"  aiosmtpd sink (no-op handler): {s_med:8.0f} msgs/s (median)")
            print(
                f"  router (parsed + journaled):   {r_med:8.0f} msgs/s (median; {stored}/{sent} in the journal)"
            )
            print(f"  ratio router / sink:           {r_med / s_med:8.2f}   (aim >= 0.8)")

            idle = http_latencies(url, args.requests // 2)
            payloads = [big_message(args.flood_mb, i) for i in range(2)]
            stop, sent_big = threading.Event(), [0]
            senders = [
                threading.Thread(target=flood, args=(router.smtp_port, payloads, stop, sent_big), daemon=True)
                for _ in range(args.flood_senders)
            ]
            for t in senders:
                t.start()
            time.sleep(1.0)
            t0, first = time.perf_counter(), sent_big[0]
            loaded = http_latencies(url, args.requests)
            flood_secs, accepted = time.perf_counter() - t0, sent_big[0] - first
            stop.set()
            for t in senders:
                t.join(60)
            time.sleep(2.0)
            idle += http_latencies(url, args.requests - args.requests // 2)  # idle = before + after the flood
            mb = len(payloads[0]) / 1e6
            print(f"HTTP GET JSON endpoint, {args.requests} sequential keep-alive requests:")
            print(f"  idle:   p50 {statistics.median(idle):6.2f} ms   p99 {pct(idle, 99):6.2f} ms")
            print(
                f"  flood:  p50 {statistics.median(loaded):6.2f} ms   p99 {pct(loaded, 99):6.2f} ms"
                f"   ({args.flood_senders} senders, {mb:.1f} MB emails, {accepted} accepted in"
                f" {flood_secs:.1f}s = {accepted * mb / max(flood_secs, 1e-9):.0f} MB/s)"
            )
            print(f"  p99 flood / idle:  {pct(loaded, 99) / pct(idle, 99):5.2f}   (aim <= 2)")
            errors = re.findall(r"level=error.*", router.log())
            if errors:
                print(f"router errors: {len(errors)}, first: {errors[0][:200]}")
        finally:
            router.stop()
            if sink.poll() is None:
                sink.terminate()


if __name__ == "__main__":
    main()
