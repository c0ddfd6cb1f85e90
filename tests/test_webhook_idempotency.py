"""Issue 16: every `webhook` step sends an `Idempotency-Key`, the same on every try of one step
for one signal (the step's retries, the run's retries, a run started over after SIGKILL), so a
receiver that drops repeated keys sees each effect once. Against the real daemon."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler

import httpx
import pytest

from tests.daemon import RouterProcess
from tests.standins import ThreadedServer
from tests.standins.http_target import HttpTarget, Scripted

pytestmark = pytest.mark.usefixtures("any_backend")  # every test on SQLite and on PostgreSQL


@pytest.fixture
def targets() -> Iterator[tuple[HttpTarget, HttpTarget, HttpTarget]]:
    servers = (HttpTarget().start(), HttpTarget().start(), HttpTarget().start())
    yield servers  # type: ignore[misc]
    for server in servers:
        server.stop()


def config(a: str, b: str, c: str) -> str:
    return f"""
[webhooks.orders]

[[workflows]]
name = "notify"
listen = "webhooks.orders"

[[workflows.steps]]
id = "call"
action = "webhook"
url = "{a}"
json = {{ order = "{{{{ __data.order_id }}}}" }}
retries = 3
retry_backoff = 0.05

[[workflows]]
name = "mirror"
listen = "webhooks.orders"
max_attempts = 3

[[workflows.steps]]
id = "call"
action = "webhook"
url = "{b}"
json = {{ order = "{{{{ __data.order_id }}}}" }}

[[workflows]]
name = "options"
listen = "webhooks.orders"

[[workflows.steps]]
action = "webhook"
url = "{c}/templated"
idempotency_key = "order-{{{{ __data.order_id }}}}"

[[workflows.steps]]
action = "webhook"
url = "{c}/empty"
idempotency_key = "{{{{ __data.nothing }}}}"

[[workflows.steps]]
action = "webhook"
url = "{c}/off"
idempotency_key = false

[[workflows.steps]]
action = "webhook"
url = "{c}/own"
headers = {{ "idempotency-key" = "mine-{{{{ __data.order_id }}}}" }}
"""


def keys(target: HttpTarget, path: str | None = None) -> list[str | None]:
    return [r.header("Idempotency-Key") for r in target.requests if path is None or r.path == path]


def test_the_key_is_the_same_on_every_retry_of_one_step(
    router_factory: Callable[..., RouterProcess], targets: tuple[HttpTarget, HttpTarget, HttpTarget]
) -> None:
    notify, mirror, options = targets
    notify.answer(Scripted(503), Scripted(502), Scripted(503))  # three failures, then the echo
    mirror.answer(Scripted(500), Scripted(500))  # the run fails twice (max_attempts = 3)
    router = router_factory(config(notify.url("/n"), mirror.url("/m"), options.base_url))
    r = httpx.post(router.url("webhooks.orders"), json={"order_id": 42}, timeout=10)
    assert r.status_code == 200
    sid = r.json()["signal_id"]
    router.wait_for(
        lambda: len(notify.requests) == 4 and len(mirror.requests) == 3 and len(options.requests) == 4
    )

    # The step's own retries: four tries, one key, the signal's id with the workflow and step.
    assert keys(notify) == [f"{sid}:notify:call"] * 4
    # The run's retries (a new attempt of the whole run): still the same key.
    assert keys(mirror) == [f"{sid}:mirror:call"] * 3
    # Both workflows have a step "call": the keys differ, so a receiver keeps both effects.
    assert keys(notify)[0] != keys(mirror)[0]
    assert keys(options, "/templated") == ["order-42"]
    assert keys(options, "/empty") == [f"{sid}:options:step-2"]  # rendered empty: the default
    assert keys(options, "/off") == [None]
    assert keys(options, "/own") == ["mine-42"]
    [run] = [
        run for run in router.signals()[0]["runs"] if run["workflow"] == "notify" and run["status"] == "done"
    ]
    assert run["trace"][0]["output"]["idempotency_key"] == f"{sid}:notify:call"


@pytest.mark.parametrize("value", ["true", "5", '""'])
def test_bad_idempotency_key_values_are_config_errors(
    router_factory: Callable[..., RouterProcess], value: str
) -> None:
    router = router_factory(
        f"""
[webhooks.w]

[[workflows]]
name = "w"
listen = "webhooks.w"

