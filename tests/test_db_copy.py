"""`router db copy --to postgresql://…`: a stopped SQLite data dir moves to PostgreSQL with its
journal, sources (URLs and keys keep working), schedules with their cursors and records."""

from __future__ import annotations

import json

import httpx

from tests import pg
from tests.daemon import RouterProcess

CONFIG = """
[endpoints.hello]
return_type = "data"
return_data = '{"ok": true}'
add_authentication = false

[webhooks.payments]

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
    assert counts["signals"] == len(signals) and counts["records"] == 10 and counts["sources"] == 3
    assert counts["runs"] >= 10 and counts["dedup"] >= 5 and counts["schedule_state"] == 1
    again = router.cli("db", "copy", "--to", url, check=False)
    assert again.returncode == 1 and "not empty" in again.stderr
    # The same config, now on PostgreSQL: same URLs, same keys, same journal, the cursor carried over.
    router.database_url = url
    router.write_config(CONFIG)
    router.start()
    after = router.sources()
    for name in before:
        assert (after[name].get("url"), after[name].get("api_key")) == (
            before[name].get("url"),
            before[name].get("api_key"),
        ), name
    assert {s["id"]: s["status"] for s in router.signals() if s["id"] in signals} == {
        sid: s["status"] for sid, s in signals.items()
    }
    moved = json.loads(router.cli("schedules", "--json").stdout)
    assert moved[0]["name"] == cursor[0]["name"] == "tick"
    with httpx.Client(timeout=10) as client:
        r = client.post(after["endpoints.hello"]["url"], json={"n": 1}, headers={"Idempotency-Key": "h1"})
        assert r.status_code == 200 and r.headers.get("Idempotent-Replayed") in (None, "true")
        assert client.post(
            after["webhooks.payments"]["url"], json={"n": 999}, headers={"X-API-Key": key}
        ).status_code in (200, 202)
    router.wait_for(lambda: len(json.loads(router.cli("records", "list", "note", "--json").stdout)) == 11)
    notes = json.loads(router.cli("records", "list", "note", "--json").stdout)
    assert sorted(str(r["n"]) for r in notes)[:5] == ["0", "1", "100", "101", "102"]
