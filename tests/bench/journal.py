"""Journal append throughput: one commit per signal vs group commit vs no fsync.

    .venv/bin/python tests/bench/journal.py [--seconds 5]

Prints appends/s at 1 and 64 concurrent writers for each mode, in one run, and the ratio of
group commit to one-commit-per-signal. Real SQLite files in a temp dir, WAL.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import trio

from engine.entity import Entity
from router.dispatch.journal import Journal
from router.storage import open_storage

MODES = {
    "one commit per signal (FULL)": ("FULL", 1),
    "group commit (FULL)": ("FULL", 512),
    "no fsync (OFF, group)": ("OFF", 512),
}


async def measure(path: Path, synchronous: str, max_batch: int, writers: int, seconds: float) -> float:
    storage = open_storage(path, synchronous=synchronous)
    storage.max_batch = max_batch
    jr = Journal(storage)
    count = 0
    payload = {"order": 123, "email": "a@example.com", "items": [1, 2, 3]}
    async with trio.open_nursery() as nursery:
        await nursery.start(storage.run_writer)
        deadline = trio.current_time() + seconds

        async def writer() -> None:
            nonlocal count
            while trio.current_time() < deadline:
                await jr.append(Entity("webhooks", "webhooks.bench", dict(payload)))
                count += 1

        t0 = time.perf_counter()
        async with trio.open_nursery() as writers_nursery:
            for _ in range(writers):
                writers_nursery.start_soon(writer)
        elapsed = time.perf_counter() - t0
        storage.stop_writer()
    storage.close()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for writers in (1, 64):
            for name, (sync, batch) in MODES.items():
                rates = []
                for r in range(args.repeats):
                    path = Path(tmp) / f"{sync}-{batch}-{writers}-{r}.db"
                    rates.append(trio.run(measure, path, sync, batch, writers, args.seconds))
                results[(name, writers)] = statistics.median(rates)
                print(
                    f"{name:<32} writers={writers:<3} {results[(name, writers)]:>9.0f} appends/s "
                    f"(median of {args.repeats}: {', '.join(f'{x:.0f}' for x in rates)})",
                    flush=True,
                )
    base = results[("one commit per signal (FULL)", 64)]
    group = results[("group commit (FULL)", 64)]
    print(f"\ngroup commit / one-commit-per-signal at 64 writers: {group / base:.1f}x")
    print(f"group commit / no-fsync at 64 writers: {group / results[('no fsync (OFF, group)', 64)]:.2f}")


if __name__ == "__main__":
    main()
