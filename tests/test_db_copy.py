"""`router db copy --to postgresql://…`: a stopped SQLite data dir moves to PostgreSQL with its
journal, sources (URLs and keys keep working), schedules with their cursors and records."""

from __future__ import annotations

import json

import httpx

from tests import pg
from tests.daemon import RouterProcess
from tests.rotation_support import call, pair, token

CONFIG = """
[endpoints.hello]
return_type = "data"
return_data = '{"ok": true}'
add_authentication = false

[webhooks.payments]

[endpoints.signed]
return_type = "data"
return_data = '{"ok": true}'
add_authentication = true

[schedules.tick]
every = "1s"

[[workflows]]
name = "note"
listen = ["endpoints.hello", "webhooks.payments"]

[[workflows.steps]]
action = "create_record"
record_type = "note"
fields = { n = "{{ __data.n }}", amount = 12.5 }
"""


def test_copy_moves_a_data_dir_and_the_endpoints_answer_on_postgres(router_factory, pg_database: str) -> None:  # type: ignore[no-untyped-def]
    url = pg.url(pg_database)
    router: RouterProcess = router_factory(CONFIG)
    before = router.sources()
    key = before["webhooks.payments"]["api_key"]
    with httpx.Client(timeout=10) as client:
        for n in range(5):
            assert (
                client.post(
                    before["endpoints.hello"]["url"], json={"n": n}, headers={"Idempotency-Key": f"h{n}"}
                ).status_code
                == 200
            )
            assert client.post(
                before["webhooks.payments"]["url"], json={"n": 100 + n}, headers={"X-API-Key": key}
            ).status_code in (200, 202)
    router.wait_for(lambda: len(json.loads(router.cli("records", "list", "note", "--json").stdout)) == 10)
    # A generated JWT pair, and a webhook key rotated with a grace that is still running: both move.
    jwt_pair = pair(before["endpoints.signed"])
    assert call(before["endpoints.signed"]["url"], token(*jwt_pair)) == 200
    rotated = json.loads(router.cli("endpoints", "rotate", "payments", "--grace", "1h", "--json").stdout)
    new_key = rotated["api_key"]
    assert new_key != key
    with httpx.Client(timeout=10) as client:  # a refusal and a body with a word to search for
        bare = before["webhooks.payments"]["url"].split("?")[0]  # the printed URL carries the key
        bad = client.post(bare, json={"n": -1}, headers={"X-API-Key": "wrong"})
    assert bad.status_code == 401, bad.text
    router.wait_for(lambda: router.cli("refused", "--json").stdout.count('"id"') >= 1)
    router.wait_for(lambda: len(router.signals("--source", "schedules.tick")) >= 2)
    # A copy while the daemon runs is refused: its last signals would be missed.
    busy = router.cli("db", "copy", "--to", url, check=False)
    assert busy.returncode == 1 and "stop the daemon first" in busy.stderr
    router.stop()
    from router.storage.copy import in_use_by

    router.wait_for(lambda: not in_use_by(router.data_dir / "router.db"))  # its runner exits just after it
    signals = {s["id"]: s for s in router.signals()}
    cursor = json.loads(router.cli("schedules", "--json").stdout)
    copied = router.cli("db", "copy", "--to", url, "--json")
    counts = json.loads(copied.stdout)
    print(f"\nrouter db copy: {counts}")
    assert counts["signals"] == len(signals) and counts["records"] == 10 and counts["sources"] == 4
    assert counts["runs"] >= 10 and counts["dedup"] >= 5 and counts["schedule_state"] == 1
    assert counts["signal_bodies"] >= 10 and counts["refused"] >= 1
    again = router.cli("db", "copy", "--to", url, check=False)
    assert again.returncode == 1 and "not empty" in again.stderr
    # The same config, now on PostgreSQL: same URLs, same keys, same journal, the cursor carried over.
    router.database_url = url
    router.write_config(CONFIG)
    router.start()
    after = router.sources()
    for name in before:
        if name != "webhooks.payments":
            assert (after[name].get("url"), after[name].get("api_key")) == (
                before[name].get("url"),
                before[name].get("api_key"),
            ), name
    assert pair(after["endpoints.signed"]) == jwt_pair
    assert call(after["endpoints.signed"]["url"], token(*jwt_pair)) == 200
    assert after["webhooks.payments"]["api_key"] == new_key and after["webhooks.payments"]["previous"]
    # The inspector's data came along: search (indexed by the copy), raw bodies, refusals.
    found = [s["id"] for s in router.signals("-q", "100") if s["source"] == "webhooks.payments"]
    assert len(found) == 1, found
    sid = found[0]
    assert router.read(lambda tx: tx.signal_body(sid)) is not None
    assert router.cli("refused", "--json").stdout.count('"id"') >= 1
    # Every signal came along; settled ones as they were (a pending one, a tick fired just before
    # the stop, is run by the PostgreSQL node now, as the SQLite node would have on its next start).
    now = {s["id"]: s["status"] for s in router.signals() if s["id"] in signals}
    assert set(now) == set(signals)
    settled = {sid: s["status"] for sid, s in signals.items() if s["status"] in ("done", "failed")}
    assert {sid: now[sid] for sid in settled} == settled and len(settled) >= len(signals) - 2
    moved = json.loads(router.cli("schedules", "--json").stdout)
    assert moved[0]["name"] == cursor[0]["name"] == "tick"
    with httpx.Client(timeout=10) as client:
        r = client.post(after["endpoints.hello"]["url"], json={"n": 1}, headers={"Idempotency-Key": "h1"})
        assert r.status_code == 200 and r.headers.get("Idempotent-Replayed") in (None, "true")
        for api_key in (key, new_key):  # the old key still in its grace, and the new one
            assert client.post(
                after["webhooks.payments"]["url"], json={"n": 999}, headers={"X-API-Key": api_key}
            ).status_code in (200, 202)
    router.wait_for(lambda: len(json.loads(router.cli("records", "list", "note", "--json").stdout)) == 12)
    notes = json.loads(router.cli("records", "list", "note", "--json").stdout)
    assert sorted(str(r["n"]) for r in notes)[:5] == ["0", "1", "100", "101", "102"]
