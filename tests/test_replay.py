"""Issue 15: a replay re-executes. Replaying a done signal used to answer `{"replayed": [ID]}` and
run nothing (the dispatcher skipped workflows already done). Now every listening workflow runs
again, recorded as new runs; retries inside a round still skip what that round did.

Against the real daemon: an HTTP target stands in for the downstream of `webhook` steps.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.admin_support import Admin
from tests.standins.http_target import HttpTarget, Scripted

CONFIG = """
[webhooks.orders]

[[workflows]]
name = "notify"
listen = "webhooks.orders"

[[workflows.steps]]
id = "post"
action = "webhook"
url = "{target}/notify"
json = { n = "{{ __data.n }}" }

[[workflows.steps]]
parent = "post"
action = "create_record"
record_type = "order"
fields = { n = "{{ __data.n }}" }

[[workflows]]
name = "audit"
listen = "webhooks.orders"

[[workflows.steps]]
id = "post"
action = "webhook"
url = "{target}/audit"
json = { n = "{{ __data.n }}" }
"""


@pytest.fixture
def target() -> Iterator[HttpTarget]:
    with HttpTarget() as server:
        yield server


def _calls(target: HttpTarget, path: str) -> list[str]:
    with target.lock:
        return [r.header("Idempotency-Key") or "" for r in target.requests if r.path == path]


def _wait(what: str, predicate, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_replay_of_a_done_signal_runs_every_workflow_again(router_factory, target) -> None:  # type: ignore[no-untyped-def]
    router = router_factory(CONFIG.replace("{target}", target.base_url))
    admin = Admin(router)
    url = admin.source("webhooks.orders")["url"]
    # The audit target fails once (retryable 503): the signal's first round takes two attempts,
    # and the second must not call `notify` again (it was done in attempt 1).
    target.answer(Scripted(200), Scripted(503, "busy"))  # notify, audit: in either order below
    sid = httpx.post(url, json={"n": 7}).json()["signal_id"]
    first = admin.wait_signal(sid, "done")
    assert first["attempts"] == 2 and first["replays"] == 0
    assert len(_calls(target, "/notify")) + len(_calls(target, "/audit")) == 3, target.requests
    runs1 = sorted((r["workflow"], r["attempt"], r["status"]) for r in first["runs"])
    failed_wf = next(w for w, _, s in runs1 if s == "failed")
    done_wf = "audit" if failed_wf == "notify" else "notify"
    assert runs1 == sorted([(failed_wf, 1, "failed"), (failed_wf, 2, "done"), (done_wf, 1, "done")])
    assert len(_calls(target, f"/{done_wf}")) == 1  # the retry skipped the workflow already done

    # The replay of the done signal: both workflows run again, as new runs (attempt 3), each
    # webhook is called again with a key of its own, and the record step writes again.
    assert admin.ok("POST", f"/api/signals/{sid}/replay") == {"replayed": [sid]}
    again = _wait(
        "the replay's runs",
        lambda: (d := admin.signal(sid))["status"] == "done" and len(d["runs"]) == 5 and d,
    )
    assert again["attempts"] == 3 and again["replays"] == 1
    assert sorted((r["workflow"], r["attempt"]) for r in again["runs"] if r["attempt"] == 3) == [
        ("audit", 3),
        ("notify", 3),
    ]
    notify_keys = _calls(target, "/notify")
    audit_keys = _calls(target, "/audit")
    assert notify_keys[-1] == f"{sid}:notify:post:replay-1" and audit_keys[-1] == f"{sid}:audit:post:replay-1"
    assert notify_keys[0] == f"{sid}:notify:post"
    assert admin.ok("GET", "/api/records/order")["items"].__len__() == 2

    # The CLI does the same, and says what it does.
    out = router.cli("replay", sid).stdout
    assert "queued for replay" in out and "runs again" in out
    third = _wait(
        "the second replay",
        lambda: len((d := admin.signal(sid))["runs"]) == 7 and d["status"] == "done" and d,
    )
    assert third["replays"] == 2 and third["attempts"] == 4
    assert _calls(target, "/notify")[-1] == f"{sid}:notify:post:replay-2"
    assert len(admin.ok("GET", "/api/records/order")["items"]) == 3
    # A replay's retry stays in its round: the round's done workflow is not called a second time.
    target.answer(Scripted(503), Scripted(200))
    admin.ok("POST", f"/api/signals/{sid}/replay")
    fourth = _wait(
        "the third replay",
        lambda: (d := admin.signal(sid))["status"] == "done" and len(d["runs"]) == 10 and d,
    )
    round3 = [r for r in fourth["runs"] if r["attempt"] >= 5]
    assert sorted(r["status"] for r in round3) == ["done", "done", "failed"], round3
    assert len(_calls(target, "/notify")) + len(_calls(target, "/audit")) == 3 + 2 + 2 + 3
    admin.close()


def test_replay_of_a_signal_nobody_listens_to_says_so(router_factory, target) -> None:  # type: ignore[no-untyped-def]
    router = router_factory(CONFIG.replace("{target}", target.base_url))
    admin = Admin(router)
    sid = httpx.post(admin.source("webhooks.orders")["url"], json={"n": 1}).json()["signal_id"]
    admin.wait_signal(sid, "done")
    # The workflows go; then the source goes too.
    router.write_config("[webhooks.orders]\n")
    assert admin.ok("POST", "/api/reload")["applied"]
    r = admin.post(f"/api/signals/{sid}/replay")
    assert (
        r.status_code == 409
        and r.json()["error"] == "no workflow listens to webhooks.orders any more: nothing would run"
    )
    router.write_config("[webhooks.other]\n")
    assert admin.ok("POST", "/api/reload")["applied"]
    r = admin.post(f"/api/signals/{sid}/replay")
    assert r.status_code == 409 and "source webhooks.orders no longer exists" in r.json()["error"]
    cli = router.cli("replay", sid, check=False)
    assert cli.returncode == 1 and "no longer exists" in cli.stderr
    assert admin.signal(sid)["replays"] == 0  # nothing was queued
    admin.close()
