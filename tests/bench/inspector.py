"""The inspector's latency budget with 100,000 signals in the journal (issue 15, must-show 6).

    .venv/bin/python -m tests.bench.inspector [--signals 100000]

Seeds a data dir through the storage interface (webhook-like entities with headers, a raw body
and a run each; 1 in 1,000 failed), starts the real daemon on it and times the admin calls a
person makes: the first page of the list (API and page), the list filtered by a rare status and
by source and time range, a text search for a value in one payload and for a common word, a
count, the inspector (API and page) and a few pages deep. Budget: each under 300 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from engine.entity import Entity
from router.storage import open_storage
from router.storage.rows import Run
from tests.admin_support import AUTH
from tests.daemon import RouterProcess

CONFIG = """
[webhooks.orders]

[webhooks.payments]

[[workflows]]
name = "orders-log"
listen = "webhooks.*"

[[workflows.steps]]
action = "log"
message = "{{ __data.n }}"
"""
HEADERS = {
    "host": "router.example.com",
    "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    "content-type": "application/json",
    "accept": "*/*; q=0.5, application/xml",
    "x-request-id": "abc",
    "x-forwarded-for": "203.0.113.9",
}


def seed(db: Path, count: int) -> str:
    storage = open_storage(db, synchronous="OFF")
    target = ""
    batch = 5000
    for start in range(0, count, batch):

        def job(tx, start=start):  # type: ignore[no-untyped-def]
            nonlocal target
            for i in range(start, min(start + batch, count)):
                body = {
                    "n": i,
                    "customer": f"cus_{i:06d}",
                    "email": f"user{i}@example.org",
                    "amount": i % 997,
                    "currency": "eur",
                    "items": [{"sku": f"SKU-{i % 50}", "qty": 1 + i % 3}],
                    "note": "order paid",
                }
                raw = json.dumps(body).encode()
                source = "webhooks.orders" if i % 3 else "webhooks.payments"
                entity = Entity(
                    "webhooks",
                    source,
                    {
                        **body,
                        "__headers": HEADERS,
                        "__method": "POST",
                        "__path": "/webhooks/incoming/orders",
                        "__remote_addr": "10.0.0.1",
                    },
                    raw=raw,
                )
                tx.append_signal(
                    entity, settled=True, ack={"status": 200, "headers": [], "body": '{"status":"accepted"}'}
                )
                status = "failed" if i % 1000 == 7 else "done"
                tx.record_run(
                    entity.id,
                    Run(
                        "orders-log",
                        1,
                        status,
                        entity.received_at,
                        1.2,
                        None,
                        [{"step_id": "step-1", "action": "log", "duration_ms": 0.1}],
                    ),
                )
                if i == count // 2:
                    target = entity.id

        storage.write_sync(job)
    storage.close()
    return target


def timed(
    client: httpx.Client, path: str, params: dict[str, str] | None = None, runs: int = 7
) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = client.get(path, params=params)
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
    return statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--signals", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        router = RouterProcess(Path(tmp), CONFIG)
        router.data_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        target = seed(router.data_dir / "router.db", args.signals)
        print(
            f"seeded {args.signals} signals in {time.perf_counter() - t0:.1f}s "
            f"({(router.data_dir / 'router.db').stat().st_size / 1e6:.0f} MB)"
        )
        router.start()
        try:
            with httpx.Client(
                base_url=f"http://127.0.0.1:{router.admin_port}", headers=AUTH, timeout=30
            ) as client:
                half = client.get(f"/api/signals/{target}").json()["received_at"]
                deep = client.get("/api/signals", params={"limit": 1000}).json()["next_before"]
                needle = f"cus_{args.signals // 2:06d}"
                cases = [
                    ("list, first page (API)", "/api/signals", None),
                    ("list, first page (page)", "/signals", None),
                    ("list, 1000 deep", "/api/signals", {"before": deep}),
                    ("list, status=failed (1 in 1000)", "/api/signals", {"status": "failed"}),
                    (
                        "list, source + since (half)",
                        "/api/signals",
                        {"source": "webhooks.payments", "since": half},
                    ),
                    ("list, until (the older half)", "/api/signals", {"until": half}),
                    ("search, a value in one payload", "/api/signals", {"q": needle}),
                    ("search, the same (page)", "/signals", {"q": needle}),
                    ("search, a word in every payload", "/api/signals", {"q": "paid"}),
                    ("search + status=failed", "/api/signals", {"q": "paid", "status": "failed"}),
                    ("list, workflow=orders-log", "/api/signals", {"workflow": "orders-log"}),
                    ("count, status=done (+ replayable)", "/api/signals/count", {"status": "done"}),
                    ("count, a word in every payload", "/api/signals/count", {"q": "paid"}),
                    ("inspector (API)", f"/api/signals/{target}", None),
                    ("inspector (page)", f"/signals/{target}", None),
                ]
                found = client.get("/api/signals", params={"q": needle}).json()["items"]
                assert [s["id"] for s in found] == [target], found
                worst = 0.0
                for label, path, params in cases:
                    median, peak = timed(client, path, params)
                    worst = max(worst, median)
                    print(f"{label:<36} median {median:7.1f} ms   max {peak:7.1f} ms")
                print(f"worst median: {worst:.1f} ms (budget 300 ms)")
        finally:
            router.stop()


if __name__ == "__main__":
    main()
