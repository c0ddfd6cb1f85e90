"""Limits against the real daemon: rate limit 429, overload 503, body size 413 without buffering,
and `X-Request-Id` on every answer (SPEC §6, §9)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.test_http_sse import SleepServer


@pytest.fixture(scope="module")
def sleeper():  # type: ignore[no-untyped-def]
    with SleepServer() as server:
        yield server


# -- max_pending (a small backlog) -------------------------------------------------------------------

QUEUE = """
[webhooks.work]

[[workflows]]
name = "slow"
listen = "webhooks.work"

[[workflows.steps]]
action = "webhook"
url = "{sleeper}/work?s=3"
"""


@pytest.fixture(scope="module")
def queue_router(module_router_factory, sleeper):  # type: ignore[no-untyped-def]
    return module_router_factory(
        QUEUE.format(sleeper=sleeper.base_url), router_extra="concurrency = 1\nmax_pending = 1"
    )


def _running(router) -> int:  # type: ignore[no-untyped-def]
    conn = sqlite3.connect(f"file:{router.data_dir / 'router.db'}?mode=ro", uri=True, timeout=5)
    try:
        return int(conn.execute("SELECT count(*) FROM signals WHERE status = 'running'").fetchone()[0])
    finally:
        conn.close()


def test_overload_503_when_max_pending_is_reached(queue_router, sleeper) -> None:  # type: ignore[no-untyped-def]
    url = queue_router.url("webhooks.work")
    with httpx.Client(timeout=5) as client:
        first = client.post(url, json={"n": 1})  # runs (concurrency = 1): 3 s
        queue_router.wait_for(lambda: _running(queue_router) == 1)  # claimed (by the runner process)
        second = client.post(url, json={"n": 2})  # waits in the journal: max_pending = 1 reached
        third = client.post(url, json={"n": 3})
        assert first.status_code == second.status_code == 200
        assert third.status_code == 503
        assert third.headers["retry-after"].isdigit() and int(third.headers["retry-after"]) >= 1
        assert third.headers["x-request-id"]
        # Once the backlog drains, the webhook accepts again.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if client.post(url, json={"n": 4}).status_code == 200:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("never accepted again")
    acked = {1, 2, 4}
    queue_router.wait_for(
        lambda: (
            {s["entity"]["n"] for s in queue_router.signals("--source", "webhooks.work", "--status", "done")}
            >= acked
        ),
        timeout=20,
    )
    ns = [s["entity"]["n"] for s in queue_router.signals("--source", "webhooks.work")]
    assert 3 not in ns  # the refused one was never journaled


# -- rate limits, in-flight bound, body size, request ids ------------------------------------------------------

FLIGHT = """
[endpoints.limited]
return_data = '{{"ok": true}}'
rate_limit = "2/s"

[endpoints.bursty]
return_data = "ok"
rate_limit = "1/s"
rate_burst = 3

[webhooks.hook]
rate_limit = "2/s"

[endpoints.hold]
return_type = "continue"

[endpoints.small]
return_data = "ok"

[endpoints.data]
return_data = '{{"ok": true}}'

[endpoints.jwt]
return_data = "ok"
add_authentication = true
endpoint_key = "k"
endpoint_secret = "{secret}"

[webhooks.in]

[forms.contact]
redirect = "/thanks"

[[workflows]]
name = "hold"
listen = "endpoints.hold"
run_mode = "sync"

[[workflows.steps]]
id = "wait"
action = "webhook"
url = "{sleeper}/hold?s=1.5"

