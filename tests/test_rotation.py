"""Generated JWT credentials and rotation with a grace period, against the real daemon (issue 16,
Bug 3 and Must show 3 and 4).

An endpoint with `add_authentication = true` and no `endpoint_key` / `endpoint_secret` gets both
on first start (kept in the data dir, shown by `router endpoints --json`); a configured one is
pinned. `router endpoints rotate NAME --grace D` (and `POST /api/sources/NAME/rotate` with a
grace) makes new credentials work at once while the old ones keep working until the grace ends.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from router.exitcodes import USAGE
from tests.daemon import RouterProcess
from tests.rotation_support import CONFIG, ENV, PINNED_KEY, PINNED_SECRET, call, epoch, pair, token, within


@pytest.fixture(scope="module")
def router(tmp_path_factory):  # type: ignore[no-untyped-def]
    proc = RouterProcess(tmp_path_factory.mktemp("rotation"), CONFIG, env=ENV).start()
    yield proc
    proc.stop()


def test_check_accepts_add_authentication_without_key_or_secret(router: RouterProcess) -> None:
    result = router.cli("check", check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_pair_is_shown_and_accepted(router: RouterProcess) -> None:
    """Must show 3, first half: a token minted with the pair `router endpoints --json` shows."""
    item = router.sources()["endpoints.signed"]
    key, secret = pair(item)
    assert key.startswith("signed-") and len(secret) >= 86 and item["pinned"] == []  # 64 random bytes
    assert call(item["url"]) == 403  # no token
    for algorithm in ("HS256", "HS384", "HS512"):  # long enough for each: PyJWT does not warn
        assert call(item["url"], token(key, secret, algorithm)) == 200
    assert call(item["url"], token(key, "x" * 43)) == 401
    assert call(item["url"], token("someone-else", secret)) == 401
    minted = router.cli("jwt", "signed").stdout.strip()  # `router jwt` uses the same generated pair
    assert call(item["url"], minted) == 200
    text = router.cli("endpoints").stdout
    assert f"JWT key (iss) {key}, secret {secret}" in text


def test_rotation_replaces_the_generated_pair(router: RouterProcess) -> None:
    """Must show 3, second half: after `router endpoints rotate` the old token is refused."""
    before = router.sources()["endpoints.signed"]
    old_token = token(*pair(before))
    fresh = json.loads(router.cli("endpoints", "rotate", "signed", "--json").stdout)
    assert fresh["url"] != before["url"] and pair(fresh) != pair(before)
    assert "previous" not in fresh and "grace_until" not in fresh
    within(15.0, lambda: call(fresh["url"], token(*pair(fresh))) == 200)
    r = httpx.post(fresh["url"], headers={"Authorization": f"Bearer {old_token}"})
    assert r.status_code == 401 and r.json()["error"] in ("invalid_issuer", "invalid_signature")
    assert call(before["url"], old_token) == 404
    assert pair(router.sources()["endpoints.signed"]) == pair(fresh)


def test_a_configured_key_or_secret_is_pinned(router: RouterProcess) -> None:
    items = router.sources()
    partner = items["endpoints.partner"]
    assert partner["endpoint_key"] == "partner" and partner["pinned"] == ["endpoint_key"]
    assert call(partner["url"], token("partner", partner["endpoint_secret"])) == 200
    fixed = items["endpoints.fixed"]
    assert fixed["endpoint_key"] == "fixed" and "endpoint_secret" not in fixed
    assert fixed["pinned"] == ["endpoint_key", "endpoint_secret"]
    listing = router.cli("endpoints", "--json").stdout + router.cli("endpoints").stdout
    assert PINNED_SECRET not in listing  # a pinned secret is never printed
    assert call(fixed["url"], token("fixed", PINNED_SECRET)) == 200

    # Rotation moves the URLs; pinned parts stay (the config wins), generated ones change.
    fresh = json.loads(router.cli("endpoints", "rotate", "partner", "--json").stdout)
    assert fresh["endpoint_key"] == "partner" and fresh["endpoint_secret"] != partner["endpoint_secret"]
    within(15.0, lambda: call(fresh["url"], token("partner", fresh["endpoint_secret"])) == 200)
    assert call(fresh["url"], token("partner", partner["endpoint_secret"])) == 401
    moved = json.loads(router.cli("endpoints", "rotate", "fixed", "--json").stdout)
    within(15.0, lambda: call(moved["url"], token("fixed", PINNED_SECRET)) == 200)
    refused = router.cli("endpoints", "rotate", "pinned_hook", check=False)
    assert refused.returncode != 0 and "pinned in the config" in refused.stderr
    assert router.sources()["webhooks.pinned_hook"]["api_key"] == PINNED_KEY


def test_grace_keeps_the_old_url_and_secret_until_it_ends(router: RouterProcess) -> None:
    """Must show 4 for an endpoint: during the grace old and new URL and secret work in every
    combination; after it only the new ones. The first grace is long (the checks must not race
    it on a loaded machine); a second rotation with a short one shows the end of a grace."""
    before = router.sources()["endpoints.signed"]
    old_url, old_tok = before["url"], token(*pair(before))
    fresh = json.loads(router.cli("endpoints", "rotate", "signed", "--grace", "10m", "--json").stdout)
    new_url, new_tok = fresh["url"], token(*pair(fresh))
    until = epoch(fresh["grace_until"])
    assert (
        fresh["previous"]["url"] == old_url
        and fresh["previous"]["endpoint_secret"] == before["endpoint_secret"]
    )
    assert epoch(fresh["previous"]["expires_at"]) == until
    within(15.0, lambda: call(new_url, new_tok) == 200)  # the daemon took the change
    during = {(u, t): call(u, t) for u in (old_url, new_url) for t in (old_tok, new_tok)}
    assert set(during.values()) == {200}, during
    assert "works until" in router.cli("endpoints").stdout

    # Rotating again ends the running grace at once and starts a short one for `fresh`.
    last = json.loads(router.cli("endpoints", "rotate", "signed", "--grace", "2s", "--json").stdout)
    last_url, last_tok = last["url"], token(*pair(last))
    until = epoch(last["grace_until"])
    within(15.0, lambda: call(last_url, last_tok) == 200 and call(old_url, old_tok) == 404)
    within(20.0, lambda: call(new_url, last_tok) == 404)
    assert time.time() >= until - 0.25  # not before the grace ended (a clock read apart)
    assert call(last_url, new_tok) == 401 and call(last_url, last_tok) == 200
    assert "previous" not in router.sources()["endpoints.signed"]


def test_grace_for_a_webhook_key(router: RouterProcess) -> None:
    """Must show 4 for an API key (and its URL with ?apiKey=)."""
    before = router.sources()["webhooks.hooks"]
    fresh = json.loads(router.cli("endpoints", "rotate", "hooks", "--grace", "10m", "--json").stdout)
    assert fresh["previous"]["api_key"] == before["api_key"] != fresh["api_key"]
    within(15.0, lambda: httpx.post(fresh["url"], json={}).status_code == 200)
    old = httpx.post(before["url"], json={}).status_code
    header = httpx.post(
        before["url"].split("?")[0], json={}, headers={"X-Api-Key": before["api_key"]}
    ).status_code
    assert (old, header) == (200, 200)
    last = json.loads(router.cli("endpoints", "rotate", "hooks", "--grace", "2s", "--json").stdout)
    until = epoch(last["grace_until"])
    within(
        15.0,
        lambda: (
            httpx.post(last["url"], json={}).status_code == 200
            and httpx.post(before["url"], json={}).status_code == 401
        ),
    )
    within(20.0, lambda: httpx.post(fresh["url"], json={}).status_code == 401)
    assert time.time() >= until - 0.25
    assert httpx.post(last["url"], json={}).status_code == 200


def test_grace_survives_a_restart_and_a_later_rotation_ends_it(router_factory) -> None:  # type: ignore[no-untyped-def]
    router = router_factory(CONFIG, env=ENV)
    url0 = router.url("endpoints.plain")
    url1 = json.loads(router.cli("endpoints", "rotate", "plain", "--grace", "1h", "--json").stdout)["url"]
    assert router.stop() == 0
    router.start()  # the previous URL is in the data dir, not in the old process's memory
    assert httpx.get(url0).status_code == 200 and httpx.get(url1).status_code == 200
    item = router.sources()["endpoints.plain"]
    assert item["previous"]["url"] == url0 and 3500 < item["previous"]["expires_in"] <= 3600
    # A second rotation with grace: the one it replaces is the previous now; the older one stops.
    url2 = json.loads(router.cli("endpoints", "rotate", "plain", "--grace", "1h", "--json").stdout)["url"]
    within(15.0, lambda: httpx.get(url2).status_code == 200 and httpx.get(url0).status_code == 404)
    assert httpx.get(url1).status_code == 200
    # Without a grace the rotation ends the running one too: only the newest URL answers.
    url3 = json.loads(router.cli("endpoints", "rotate", "plain", "--json").stdout)["url"]
    within(15.0, lambda: httpx.get(url3).status_code == 200 and httpx.get(url1).status_code == 404)
    assert httpx.get(url2).status_code == 404
    bad = router.cli("endpoints", "rotate", "plain", "--grace", "soon", check=False)
    assert bad.returncode == USAGE and "--grace" in bad.stderr, (bad.returncode, bad.stderr)
    assert router.cli("endpoints", "rotate", "plain", "--grace", "31d", check=False).returncode == USAGE
