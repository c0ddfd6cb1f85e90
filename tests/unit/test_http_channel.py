"""The HTTP channel in process: requests through httpx's ASGITransport into the real channel,
dispatcher, engine and a real storage in a temp dir (tests/unit/conftest.py). What the wire adds
(hypercorn, keep-alive, slow clients, TLS) stays in the end-to-end tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from router.build import build_routes
from tests.unit.conftest import Node

Factory = Callable[..., Awaitable[Node]]

CONFIG = """
[webhooks.payments]

[webhooks.off]
active = false

[endpoints.ask]
return_type = "continue"

[endpoints.hello]
return_type = "data"
return_data = '{"hi": "{{ __data.name }}"}'

[forms.contact]

[[workflows]]
name = "payments"
listen = "webhooks.payments"

[[workflows.steps]]
action = "create_record"
record_type = "payment"
fields = { pid = "{{ __data.id }}" }

[[workflows]]
name = "ask"
listen = "endpoints.ask"
run_mode = "sync"

[[workflows.steps]]
action = "respond"
status = 201
return_type = "data"
return_data = '{"answer": "{{ __data.q }}"}'
"""


def webhook_url(node: Node, name: str = "payments", key: str | None = None) -> str:
    state = node.state_of("webhooks", name)
    return f"/webhooks/incoming/{name}?apiKey={key or state.api_key}"


def endpoint_url(node: Node, name: str) -> str:
    state = node.state_of("endpoints", name)
    return f"/listener/{state.first_hash}/{state.second_hash}"


def payments(node: Node) -> list[dict[str, Any]]:
    return node.storage.read(lambda tx: tx.record_find("payment", {}))


async def test_a_webhook_is_journaled_run_and_a_repeat_replayed(node_factory: Factory) -> None:
    node = await node_factory(CONFIG)
    first = await node.client.post(webhook_url(node), json={"id": "p1"}, headers={"Idempotency-Key": "k1"})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["status"] == "accepted"
    signal = await node.settled(body["signal_id"])
    assert signal.status == "done" and signal.entity.data["id"] == "p1" and signal.dedup_key == "k1"
    assert [r["pid"] for r in payments(node)] == ["p1"]

    again = await node.client.post(webhook_url(node), json={"id": "p1"}, headers={"Idempotency-Key": "k1"})
    assert again.status_code == 200 and again.json() == body
    assert again.headers["idempotent-replayed"] == "true"
    assert len(node.signals()) == 1 and len(payments(node)) == 1
    assert [o for _, _, o in node.observed.submits] == ["accepted", "duplicate"]


async def test_webhook_refusals_journal_nothing(node_factory: Factory) -> None:
    node = await node_factory(CONFIG)
    c = node.client
    cases = {
        "no key": (await c.post("/webhooks/incoming/payments", json={}), 401),
        "wrong key": (await c.post(webhook_url(node, key="nope"), json={}), 401),
        "not JSON": (
            await c.post(
                webhook_url(node),
                content=b"a=1",
                headers={"content-type": "application/x-www-form-urlencoded"},
            ),
            400,
        ),
        "empty": (await c.post(webhook_url(node), content=b""), 400),
        "GET": (await c.get(webhook_url(node)), 405),
        "inactive": (await c.post(webhook_url(node, "off"), json={}), 404),
        "unknown": (await c.post("/webhooks/incoming/nobody?apiKey=x", json={}), 404),
        "unknown path": (await c.get("/nothing/here"), 404),
    }
    for what, (response, status) in cases.items():
        assert response.status_code == status, (what, response.text)
        assert "error" in response.json(), what
    assert node.signals() == [] and node.observed.submits == []


async def test_a_sync_endpoint_answers_with_the_runs_reply(node_factory: Factory) -> None:
    node = await node_factory(CONFIG)
    response = await node.client.post(endpoint_url(node, "ask"), json={"q": "why"})
    assert response.status_code == 201, response.text
    assert response.json() == {"answer": "why"}
    [signal] = node.signals()
    assert (await node.settled(signal.id)).status == "done"
    # A repeat of its key gets the answer the runs gave, without running again.
    key = {"Idempotency-Key": "ask-1"}
    one = await node.client.post(endpoint_url(node, "ask"), json={"q": "once"}, headers=key)
    two = await node.client.post(endpoint_url(node, "ask"), json={"q": "twice"}, headers=key)
    assert one.json() == two.json() == {"answer": "once"} and two.status_code == 201
    assert two.headers["idempotent-replayed"] == "true"
    assert len(node.signals()) == 2


async def test_a_data_endpoint_renders_and_head_has_no_body(node_factory: Factory) -> None:
    node = await node_factory(CONFIG)
    url = endpoint_url(node, "hello")
    get = await node.client.get(url, params={"name": "Ann"})
    assert get.status_code == 200 and get.json() == {"hi": "Ann"}
    assert get.headers["content-type"] == "application/json"
    head = await node.client.head(url, params={"name": "Ann"})
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"]
    assert len(node.signals()) == 2  # nobody listens: journaled as done, nothing runs
    assert {s.status for s in node.signals()} == {"done"}


async def test_routes_follow_a_deactivation(node_factory: Factory) -> None:
    node = await node_factory(CONFIG)

    async def set_active(active: bool) -> None:
        await node.storage.write(lambda tx: tx.source_set_active("webhooks", "payments", active))
        node.http.set_routes(build_routes(node.cfg, node.storage.read(lambda tx: tx.source_states())))

    await set_active(False)
    assert (await node.client.post(webhook_url(node), json={"id": "x"})).status_code == 404
    await set_active(True)
    assert (await node.client.post(webhook_url(node), json={"id": "y"})).status_code == 200
    assert [s.entity.data["id"] for s in node.signals()] == ["y"]


async def test_a_form_answers_with_a_page_and_the_honeypot_journals_nothing(node_factory: Factory) -> None:
    node = await node_factory(CONFIG)
    bot = await node.client.post("/forms/contact", data={"email": "a@b.c", "website": "spam.example"})
    assert bot.status_code == 200 and "Thank you" in bot.text
    assert node.signals() == []
    person = await node.client.post("/forms/contact", data={"email": "a@b.c", "website": ""})
    assert person.status_code == 200 and "Thank you" in person.text
    [signal] = node.signals()
    assert signal.entity.data["email"] == "a@b.c" and "website" not in signal.entity.data
    not_a_form = await node.client.post("/forms/contact", json={"email": "a@b.c"})
    assert not_a_form.status_code == 400 and not_a_form.headers["content-type"].startswith("text/html")


async def test_a_body_over_the_limit_is_413_and_not_journaled(node_factory: Factory) -> None:
    node = await node_factory(CONFIG + '\n[http]\nmax_body = "1KiB"\n')
    response = await node.client.post(
        webhook_url(node),
        content=b'{"pad": "' + b"x" * 2048 + b'"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413 and response.json()["limit"] == 1024
    assert node.signals() == []
