"""Rotation with a grace period through the admin API and the dashboard, with `[http] workers = 2`:
every HTTP process rebuilds its routes from the store (`sources_version`) and checks the grace
deadline per request, so old and new credentials hold in both processes alike (Must show 4)."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.admin_support import AUTH
from tests.daemon import RouterProcess
from tests.rotation_support import CONFIG, ENV, PINNED_KEY, call, epoch, pair, token, within

SPREAD = 10  # fresh connections per check: the kernel spreads them over both workers' listeners


def everywhere(url: str, tok: str | None, status: int) -> bool:
    return all(call(url, tok) == status for _ in range(SPREAD))


def hook_everywhere(url: str, status: int) -> bool:
    return all(httpx.post(url, json={}, timeout=10).status_code == status for _ in range(SPREAD))


def api(router: RouterProcess, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method, f"http://127.0.0.1:{router.admin_port}{path}", headers=AUTH, timeout=10, **kwargs
    )


def test_admin_rotation_with_grace_across_two_workers(router_factory) -> None:  # type: ignore[no-untyped-def]
    router = router_factory(CONFIG, env=ENV, workers=2)
    router.wait_for(lambda: 'msg="child started" worker=1' in router.log(), timeout=10)
    before = router.sources()["endpoints.signed"]
    old_url, old_tok = before["url"], token(*pair(before))
    within(10.0, lambda: everywhere(old_url, old_tok, 200))  # both workers serve

    r = api(router, "POST", "/api/sources/endpoints.signed/rotate", json={"grace": "10m"})
    assert r.status_code == 200, r.text
    fresh = r.json()
    until = epoch(fresh["grace_until"])
    assert "keeps working until" in fresh["notice"] and fresh["previous"]["url"] == old_url
    new_url, new_tok = fresh["url"], token(*pair(fresh))
    within(15.0, lambda: everywhere(new_url, new_tok, 200))
    during = [
        everywhere(old_url, old_tok, 200),
        everywhere(new_url, old_tok, 200),
        everywhere(old_url, new_tok, 200),
    ]
    shown = api(router, "GET", "/api/sources/endpoints.signed").json()["previous"]
    page = api(router, "GET", "/").text
    assert during == [True, True, True]
    assert epoch(shown["expires_at"]) == until and shown["endpoint_secret"] == before["endpoint_secret"]
    assert "works until" in page and fresh["endpoint_secret"] in page  # the dashboard's copy button

    # A second rotation with a short grace: the first one's old credentials stop at once,
    # `fresh` works until the short grace ends, then only the newest.
    r = api(router, "POST", "/api/sources/endpoints.signed/rotate", json={"grace": "2s"})
    assert r.status_code == 200, r.text
    last = r.json()
    until = epoch(last["grace_until"])
    last_url, last_tok = last["url"], token(*pair(last))
    within(15.0, lambda: everywhere(last_url, last_tok, 200) and everywhere(old_url, old_tok, 404))
    within(20.0, lambda: everywhere(new_url, last_tok, 404))
    assert time.time() >= until - 0.25
    assert everywhere(last_url, new_tok, 401) and everywhere(last_url, last_tok, 200)
    assert "works until" not in api(router, "GET", "/").text
    assert fresh["endpoint_secret"] not in router.log()  # the audit line names the rotation, never the secret
    assert "action=source.rotate" in router.log() and "grace=600" in router.log()


def test_admin_rotation_of_a_webhook_key_and_refusals(router_factory) -> None:  # type: ignore[no-untyped-def]
    router = router_factory(CONFIG, env=ENV, workers=2)
    before = router.sources()["webhooks.hooks"]
    r = api(router, "POST", "/api/sources/webhooks.hooks/rotate?grace=10m")  # the query works as the body
    assert r.status_code == 200, r.text
    fresh = r.json()
    within(15.0, lambda: hook_everywhere(fresh["url"], 200))
    assert hook_everywhere(before["url"], 200)
    r = api(router, "POST", "/api/sources/webhooks.hooks/rotate?grace=2s")
    last = r.json()
    until = epoch(last["grace_until"])
    within(15.0, lambda: hook_everywhere(last["url"], 200) and hook_everywhere(before["url"], 401))
    within(20.0, lambda: hook_everywhere(fresh["url"], 401))
    assert time.time() >= until - 0.25 and hook_everywhere(last["url"], 200)

    bad = api(router, "POST", "/api/sources/webhooks.hooks/rotate", json={"grace": "soon"})
    assert bad.status_code == 400 and "grace" in bad.json()["error"]
    assert api(router, "POST", "/api/sources/webhooks.hooks/rotate", json={"grace": "90d"}).status_code == 400
    pinned = api(router, "POST", "/api/sources/webhooks.pinned_hook/rotate", json={"grace": "1h"})
    assert pinned.status_code == 409 and "pinned" in pinned.json()["error"]
    assert router.sources()["webhooks.pinned_hook"]["api_key"] == PINNED_KEY
    # Without a grace the old key stops at once (as before this change).
    now = api(router, "POST", "/api/sources/webhooks.hooks/rotate").json()
    assert "no longer works" in now["notice"] and "grace_until" not in now
    within(2.0, lambda: hook_everywhere(fresh["url"], 401) and hook_everywhere(now["url"], 200))
