"""Issue 7, must-show 2: `curl /metrics` after a mixed load shows exactly what was sent."""

from __future__ import annotations

import smtplib
import subprocess
from email.message import EmailMessage
from types import SimpleNamespace
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from router.ops.metrics import Metrics
from tests.admin_support import TOKEN, Admin, demo_config

RATE_LIMITED = """
[webhooks.limited]
rate_limit = "1/m"
rate_burst = 2
"""


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """`curl /metrics`, parsed: (sample name, sorted labels) -> value."""
    out = subprocess.run(
        ["curl", "-sf", "-H", f"Authorization: Bearer {TOKEN}", f"http://127.0.0.1:{port}/metrics"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    samples = {}
    for family in text_string_to_metric_families(out):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_curl_metrics_shows_the_exact_numbers_sent(router_factory) -> None:  # type: ignore[no-untyped-def]
    router = router_factory(demo_config() + RATE_LIMITED)
    admin = Admin(router)
    hello = admin.source("endpoints.hello")["url"]
    orders = admin.source("endpoints.orders")["url"]
    payments = admin.source("webhooks.payments")["url"]
    limited = admin.source("webhooks.limited")["url"]
    bad_key = payments.split("apiKey=")[0] + "apiKey=wrong"
    admin.ok("POST", "/api/sources/endpoints.orders/deactivate")

    with httpx.Client(timeout=10) as c:
        for i in range(7):
            assert c.post(hello, json={"name": f"n{i}"}).status_code == 200
        for _ in range(3):
            assert c.delete(hello).status_code == 405
        for i in range(5):
            assert (
                c.post(payments, json={"amount": i}, headers={"Idempotency-Key": f"k{i}"}).status_code == 200
            )
        for _ in range(3):
            r = c.post(payments, json={"amount": 0}, headers={"Idempotency-Key": "k0"})
            assert r.status_code == 200  # a repeat: acknowledged again, not run again
        for _ in range(4):
            assert c.post(bad_key, json={}).status_code == 401
        for _ in range(2):
            assert (
                c.post(
                    payments, content=b"{not json", headers={"content-type": "application/json"}
                ).status_code
                == 400
            )
        for _ in range(2):
            assert c.post(orders, json={}).status_code == 404  # deactivated
        for _ in range(6):
            assert c.post(f"{router.base}/listener/nope/nope", json={}).status_code == 404
        statuses = [c.post(limited, json={"n": i}).status_code for i in range(5)]
        assert statuses == [200, 200, 429, 429, 429]
        for path in ("/healthz", "/readyz", "/favicon.ico"):
            c.get(f"{router.base}{path}")  # not arrivals: not counted
    for i in range(2):
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "a@example.org", "support@example.com", f"m{i}"
        msg.set_content("hi")
        with smtplib.SMTP("127.0.0.1", router.smtp_port, timeout=10) as smtp:
            assert smtp.send_message(msg) == {}

    # Every run has finished before we look (run durations are recorded when a run ends).
    router.wait_for(
        lambda: (
            admin.ok("GET", "/api/status")["signals"]["pending"] == 0
            and admin.ok("GET", "/api/status")["signals"]["running"] == 0
        ),
        timeout=15,
    )
    S = "router_signals_total"
    sent = 7 + 3 + 5 + 3 + 4 + 2 + 2 + 6 + 2 + 3 + 2
    # An HTTP arrival is counted once its answer went out, a moment after the client has it.
    m = router.wait_for(
        lambda: (
            (m := scrape(router.admin_port))
            and sum(v for (name, _), v in m.items() if name == S) >= sent
            and m
        ),
        timeout=10,
    )
    assert value(m, S, channel="endpoints", source="endpoints.hello", outcome="accepted", status="200") == 7
    assert value(m, S, channel="endpoints", source="endpoints.hello", outcome="rejected", status="405") == 3
    assert value(m, S, channel="webhooks", source="webhooks.payments", outcome="accepted", status="200") == 5
    assert value(m, S, channel="webhooks", source="webhooks.payments", outcome="duplicate", status="200") == 3
    assert value(m, S, channel="webhooks", source="webhooks.payments", outcome="rejected", status="401") == 4
    assert value(m, S, channel="webhooks", source="webhooks.payments", outcome="rejected", status="400") == 2
    assert value(m, S, channel="endpoints", source="endpoints.orders", outcome="rejected", status="404") == 2
    assert value(m, S, channel="endpoints", source="unknown", outcome="rejected", status="404") == 6
    assert value(m, S, channel="webhooks", source="webhooks.limited", outcome="accepted", status="200") == 2
    assert value(m, S, channel="webhooks", source="webhooks.limited", outcome="rejected", status="429") == 3
    assert value(m, S, channel="mailboxes", source="mailboxes.support", outcome="accepted", status="") == 2
    total = sum(v for (name, _), v in m.items() if name == S)
    assert total == sent, "nothing else counted (health checks are not arrivals)"
    assert value(m, "router_rate_limited_total", source="webhooks.limited") == 3
    assert value(m, "router_overloaded_total", channel="webhooks") == 0

    # Acknowledgement latency: one observation per acknowledged arrival, per channel.
    assert value(m, "router_ack_latency_seconds_count", channel="endpoints") == 7
    assert value(m, "router_ack_latency_seconds_count", channel="webhooks") == 5 + 3 + 2
    assert value(m, "router_ack_latency_seconds_count", channel="mailboxes") == 2
    assert value(m, "router_ack_latency_seconds_bucket", channel="webhooks", le="+Inf") == 10
    # Run durations by workflow and status: one per run.
    assert value(m, "router_run_duration_seconds_count", workflow="hello-log", status="done") == 7
    assert value(m, "router_run_duration_seconds_count", workflow="payment-note", status="done") == 5
    # Journal commits: group commits happened, each batch at least one job.
    commits = value(m, "router_journal_commit_seconds_count")
    assert commits > 0 and value(m, "router_journal_commit_batch_size_sum") >= commits
    # Gauges read at scrape time.
    assert value(m, "router_queue_depth") == 0
    assert value(m, "router_runs_active") == 0
    assert value(m, "router_http_in_flight") == 0
    assert value(m, "router_journal_signals", status="done") == 7 + 5 + 2 + 2
    assert ("router_smtp_sessions", ()) in m
    assert value(m, "router_admin_actions_total", action="source.deactivate", result="ok") == 1
    admin.close()


def _request(path: str, source: Any = None) -> Any:
    return SimpleNamespace(
        path=path,
        method="POST",
        client="127.0.0.1",
        request_id="r1",
        extra={"source": source} if source else {},
    )


def test_observer_counts_overload_and_dropped_and_ignores_health_checks() -> None:
    m = Metrics()
    obs = m.http_observer()
    src = SimpleNamespace(kind="webhooks", source="webhooks.a")

    # The in-flight limit (HttpChannel marks the request) and the dispatcher's queue limit.
    req = _request("/webhooks/incoming/a", src)
    req.extra["overloaded"] = True
    obs.end(obs.begin(req), req, 503)
    req = _request("/webhooks/incoming/a", src)
    token = obs.begin(req)
    m.on_submit("webhooks", "webhooks.a", "overloaded", 0.001)
    obs.end(token, req, 503)
    # A honeypot-filled form: a success answer, nothing journaled.
    form = _request("/forms/f", SimpleNamespace(kind="forms", source="forms.f"))
    obs.end(obs.begin(form), form, 303)
    for path in ("/healthz", "/readyz", "/nothing/here"):
        r = _request(path)
        obs.end(obs.begin(r), r, 200)
    # Channels without HTTP count at submit time.
    m.on_submit("mailboxes", "mailboxes.x", "accepted", 0.002)
    m.on_submit("mailboxes", "mailboxes.x", "journal_unavailable", 0.002)
    m.smtp_sessions_open(2)
    m.smtp_sessions_open(1)

    samples = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    S = "router_signals_total"
    assert value(samples, "router_overloaded_total", channel="webhooks") == 2
    assert value(samples, S, channel="webhooks", source="webhooks.a", outcome="rejected", status="503") == 2
    assert value(samples, S, channel="forms", source="forms.f", outcome="dropped", status="303") == 1
    assert value(samples, S, channel="mailboxes", source="mailboxes.x", outcome="accepted", status="") == 1
    assert (
        value(
            samples,
            S,
            channel="mailboxes",
            source="mailboxes.x",
            outcome="rejected",
            status="journal_unavailable",
        )
        == 1
    )
    assert sum(v for (n, _), v in samples.items() if n == S) == 5
    assert value(samples, "router_smtp_sessions") == 1
    assert not any(n.endswith("_created") for n, _ in samples)
