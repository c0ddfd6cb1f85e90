"""`router endpoints activate|deactivate|rotate`, `router jwt`, `router endpoints --json` against a
running daemon: it sees every change within a second (SPEC §3)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import jwt
import pytest

SECRET = "cli-secret-" + "q" * 32

CONFIG = """
[endpoints.orders]
return_data = "orders ok"

[endpoints.secure]
return_data = '{{ __data.__headers.__jwt_data[0] | json_encode }}'
add_authentication = true
endpoint_key = "shop"
endpoint_secret = "${CLI_JWT_SECRET}"

[endpoints.templated]
return_data = "templated ok"
add_authentication = true
endpoint_key = "{{ 'sh' ~ 'op' }}-2"
endpoint_secret = "${CLI_JWT_SECRET}"

[webhooks.events]

[mailboxes.support]
address = "support@example.com"

[schedules.nightly]
cron = "0 2 * * *"
"""


@pytest.fixture(scope="module")
def router(module_router_factory):  # type: ignore[no-untyped-def]
    return module_router_factory(CONFIG, env={"CLI_JWT_SECRET": SECRET})


def _within(seconds: float, check: Callable[[], bool]) -> float:
    """How long until `check()` held; fails if it took longer than `seconds`."""
    t0 = time.monotonic()
    while True:
        if check():
            return time.monotonic() - t0
        if time.monotonic() - t0 > seconds:
            raise AssertionError(f"not seen within {seconds}s")
        time.sleep(0.05)


def test_deactivate_and_activate_are_seen_within_a_second(router) -> None:  # type: ignore[no-untyped-def]
    url = router.url("endpoints.orders")
    assert httpx.get(url).status_code == 200
    out = router.cli("endpoints", "deactivate", "orders")
    assert "deactivated" in out.stdout
    _within(1.0, lambda: httpx.get(url).status_code == 404)
    assert router.sources()["endpoints.orders"]["active"] is False
    router.cli("endpoints", "activate", "endpoints.orders")
    _within(1.0, lambda: httpx.get(url).status_code == 200)
    assert router.sources()["endpoints.orders"]["active"] is True


def test_rotate_endpoint_moves_the_url(router) -> None:  # type: ignore[no-untyped-def]
    old = router.url("endpoints.orders")
    assert httpx.get(old).status_code == 200
    fresh = json.loads(router.cli("endpoints", "rotate", "orders", "--json").stdout)
    new = fresh["url"]
    assert new != old and fresh["first_hash"] in new and len(fresh["first_hash"]) >= 32
    _within(1.0, lambda: httpx.get(new).status_code == 200 and httpx.get(old).status_code == 404)
    assert router.url("endpoints.orders") == new


def test_rotate_and_deactivate_webhook(router) -> None:  # type: ignore[no-untyped-def]
    item = router.sources()["webhooks.events"]
    old_url, old_key = item["url"], item["api_key"]
    assert httpx.post(old_url, json={"n": 1}).status_code == 200
    fresh = json.loads(router.cli("endpoints", "rotate", "events", "--json").stdout)
    new_key = fresh["api_key"]
    assert new_key != old_key and len(new_key) == 43
    _within(1.0, lambda: httpx.post(old_url, json={"n": 2}).status_code == 401)
    assert httpx.post(fresh["url"], json={"n": 3}).status_code == 200
    assert httpx.post(old_url.split("?")[0], json={}, headers={"X-Api-Key": new_key}).status_code == 200
    # Deactivated: 404 with the key kept; reactivated: the same key works again.
    router.cli("endpoints", "deactivate", "webhooks.events")
    _within(1.0, lambda: httpx.post(fresh["url"], json={}).status_code == 404)
    router.cli("endpoints", "activate", "webhooks.events")
    _within(1.0, lambda: httpx.post(fresh["url"], json={}).status_code == 200)
    assert router.sources()["webhooks.events"]["api_key"] == new_key


def test_rotate_refuses_sources_without_credentials(router) -> None:  # type: ignore[no-untyped-def]
    result = router.cli("endpoints", "rotate", "support", check=False)
    assert result.returncode != 0 and "no credentials to rotate" in result.stderr
    result = router.cli("endpoints", "deactivate", "nope", check=False)
    assert result.returncode != 0 and "no source named 'nope'" in result.stderr


def test_jwt_mints_a_token_the_endpoint_accepts(router) -> None:  # type: ignore[no-untyped-def]
    url = router.url("endpoints.secure")
    token = router.cli("jwt", "secure", "--data", '{"a": 1}').stdout.strip()
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], issuer="shop")
    assert claims["data"] == {"a": 1} and claims["exp"] - claims["iat"] == 300
    r = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json() == {"a": 1}
    short = router.cli("jwt", "endpoints.secure", "--ttl", "5").stdout.strip()
    assert httpx.get(url, headers={"token": short}).status_code == 200
    bad = router.cli("jwt", "secure", "--data", "{oops", check=False)
    assert bad.returncode != 0 and "--data is not valid JSON" in bad.stderr
    assert router.cli("jwt", "orders", check=False).returncode != 0  # no JWT on that endpoint


def test_jwt_with_templated_endpoint_key(router) -> None:  # type: ignore[no-untyped-def]
    token = router.cli("jwt", "templated").stdout.strip()
    assert jwt.decode(token, SECRET, algorithms=["HS256"], issuer="shop-2")
    r = httpx.post(router.url("endpoints.templated"), headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.text == "templated ok"


def test_endpoints_json_lists_everything(router) -> None:  # type: ignore[no-untyped-def]
    items = json.loads(router.cli("endpoints", "--json").stdout)
    by = {f"{i['kind']}.{i['name']}": i for i in items}
    assert set(by) == {
        "endpoints.orders",
        "endpoints.secure",
        "endpoints.templated",
        "webhooks.events",
        "mailboxes.support",
        "schedules.nightly",
    }
    for item in items:
        assert {"kind", "name", "active"} <= set(item)
        assert item.get("url") or item.get("address")
    assert by["endpoints.orders"]["url"].startswith(f"{router.base}/listener/")
    assert by["endpoints.secure"]["endpoint_key"] == "shop"
    assert by["endpoints.templated"]["endpoint_key"] == "shop-2"  # rendered, as the daemon checks it
    assert SECRET not in json.dumps(items)  # the JWT secret is never printed
    hook = by["webhooks.events"]
    assert hook["url"] == f"{router.base}/webhooks/incoming/events?apiKey={hook['api_key']}"
    assert by["mailboxes.support"]["address"] == "support@example.com"
    text = router.cli("endpoints").stdout
    assert "endpoints" in text and by["endpoints.orders"]["url"] in text
