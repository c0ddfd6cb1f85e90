"""Issue 15: the signal list as an inspector's index: cursor paging through everything, text
search, channel/source/status/workflow filters and a time range, the same in the admin API and
`router signals`; counting, NDJSON export and bulk replay by filter. Real daemon, real clients.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.admin_support import Admin
from tests.standins.http_target import HttpTarget, Scripted

CONFIG = """
[webhooks.orders]

[webhooks.forward]

[endpoints.hello]
return_data = "ok"

[[workflows]]
name = "orders-log"
listen = "webhooks.orders"

[[workflows.steps]]
action = "log"
message = "order {{ __data.n }}"

[[workflows]]
name = "forward"
listen = "webhooks.forward"
max_attempts = 1

[[workflows.steps]]
id = "post"
action = "webhook"
url = "{target}/hook"
json = { n = "{{ __data.n }}" }
"""


@pytest.fixture
def target() -> Iterator[HttpTarget]:
    with HttpTarget() as server:
        yield server


def _wait(what: str, predicate, timeout: float = 90.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def send_many(url: str, n: int, make) -> list[str]:  # type: ignore[no-untyped-def]
    with httpx.Client(timeout=10) as client, ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda i: client.post(url, json=make(i)).json()["signal_id"], range(n)))


def test_paging_search_filters_time_range_export_and_bulk_replay(router_factory, target) -> None:  # type: ignore[no-untyped-def]
    router = router_factory(CONFIG.replace("{target}", target.base_url))
    admin = Admin(router)
    orders = admin.source("webhooks.orders")["url"]
    ids = send_many(orders, 1000, lambda i: {"n": i, "customer": f"cust-{i:04d}", "ref": f"ORD-{i:04d}-X"})
    first = min(ids)
    _wait(
        "1000 done", lambda: admin.ok("GET", "/api/signals/count", params={"status": "done"})["count"] == 1000
    )

    # Cursor paging reaches the first signal, every signal once.
    seen: list[str] = []
    received: dict[str, str] = {}
    cursor: str | None = None
    while True:
        page = admin.ok(
            "GET", "/api/signals", params={"limit": 300, **({"before": cursor} if cursor else {})}
        )
        seen += [s["id"] for s in page["items"]]
        received.update({s["id"]: s["received_at"] for s in page["items"]})
        cursor = page["next_before"]
        if not cursor:
            break
    assert seen[-1] == first and sorted(seen) == sorted(ids) and len(seen) == 1000
    # ...and back: `after` gives the page just newer.
    back = admin.ok("GET", "/api/signals", params={"limit": 10, "after": first})
    assert [s["id"] for s in back["items"]] == sorted(ids)[1:11][::-1]

    # A value inside one payload finds exactly that signal (a word's parts in order).
    hit = admin.ok("GET", "/api/signals", params={"q": "ORD-0417-X"})["items"]
    assert [s["id"] for s in hit] == [ids[417]]
    assert [s["id"] for s in admin.ok("GET", "/api/signals", params={"q": ids[5]})["items"]] == [ids[5]]
    assert admin.ok("GET", "/api/signals", params={"q": "cust-0417 ORD-0418"})["items"] == []  # every word
    assert len(admin.ok("GET", "/api/signals", params={"q": "cust-04*", "limit": 1000})["items"]) == 100
    assert admin.ok("GET", "/api/signals", params={"q": '"); DROP TABLE signals; --'})["items"] == []

    # The time range narrows (received_at); with the source filter, the channel, the workflow.
    since = received[ids[600]]
    newer = admin.ok("GET", "/api/signals/count", params={"since": since})["count"]
    assert 0 < newer < 1000 and newer == sum(1 for at in received.values() if at >= since)
    in_range = admin.ok("GET", "/api/signals", params={"since": since, "limit": 1000})["items"]
    assert sorted(s["id"] for s in in_range) == sorted(i for i, at in received.items() if at >= since)
    assert admin.ok("GET", "/api/signals/count", params={"until": since})["count"] == 1000 - newer
    assert (
        admin.ok("GET", "/api/signals/count", params={"since": "1h", "channel": "webhooks"})["count"] == 1000
    )
    assert admin.ok("GET", "/api/signals/count", params={"channel": "endpoints"})["count"] == 0
    assert admin.ok("GET", "/api/signals/count", params={"workflow": "orders-log"})["count"] == 1000
    assert admin.ok("GET", "/api/signals/count", params={"workflow": "forward"})["count"] == 0
    assert admin.get("/api/signals", params={"since": "last tuesday"}).status_code == 400

    # The CLI takes the same filters.
    cli = json.loads(router.cli("signals", "--search", "ORD-0417-X", "--json").stdout)
    assert [c["id"] for c in cli] == [ids[417]] and cli[0]["entity"]["ref"] == "ORD-0417-X"
    assert (
        len(json.loads(router.cli("signals", "--since", since, "--limit", "1000", "--json").stdout)) == newer
    )
    lines = router.cli("signals", "--ndjson", "--source", "orders").stdout.splitlines()
    assert len(lines) == 1000 and json.loads(lines[-1])["id"] == first

    # Export through the API: NDJSON of every match.
    export = admin.get("/api/signals/export", params={"q": "cust-00*"})
    rows = [json.loads(line) for line in export.text.splitlines()]
    assert export.headers["content-type"].startswith("application/x-ndjson") and len(rows) == 100
    assert rows[0]["entity"]["customer"].startswith("cust-00") and "runs" in rows[0]

    # Bulk replay by filter: failed, source forward, last hour; the count before equals the replayed.
    forward = admin.source("webhooks.forward")["url"]
    ok_forward = send_many(forward, 5, lambda i: {"n": 100 + i})  # done: not swept in by status=failed
    _wait("5 done", lambda: [admin.signal(s)["status"] for s in ok_forward] == ["done"] * 5)
    target.answer(*[Scripted(500, "down")] * 30)
    failed = send_many(forward, 30, lambda i: {"n": i})
    _wait("30 settled", lambda: all(admin.signal(s)["status"] in ("done", "failed") for s in failed))
    failed = [s for s in failed if admin.signal(s)["status"] == "failed"]
    assert len(failed) >= 25  # the target answered 500 to (nearly) all of them
    flt = {"status": "failed", "source": "webhooks.forward", "since": "1h"}
    counted = admin.ok("GET", "/api/signals/count", params=flt)
    assert counted["count"] == counted["replayable"] == len(failed)
    result = admin.ok("POST", "/api/signals/replay", json=counted["filter"])
    assert sorted(result["replayed"]) == sorted(failed) and result["skipped"] == []
    assert 0 < result["spread_s"] <= 1.0  # at most 30 signals at 50/s
    _wait(
        "the replays to finish",
        lambda: (
            admin.ok("GET", "/api/signals/count", params={"source": "webhooks.forward", "status": "done"})[
                "count"
            ]
            == 35
        ),
    )
    assert all(admin.signal(s)["replays"] == 0 for s in ok_forward)
    assert router.cli("replay", "--status", "pending", check=False).returncode == 2
    dry = router.cli("replay", "--source", "forward", "--since", "1h", "--dry-run").stdout
    assert "35 signals would be replayed" in dry
    out = router.cli("replay", "--source", "forward", "--status", "done", "--spread", "0").stdout
    assert "35 signals queued for replay" in out
    _wait(
        "the CLI's replays",
        lambda: (
            all(admin.signal(s)["replays"] == 1 for s in ok_forward)
            and admin.ok(
                "GET", "/api/signals/count", params={"source": "webhooks.forward", "status": "done"}
            )["count"]
            == 35
        ),
    )
    admin.close()
