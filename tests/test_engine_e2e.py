"""Issue 3 through the real daemon: sibling concurrency, retry → failed → replay, traces."""

from __future__ import annotations

import time

import httpx

from tests.standins.http_target import HttpTarget, Scripted


def test_sibling_webhooks_run_concurrently(router_factory) -> None:  # type: ignore[no-untyped-def]
    target = HttpTarget().start()
    try:
        target.answer(Scripted(200, "{}", delay=1.0), Scripted(200, "{}", delay=1.0))
        router = router_factory(f"""
            [endpoints.fan]
            return_type = "continue"

            [[workflows]]
            name = "two-calls"
            listen = "endpoints.fan"
            run_mode = "sync"

            [[workflows.steps]]
            id = "a"
            action = "webhook"
            url = "{target.url("/a")}"
            json = {{ n = "{{{{ __data.n }}}}" }}

            [[workflows.steps]]
            id = "b"
            action = "webhook"
            url = "{target.url("/b")}"

            [[workflows.steps]]
            parent = "a"
            action = "respond"
            return_data = '{{"done": true}}'
        """)
        url = router.url("endpoints.fan")
        t0 = time.monotonic()
        r = httpx.post(url, json={"n": 5}, timeout=10)
        elapsed = time.monotonic() - t0
        assert r.status_code == 200 and r.json() == {"done": True}
        assert elapsed < 1.8, f"siblings took {elapsed:.2f}s: they ran one after the other"
        assert sorted(req.path for req in target.requests) == ["/a", "/b"]
        assert [req.json for req in target.requests if req.path == "/a"] == [{"n": 5}]
    finally:
        target.stop()


def test_retry_then_failed_then_replay_completes(router_factory) -> None:  # type: ignore[no-untyped-def]
    target = HttpTarget().start()
    try:
        target.answer(*[Scripted(503, "down") for _ in range(3)])
        router = router_factory(
            f"""
            [webhooks.orders]

            [[workflows]]
            name = "forward"
            listen = "webhooks.orders"
            max_attempts = 3

            [[workflows.steps]]
            id = "call"
            action = "webhook"
            url = "{target.url("/orders")}"
            json = {{ order = "{{{{ __data.order }}}}" }}

            [[workflows.steps]]
            parent = "call"
            action = "create_record"
            record_type = "forwarded"
            fields = {{ order = "{{{{ __data.order }}}}", status = "{{{{ __data.webhook.status }}}}" }}
        """,
            retry_backoff="0.2s",
        )
        r = httpx.post(router.url("webhooks.orders"), json={"order": 77})
        sid = r.json()["signal_id"]

        def signal():  # type: ignore[no-untyped-def]
            return next(s for s in router.signals() if s["id"] == sid)

        failed = router.wait_for(lambda: (s := signal())["status"] == "failed" and s, timeout=20)
        assert failed["attempts"] == 3 and "503" in failed["last_error"]
        assert [run["status"] for run in failed["runs"]] == ["failed"] * 3
        trace = failed["runs"][-1]["trace"]
        assert trace[0]["step_id"] == "call" and "503" in trace[0]["error"]
        assert len(target.requests) == 3
        assert [s["id"] for s in router.signals("--failed")] == [sid]

        # The target is fixed (the script is used up: it answers 200 now); replay completes it.
        router.cli("replay", sid)
        done = router.wait_for(lambda: (s := signal())["status"] == "done" and s, timeout=20)
        assert done["runs"][-1]["status"] == "done"
        records = router.cli("records", "list", "forwarded", "--json").stdout
        assert '"order": 77' in records and '"status": 200' in records
        # Replaying a signal that is not failed is refused with a clear message.
        again = router.cli("replay", "01NOPE", check=False)
        assert again.returncode == 1 and "no signal" in again.stderr
    finally:
        target.stop()
