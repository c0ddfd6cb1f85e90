"""Does a flood of refused requests slow good signals? (issue 15)

    .venv/bin/python -m tests.bench.refused [--seconds 8]

Starts the real daemon twice, `[admin] refused_keep = 200` and `= 0` (nothing kept), and in each
sends good webhook signals one at a time (their acknowledgement waits for the journal commit)
while 4 threads flood the same daemon with bad-key requests (3 KiB bodies). Prints the good
signals' latency p50/p99 with no flood and during it, for both settings: the difference between
the two settings is what keeping the refusals costs the journal.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from tests.daemon import RouterProcess

CONFIG = """
[webhooks.good]

[webhooks.target]
"""


def good_latencies(url: str, seconds: float) -> list[float]:
    out = []
    deadline = time.monotonic() + seconds
    with httpx.Client(timeout=10) as client:
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            assert client.post(url, json={"n": 1}).status_code == 200
            out.append((time.perf_counter() - t0) * 1000)
    return out


def run(keep: int, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        router = RouterProcess(Path(tmp), CONFIG, admin_extra=f"refused_keep = {keep}").start()
        try:
            srcs = router.sources()
            good, bad = (
                srcs["webhooks.good"]["url"],
                srcs["webhooks.target"]["url"].split("?")[0] + "?apiKey=wrong",
            )
            quiet = good_latencies(good, seconds / 2)
            stop = threading.Event()
            flooded = [0]

            def flood() -> None:
                body = b'{"pad": "' + b"p" * 3000 + b'"}'
                with httpx.Client(timeout=10) as client:
                    while not stop.is_set():
                        client.post(bad, content=body, headers={"content-type": "application/json"})
                        flooded[0] += 1

            threads = [threading.Thread(target=flood) for _ in range(4)]
            for t in threads:
                t.start()
            loud = good_latencies(good, seconds)
            stop.set()
            for t in threads:
                t.join()
        finally:
            router.stop()

    def pct(xs: list[float], p: float) -> float:
        return statistics.quantiles(xs, n=100)[int(p) - 1] if len(xs) > 2 else max(xs)

    return {
        "quiet_p50": pct(quiet, 50),
        "quiet_p99": pct(quiet, 99),
        "flood_p50": pct(loud, 50),
        "flood_p99": pct(loud, 99),
        "refused_per_s": flooded[0] / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    for keep in (0, 200):
        r = run(keep, args.seconds)
        print(
            f"refused_keep={keep:<4} good signal ms: quiet p50 {r['quiet_p50']:.2f} p99 {r['quiet_p99']:.2f} | "
            f"during a flood of {r['refused_per_s']:.0f} refused/s: p50 {r['flood_p50']:.2f} p99 {r['flood_p99']:.2f}"
        )


if __name__ == "__main__":
    main()
