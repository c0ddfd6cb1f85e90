"""SSE streaming and `continue` timing against the real daemon, over real sockets.

The engine has no sleep action, so a workflow waits by calling a local HTTP server that answers
after `?s=` seconds (`webhook` steps), between its `emit` and `respond` steps.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.standins import ThreadedServer


class _SleepHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        owner: SleepServer = self.server.owner  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        query = parse_qs(urlsplit(self.path).query)
        seconds = float(query.get("s", ["1"])[0])
        owner.stopping.wait(seconds)
        with owner.lock:
            owner.calls.append((urlsplit(self.path).path, time.monotonic()))
        body = b'{"slept": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class SleepServer(ThreadedServer):
    handler_class = _SleepHandler

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, float]] = []

    def called(self, path: str) -> int:
        with self.lock:
            return sum(1 for p, _ in self.calls if p == path)


def _config(sleeper: str) -> str:
    return f"""
[endpoints.stream]
return_type = "sse"

[endpoints.gone]
return_type = "sse"

[endpoints.slowasync]
return_type = "continue"
response_timeout = "1s"

[endpoints.slowsync]
return_type = "continue"
response_timeout = "1s"

[endpoints.twice]
return_type = "continue"

[endpoints.quiet]
return_type = "continue"

[[workflows]]
name = "three-ticks"
listen = "endpoints.stream"
run_mode = "sync"

[[workflows.steps]]
id = "e1"
action = "emit"
event = "tick"
data = '{{"n": 1, "who": "{{{{ __data.who }}}}"}}'

[[workflows.steps]]
id = "w1"
parent = "e1"
action = "webhook"
url = "{sleeper}/stream?s=1"

[[workflows.steps]]
id = "e2"
parent = "w1"
action = "emit"
event = "tick"
data = '{{"n": 2}}'

[[workflows.steps]]
id = "w2"
parent = "e2"
action = "webhook"
url = "{sleeper}/stream?s=1"

[[workflows.steps]]
parent = "w2"
action = "emit"
data = "line one\\nline two"

[[workflows]]
name = "outlives-client"
listen = "endpoints.gone"
run_mode = "sync"

[[workflows.steps]]
id = "g1"
action = "emit"
data = "first"

[[workflows.steps]]
id = "g2"
parent = "g1"
action = "webhook"
url = "{sleeper}/gone?s=1"

[[workflows.steps]]
id = "g3"
parent = "g2"
action = "emit"
data = "nobody listens"

[[workflows.steps]]
parent = "g3"
action = "create_record"
record_type = "survivor"
fields = {{ signal = "{{{{ __data.__signal_id }}}}" }}

[[workflows]]
name = "slow-async"
listen = "endpoints.slowasync"

[[workflows.steps]]
id = "wait"
action = "webhook"
url = "{sleeper}/async?s=2"

[[workflows.steps]]
parent = "wait"
action = "respond"
return_type = "data"
return_data = '{{"late": true}}'

[[workflows]]
name = "slow-sync"
listen = "endpoints.slowsync"
run_mode = "sync"

[[workflows.steps]]
id = "wait"
action = "webhook"
url = "{sleeper}/sync?s=1.5"

[[workflows.steps]]
parent = "wait"
action = "respond"
return_type = "data"
return_data = '{{"held": true}}'

[[workflows]]
name = "responds-twice"
listen = "endpoints.twice"
run_mode = "sync"

[[workflows.steps]]
id = "first"
action = "respond"
return_type = "data"
return_data = '{{"answer": "first"}}'

[[workflows.steps]]
parent = "first"
action = "respond"
return_type = "data"
return_data = '{{"answer": "second"}}'
status = 201

[[workflows]]
name = "quiet"
listen = "endpoints.quiet"
run_mode = "sync"