[[workflows.steps]]
action = "webhook"
url = "http://127.0.0.1:9/"
idempotency_key = {value}
""",
        start=False,
    )
    check = router.cli("check", check=False)
    assert check.returncode != 0 and "idempotency_key" in check.stdout + check.stderr


# -- SIGKILL: at-least-once delivery, exactly-once effects at a receiver that honours the key ----


class _DedupHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        owner: DedupReceiver = self.server.owner  # type: ignore[attr-defined]
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        key = self.headers.get("Idempotency-Key") or ""
        with owner.lock:
            owner.deliveries.append((key, body["n"]))
            fresh = key not in owner.effects
            if fresh:
                owner.effects[key] = body["n"]  # the effect happens once per key
            owner.in_flight += 1
        try:
            # Slow answers: a SIGKILL lands while calls whose effect already happened are in flight.
            owner.stopping.wait(owner.delay)
            self.send_response(200)  # a repeat is answered as the first was, its effect not redone
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
        except OSError:
            self.close_connection = True
        finally:
            with owner.lock:
                owner.in_flight -= 1


class DedupReceiver(ThreadedServer):
    handler_class = _DedupHandler

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.deliveries: list[tuple[str, int]] = []
        self.effects: dict[str, int] = {}
        self.in_flight = 0


SIGNALS = 240
KILLS = 3


def test_sigkill_under_load_gives_duplicate_deliveries_but_no_duplicate_effects(
    router_factory: Callable[..., RouterProcess], capsys: pytest.CaptureFixture[str]
) -> None:
    receiver = DedupReceiver(delay=0.3).start()
    try:
        router = router_factory(
            f"""
[webhooks.load]

[[workflows]]
name = "deliver"
listen = "webhooks.load"

[[workflows.steps]]
id = "post"
action = "webhook"
url = "{receiver.url("/effects")}"
json = {{ n = "{{{{ __data.n }}}}" }}
retries = 2
retry_backoff = 0.05
""",
            start=False,
        )
        router.config_path.write_text(router.config_path.read_text().replace('lease = "3s"', 'lease = "1s"'))
        router.start()
        url = router.url("webhooks.load")
        acked: dict[int, str] = {}
        stop = threading.Event()

        def load() -> None:
            n = 0
            with httpx.Client(timeout=5) as client:
                while n < SIGNALS and not stop.is_set():
                    try:
                        # The sender's own key: its repeat of an n whose answer a kill lost is
                        # the same signal, not a second one.
                        r = client.post(url, json={"n": n}, headers={"Idempotency-Key": f"load-{n}"})
                    except httpx.HTTPError:
                        time.sleep(0.05)  # the daemon is down: try this n again
                        continue
                    if r.status_code == 200:
                        acked[n] = r.json()["signal_id"]
                        n += 1
                    else:
                        time.sleep(0.05)

        for _ in range(KILLS):
            sender = threading.Thread(target=load, daemon=True)
            sender.start()
            # Kill while a call whose effect already happened is waiting for its answer.
            router.wait_for(lambda: receiver.in_flight > 0, timeout=30, interval=0.005)
            router.kill()
            stop.set()
            sender.join(10)
            stop.clear()
            router.start()
        sender = threading.Thread(target=load, daemon=True)
        sender.start()
        sender.join(120)
        assert len(acked) == SIGNALS

        def settled() -> bool:
            rows = router.signals("--source", "webhooks.load")
            return bool(rows) and all(s["status"] == "done" for s in rows)

        router.wait_for(settled, timeout=90, interval=0.5)
        journaled = router.signals("--source", "webhooks.load")
        with receiver.lock:
            deliveries, effects = list(receiver.deliveries), dict(receiver.effects)
    finally:
        receiver.stop()

    keys_of: dict[int, set[str]] = defaultdict(set)
    for key, n in deliveries:
        keys_of[n].add(key)
    repeated = len(deliveries) - len(effects)
    with capsys.disabled():
        print(
            f"\nidempotency: {KILLS} SIGKILLs, {len(journaled)} signals journaled ({len(acked)} acked), "
            f"{len(deliveries)} deliveries, {repeated} repeated deliveries dropped by key, "
            f"{len(effects)} effects, duplicate effects {len(effects) - len(set(effects.values()))}",
            flush=True,
        )
    assert repeated >= KILLS  # each kill left at least one call to be made again
    assert all(len(k) == 1 for k in keys_of.values()), "a signal's deliveries carried different keys"
    assert sorted(effects.values()) == sorted(set(effects.values()))  # no duplicate effect
    assert set(acked) <= set(effects.values())  # every acknowledged signal has its effect
    by_signal = {s["id"]: s["entity"]["n"] for s in journaled}
    for key, n in effects.items():
        sid = key.split(":", 1)[0]
        assert key == f"{sid}:deliver:post" and by_signal[sid] == n