[[workflows.steps]]
parent = "wait"
action = "respond"
return_type = "data"
return_data = "released"
"""


@pytest.fixture(scope="module")
def flight_router(module_router_factory, sleeper):  # type: ignore[no-untyped-def]
    return module_router_factory(
        FLIGHT.format(sleeper=sleeper.base_url, secret="j" * 40),
        http_extra='max_in_flight = 1\nmax_body = "1MiB"',
    )


def test_rate_limit_429_with_retry_after(flight_router) -> None:  # type: ignore[no-untyped-def]
    url = flight_router.url("endpoints.limited")
    with httpx.Client(timeout=5) as client:
        codes = [client.post(url, json={}) for _ in range(5)]
        assert [r.status_code for r in codes] == [200, 200, 429, 429, 429]
        limited = codes[2]
        assert limited.headers["retry-after"] == "1" and limited.headers["x-request-id"]
        assert limited.json()["error"] == "rate limit exceeded"
        time.sleep(1.05)  # two tokens a second come back
        assert client.post(url, json={}).status_code == 200


def test_rate_burst_and_webhook_rate_limit(flight_router) -> None:  # type: ignore[no-untyped-def]
    bursty = flight_router.url("endpoints.bursty")
    hook = flight_router.url("webhooks.hook")
    with httpx.Client(timeout=5) as client:
        codes = [client.get(bursty).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        codes = [client.post(hook, json={"i": i}).status_code for i in range(3)]
        assert codes == [200, 200, 429]


def test_overload_503_when_max_in_flight_is_reached(flight_router) -> None:  # type: ignore[no-untyped-def]
    url = flight_router.url("endpoints.hold")
    other = flight_router.url("endpoints.data")
    held: list[httpx.Response] = []
    t = threading.Thread(target=lambda: held.append(httpx.post(url, json={}, timeout=10)))
    t.start()
    # The first request is held by its sync run (1.5 s): the only one in flight.
    flight_router.wait_for(lambda: flight_router.status()["http_in_flight"] == 1, timeout=5, interval=0.02)
    busy = httpx.post(other, json={}, timeout=5)
    t.join()
    assert held[0].status_code == 200 and held[0].text == "released"
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == "1" and busy.headers["x-request-id"]
    assert httpx.post(other, json={}).status_code == 200


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_50mb_body_refused_without_buffering(flight_router) -> None:  # type: ignore[no-untyped-def]
    url = flight_router.url("endpoints.small")
    pid = flight_router.proc.pid
    httpx.post(url, content=b"warm-up")
    baseline = _rss_kb(pid)
    peak = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_kb(pid))
            time.sleep(0.01)

    sent = [0]

    def body() -> Iterator[bytes]:
        chunk = b"z" * 65536
        for _ in range(800):  # 50 MiB
            sent[0] += len(chunk)
            yield chunk

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        chunked = httpx.post(url, content=body(), timeout=30)  # no Content-Length: refused while reading
        declared = httpx.post(
            url,
            content=body(),
            headers={"content-length": str(800 * 65536)},
            timeout=30,
        )  # refused from the header, before reading
    finally:
        stop.set()
        sampler.join()
    assert chunked.status_code == 413 and declared.status_code == 413
    assert chunked.headers["connection"] == "close" and chunked.headers["x-request-id"]
    assert declared.json()["limit"] == 1024 * 1024
    grew_mb = (peak[0] - baseline) / 1024
    assert grew_mb < 30, f"RSS grew {grew_mb:.1f} MB while refusing 50 MB bodies"
    # The daemon is fine afterwards.
    assert httpx.post(url, content=b"small").status_code == 200


def test_x_request_id_on_every_answer(flight_router) -> None:  # type: ignore[no-untyped-def]
    r = flight_router
    urls = {k: v["url"] for k, v in r.sources().items()}
    webhook = urls["webhooks.in"]
    jwt_url = urls["endpoints.jwt"]
    cases = {
        200: lambda h: httpx.post(urls["endpoints.data"], json={}, headers=h),
        303: lambda h: httpx.post(urls["forms.contact"], data={"a": "1"}, headers=h),
        400: lambda h: httpx.post(
            webhook, content=b"{nope", headers={**h, "content-type": "application/json"}
        ),
        401: lambda h: httpx.post(webhook.split("?")[0] + "?apiKey=" + "A" * 43, json={}, headers=h),
        403: lambda h: httpx.post(jwt_url, json={}, headers=h),
        404: lambda h: httpx.get(f"{r.base}/listener/{'0' * 40}/{'1' * 40}", headers=h),
        405: lambda h: httpx.delete(urls["endpoints.data"], headers=h),
        413: lambda h: httpx.post(urls["endpoints.small"], content=b"x" * (2 * 1024 * 1024), headers=h),
    }
    for status, call in cases.items():
        generated = call({})
        assert generated.status_code == status, (status, generated.text)
        assert len(generated.headers["x-request-id"]) >= 16, status
        given = call({"X-Request-Id": f"req-{status}.abc:1"})
        assert given.status_code == status
        assert given.headers["x-request-id"] == f"req-{status}.abc:1", status
    # An id that is not a safe token (spaces, too long) is replaced, not echoed.
    for bad in ("has space", "x" * 200, "semi;colon"):
        got = httpx.get(f"{r.base}/healthz", headers={"X-Request-Id": bad}).headers["x-request-id"]
        assert got != bad and got
    # Two requests never share a generated id.
    ids = {httpx.get(f"{r.base}/healthz").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


# -- big bodies are parsed off the event loop -------------------------------------------------------


def test_a_big_form_body_does_not_stall_other_requests(router_factory) -> None:  # type: ignore[no-untyped-def]
    """A 2.9 MB urlencoded form of 300,000 fields takes a few hundred ms to parse. Parsed on the
    event loop it held every other request for most of that time (/healthz stalled ~0.4 s for a
    ~0.5 s request on a quiet box); in a worker thread the loop keeps answering."""
    router = router_factory(
        '[endpoints.big]\nreturn_type = "data"\nreturn_data = "ok"\n', http_extra='max_body = "4MB"'
    )
    url = router.url("endpoints.big")
    body = "&".join(f"f{i}=v" for i in range(300_000)).encode()
    pings: list[float] = []
    stop = threading.Event()

    def ping() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                started = time.perf_counter()
                assert client.get(f"{router.base}/healthz").status_code == 200
                pings.append(time.perf_counter() - started)
                time.sleep(0.01)

    pinger = threading.Thread(target=ping)
    pinger.start()
    took: list[float] = []
    try:
        router.wait_for(lambda: len(pings) >= 10, timeout=10, interval=0.01)  # the pinger is under way
        with httpx.Client(timeout=60) as client:
            for _ in range(3):
                started = time.perf_counter()
                r = client.post(
                    url, content=body, headers={"content-type": "application/x-www-form-urlencoded"}
                )
                took.append(time.perf_counter() - started)
                assert r.status_code == 200, r.text
    finally:
        stop.set()
        pinger.join()
    # Relative to the big request's own time, so a slow machine moves both alike.
    assert max(pings) < 0.5 * min(took), (max(pings), took)