[[workflows.steps]]
action = "log"
message = "no respond step"
"""


@pytest.fixture(scope="module")
def sleeper():  # type: ignore[no-untyped-def]
    with SleepServer() as server:
        yield server


@pytest.fixture(scope="module")
def router(module_router_factory, sleeper):  # type: ignore[no-untyped-def]
    return module_router_factory(_config(sleeper.base_url), http_extra='sse_keepalive = "0.3s"')


@pytest.fixture(scope="module")
def urls(router):  # type: ignore[no-untyped-def]
    return {k.split(".", 1)[1]: v.get("url") for k, v in router.sources().items()}


def _frames(lines: list[str]) -> list[tuple[str, str]]:
    """(event, data) pairs from SSE lines; comments are skipped."""
    out: list[tuple[str, str]] = []
    event, data = "message", []
    for line in lines:
        if line.startswith(":"):
            continue
        if not line:
            if data:
                out.append((event, "\n".join(data)))
            event, data = "message", []
        elif line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
    return out


def test_sse_first_frame_arrives_before_the_second_second(urls) -> None:  # type: ignore[no-untyped-def]
    lines: list[str] = []
    stamps: list[float] = []
    with httpx.Client(timeout=10) as client:
        t0 = time.monotonic()
        with client.stream("GET", urls["stream"], params={"who": "ann"}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            assert r.headers["x-request-id"]
            for line in r.iter_lines():
                lines.append(line)
                if line.startswith("data: "):
                    stamps.append(time.monotonic() - t0)
    frames = _frames(lines)
    assert frames[:3] == [
        ("tick", '{"n": 1, "who": "ann"}'),
        ("tick", '{"n": 2}'),
        ("message", "line one\nline two"),
    ]
    assert frames[3][0] == "done" and '"signal_id"' in frames[3][1]
    # The first frame was flushed as it happened, not held until the end of the run.
    assert stamps[0] < 0.9, stamps
    assert 0.9 < stamps[1] < 2.5 and 1.9 < stamps[2] < 3.5, stamps
    # Gaps longer than sse_keepalive (0.3 s here) carry keep-alive comments.
    assert lines.count(": keep-alive") >= 2, lines


def test_sse_client_disconnect_does_not_cancel_the_run(router, urls, sleeper) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", urls["gone"], json={}) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    assert line == "data: first"
                    break  # hang up after the first frame
    t_gone = time.monotonic()

    def finished():  # type: ignore[no-untyped-def]
        sigs = [s for s in router.signals("--source", "endpoints.gone") if s["status"] == "done"]
        return sigs and sigs[0]

    sig = router.wait_for(finished, timeout=15)
    assert time.monotonic() - t_gone > 0.3  # it really went on after the client left
    assert [(run["workflow"], run["status"]) for run in sig["runs"]] == [("outlives-client", "done")]
    assert sleeper.called("/gone") == 1
    import json

    survivors = json.loads(router.cli("records", "list", "--json", "survivor").stdout)
    assert [s["signal"] for s in survivors] == [sig["id"]]


def test_continue_async_slower_than_response_timeout_gets_202(router, urls) -> None:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    r = httpx.post(urls["slowasync"], json={"order": 1}, timeout=10)
    elapsed = time.monotonic() - t0
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["signal_id"] and body["status"] == "accepted"
    assert 0.9 < elapsed < 1.9, elapsed  # response_timeout = 1s, the run takes 2 s
    # The run goes on and completes; its late respond has no caller left.
    sig = router.wait_for(
        lambda: [
            s
            for s in router.signals("--source", "endpoints.slowasync")
            if s["id"] == body["signal_id"] and s["status"] == "done"
        ],
        timeout=15,
    )[0]
    assert sig["runs"][0]["status"] == "done"


def test_continue_sync_holds_the_caller_past_response_timeout(urls) -> None:  # type: ignore[no-untyped-def]
    """SPEC §6: a sync run holds the request until its respond fires (response_timeout is for async)."""
    t0 = time.monotonic()
    r = httpx.post(urls["slowsync"], json={}, timeout=10)
    assert r.status_code == 200 and r.json() == {"held": True}
    assert time.monotonic() - t0 > 1.4


def test_continue_second_respond_is_ignored_and_logged(router, urls) -> None:  # type: ignore[no-untyped-def]
    r = httpx.post(urls["twice"], json={})
    assert r.status_code == 200 and r.json() == {"answer": "first"}
    router.wait_for(lambda: "respond ignored: a response was already sent" in router.log(), timeout=5)


def test_continue_sync_without_respond_is_204(urls) -> None:  # type: ignore[no-untyped-def]
    r = httpx.post(urls["quiet"], json={})
    assert r.status_code == 204 and r.content == b"" and r.headers["x-request-id"]


def test_sse_concurrent_streams_are_independent(urls) -> None:  # type: ignore[no-untyped-def]
    results: dict[int, list[tuple[str, str]]] = {}

    def read(i: int) -> None:
        with httpx.stream("GET", urls["stream"], params={"who": f"c{i}"}, timeout=10) as r:
            results[i] = _frames(list(r.iter_lines()))

    threads = [threading.Thread(target=read, args=(i,)) for i in range(4)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - t0 < 4.5  # they ran side by side, not one after another
    for i in range(4):
        assert results[i][0] == ("tick", f'{{"n": 1, "who": "c{i}"}}') and results[i][-1][0] == "done"
