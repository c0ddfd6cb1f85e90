"""`[router] retention`: settled signals older than it are pruned with their runs and effects;
pending work and young signals stay; expired idempotency keys go (against the real daemon)."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import httpx

from router.dispatch.retention import id_cutoff

CONFIG = """
[webhooks.in]

[webhooks.quiet]

[[workflows]]
name = "keep"
listen = "webhooks.in"

[[workflows.steps]]
action = "create_record"
record_type = "note"
fields = { n = "{{ __data.n }}" }
"""


def query(router: Any, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{router.data_dir / 'router.db'}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def test_old_settled_signals_are_pruned_young_and_pending_ones_stay(router_factory) -> None:  # type: ignore[no-untyped-def]
    router = router_factory(CONFIG, router_extra='retention = "4s"', http_extra='idempotency_window = "2s"')
    url = router.url("webhooks.in")
    with httpx.Client(timeout=10) as client:
        old = [
            client.post(url, json={"n": i}, headers={"Idempotency-Key": f"k{i}"}).json()["signal_id"]
            for i in range(5)
        ]
    router.wait_for(lambda: query(router, "SELECT count(*) FROM signals WHERE status = 'done'")[0][0] == 5)
    assert query(router, "SELECT count(*) FROM runs")[0][0] == 5
    assert query(router, "SELECT count(*) FROM dedup")[0][0] == 5
    # An old signal that is still pending (as if its runner were down) must survive any retention.
    router.stop()
    conn = sqlite3.connect(router.data_dir / "router.db")
    with conn:
        conn.execute(
            "UPDATE signals SET status = 'pending', not_before = ? WHERE id = ?", (time.time() + 3600, old[0])
        )
    conn.close()
    router.start()
    with httpx.Client(timeout=10) as client:
        young = client.post(url, json={"n": 99}).json()["signal_id"]

    def pruned() -> set[str] | None:
        # One snapshot decides: the old settled ones are gone and (in the same read) who stayed.
        ids = {row[0] for row in query(router, "SELECT id FROM signals")}
        # The keys go in the same pass, just after the signals (window 2 s: expired).
        keys = query(router, "SELECT count(*) FROM dedup WHERE key LIKE 'k%'")[0][0]
        return None if ids & set(old[1:]) or keys else ids

    ids = router.wait_for(pruned, timeout=20, interval=0.2)
    assert old[0] in ids and young in ids, ids  # pending stays; young stays
    assert {row[0] for row in query(router, "SELECT signal_id FROM runs")} <= {old[0], young}
    # Records are the user's data: retention never touches them. The young signal's run writes
    # the sixth whenever its runner gets to it (under load, after the prune: this was the flake).
    router.wait_for(lambda: query(router, "SELECT count(*) FROM record_note")[0][0] == 6)
    assert "msg=pruned" in router.log()


def test_id_cutoff_orders_like_signal_ids() -> None:
    from ulid import ULID

    now = time.time()
    fresh = str(ULID())
    assert id_cutoff(now - 1) < fresh < id_cutoff(now + 1)
    assert id_cutoff(-5) == "0000000000"
