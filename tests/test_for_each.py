"""Issue 16: a `for_each` step runs its children once per element of an array a provider posted,
`concurrency` at a time, each element with its own trace entries, records and webhook key.
Against the real daemon, with a local server counting the requests it holds at once."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler

import httpx
import pytest

from tests.daemon import RouterProcess
from tests.standins import ThreadedServer

ITEMS = 100
CONCURRENCY = 5


class _CountingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        owner: CountingServer = self.server.owner  # type: ignore[attr-defined]
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        with owner.lock:
            owner.now += 1
            owner.most = max(owner.most, owner.now)
            owner.seen.append((self.path, body, self.headers.get("Idempotency-Key")))
        try:
            owner.stopping.wait(owner.hold)  # long enough for the next calls to overlap this one
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "11")
            self.end_headers()
            self.wfile.write(b'{"ok":true}')
        finally:
            with owner.lock:
                owner.now -= 1


class CountingServer(ThreadedServer):
    handler_class = _CountingHandler

    def __init__(self, hold: float) -> None:
        super().__init__()
        self.hold = hold
        self.now = 0
        self.most = 0
        self.seen: list[tuple[str, dict[str, object], str | None]] = []


@pytest.fixture
def server() -> Iterator[CountingServer]:
    with CountingServer(hold=0.1) as running:
        yield running


def config(url: str) -> str:
    return f"""
[webhooks.batch]

[[workflows]]
name = "batch"
listen = "webhooks.batch"

[[workflows.steps]]
id = "each"
action = "for_each"
items = "{{{{ __data.__json }}}}"
as = "line"
concurrency = {CONCURRENCY}

[[workflows.steps]]
id = "post"
parent = "each"
action = "webhook"
url = "{url}/parallel"
json = {{ n = "{{{{ __data.line.n }}}}", index = "{{{{ __data.line_index }}}}" }}

[[workflows.steps]]
id = "save"
parent = "post"
action = "create_record"
record_type = "line"
fields = {{ n = "{{{{ __data.line.n }}}}", status = "{{{{ __data.webhook.status }}}}" }}

[[workflows.steps]]
parent = "each"
branch = "failure"
action = "log"
message = "not a batch: {{{{ __data.__error }}}}"

[webhooks.ordered]

[[workflows]]
name = "ordered"
listen = "webhooks.ordered"

[[workflows.steps]]
id = "each"
action = "for_each"
items = "{{{{ __data.lines }}}}"

[[workflows.steps]]
parent = "each"
action = "webhook"
url = "{url}/ordered"
json = {{ n = "{{{{ __data.item }}}}" }}
"""


def test_for_each_over_100_elements_respects_concurrency(
    router_factory: Callable[..., RouterProcess], server: CountingServer
) -> None:
    router = router_factory(config(server.base_url))
    r = httpx.post(router.url("webhooks.batch"), json=[{"n": n} for n in range(ITEMS)], timeout=10)
    assert r.status_code == 200
    sid = r.json()["signal_id"]

    def run() -> dict[str, object] | None:
        [signal] = [s for s in router.signals() if s["id"] == sid]
        return next((x for x in signal["runs"] if x["status"] in ("done", "failed")), None)

    finished = router.wait_for(run, timeout=60)
    assert finished["status"] == "done", finished["error"]
    parallel = [(body, key) for path, body, key in server.seen if path == "/parallel"]
    assert sorted(body["n"] for body, _ in parallel) == list(range(ITEMS))  # type: ignore[type-var]
    assert server.most == CONCURRENCY, f"at most {server.most} calls at once"
    # One key per element, stable in form: a receiver dedups repeats of an element, not elements.
    assert sorted(key for _, key in parallel) == sorted(f"{sid}:batch:post[{i}]" for i in range(ITEMS))

    trace = finished["trace"]
    assert isinstance(trace, list)
    [each] = [e for e in trace if e["step_id"] == "each"]
    assert each["output"] == {"count": ITEMS, "as": "line", "concurrency": CONCURRENCY}
    for step in ("post", "save"):
        entries = [e for e in trace if e["step_id"] == step]
        assert sorted(e["item_index"] for e in entries) == [[i] for i in range(ITEMS)], step
        assert all(e["branch"] == "success" for e in entries)
    rows = json.loads(router.cli("records", "list", "line", "--limit", "1000", "--json").stdout)
    assert sorted(row["n"] for row in rows) == list(range(ITEMS))  # once per element, not once per step
    assert {row["status"] for row in rows} == {200}

    # Not an array: the failure branch runs, nothing is called.
    r = httpx.post(router.url("webhooks.batch"), json={"n": 1}, timeout=10)
    bad = r.json()["signal_id"]
    router.wait_for(
        lambda: any(x["status"] == "done" for s in router.signals() if s["id"] == bad for x in s["runs"])
    )
    [signal] = [s for s in router.signals() if s["id"] == bad]
    [entry] = [e for e in signal["runs"][0]["trace"] if e["step_id"] == "each"]
    assert entry["branch"] == "failure" and "must render to a list" in entry["error"]

    # concurrency defaults to 1: one call at a time, in order.
    server.most = 0
    r = httpx.post(router.url("webhooks.ordered"), json={"lines": list(range(20))}, timeout=10)
    router.wait_for(lambda: len([p for p, _, _ in server.seen if p == "/ordered"]) == 20, timeout=30)
    assert [body["n"] for path, body, _ in server.seen if path == "/ordered"] == list(range(20))
    assert server.most == 1


@pytest.mark.parametrize(
    "bad", ["concurrency = 0", "concurrency = 101", 'concurrency = "x"', 'as = "__x"', "items = 5"]
)
def test_for_each_config_errors(router_factory: Callable[..., RouterProcess], bad: str) -> None:
    key = bad.split(" ", 1)[0]
    items = "" if key == "items" else 'items = "{{ __data.__json }}"'
    router = router_factory(
        f"""
[webhooks.w]

[[workflows]]
name = "w"
listen = "webhooks.w"

[[workflows.steps]]
action = "for_each"
{items}
{bad}
""",
        start=False,
    )
    check = router.cli("check", check=False)
    assert check.returncode != 0 and f"for_each: {key}" in check.stdout + check.stderr, (
        check.stdout + check.stderr
    )
