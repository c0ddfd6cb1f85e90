"""Issue 14: /metrics shows the build, the process, outbound webhook calls by outcome with their
durations, retries, and refused requests by reason for HTTP and SMTP."""

from __future__ import annotations

import platform
import smtplib

import httpx
import pytest

from router.version import version
from tests.daemon import RouterProcess, free_port
from tests.standins.http_target import HttpTarget, Scripted
from tests.test_metrics import scrape, value


@pytest.fixture
def target():  # type: ignore[no-untyped-def]
    t = HttpTarget().start()
    yield t
    t.stop()


def test_build_process_outbound_retries_and_refusals(router_factory, target) -> None:  # type: ignore[no-untyped-def]
    # Two 503s then a 200: one call ends ok after 2 retries within the step. The second workflow
    # calls a closed port: connection errors, and the signal is scheduled for another attempt.
    target.answer(Scripted(503, "down"), Scripted(503, "down"))
    dead = f"http://127.0.0.1:{free_port()}/nobody"
    router: RouterProcess = router_factory(
        f"""
        [webhooks.orders]

        [webhooks.lost]

        [mailboxes.sales]
        address = "sales@example.com"

        [[workflows]]
        name = "forward"
        listen = "webhooks.orders"

        [[workflows.steps]]
        action = "webhook"
        url = "{target.url("/orders")}"
        retries = 2
        retry_backoff = "10ms"

        [[workflows]]
        name = "unreachable"
        listen = "webhooks.lost"
        max_attempts = 2

        [[workflows.steps]]
        action = "webhook"
        url = "{dead}"
        timeout = "2s"
        """,
        retry_backoff="0.1s",
    )
    orders, lost = router.url("webhooks.orders"), router.url("webhooks.lost")
    with httpx.Client(timeout=10) as c:
        assert c.post(orders, json={"n": 1}).status_code == 200
        assert c.post(lost, json={"n": 2}).status_code == 200
        assert c.post(orders.split("apiKey=")[0] + "apiKey=wrong", json={}).status_code == 401
        assert c.post(f"{router.base}/webhooks/incoming/nope", json={}).status_code == 404
    with smtplib.SMTP("127.0.0.1", router.smtp_port, timeout=10) as smtp:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail("a@example.org", ["nobody@example.com"], b"Subject: x\r\n\r\nhi\r\n")
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail("a@example.org", ["someone@elsewhere.org"], b"Subject: x\r\n\r\nhi\r\n")
    router.wait_for(lambda: {s["status"] for s in router.signals()} == {"done", "failed"}, timeout=30)

    samples = router.wait_for(
        lambda: (
            (s := scrape(router.admin_port)) and value(s, "router_retries_total", kind="signal") >= 1 and s
        )
    )
    assert value(samples, "router_build_info", version=version(), python=platform.python_version()) == 1
    assert value(samples, "process_resident_memory_bytes") > 10_000_000
    assert value(samples, "process_open_fds") > 0
    assert value(samples, "router_outbound_calls_total", kind="webhook", outcome="http_5xx") == 2
    assert value(samples, "router_outbound_calls_total", kind="webhook", outcome="ok") == 1
    assert value(samples, "router_outbound_calls_total", kind="webhook", outcome="connection_error") == 2
    assert value(samples, "router_outbound_call_seconds_count", kind="webhook") == 5
    assert value(samples, "router_outbound_call_seconds_sum", kind="webhook") > 0
    assert value(samples, "router_retries_total", kind="webhook") == 2
    assert (
        value(samples, "router_retries_total", kind="signal") == 1
    )  # max_attempts = 2: one retry, then failed
    assert value(samples, "router_refused_total", channel="webhooks", reason="unauthorized") == 1
    assert value(samples, "router_refused_total", channel="webhooks", reason="not_found") == 1
    assert value(samples, "router_refused_total", channel="smtp", reason="no_such_mailbox") == 1
    assert value(samples, "router_refused_total", channel="smtp", reason="relay") == 1
