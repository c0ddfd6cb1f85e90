"""JWT attacks against a real daemon's dynamic endpoint (SPEC §6): foreign algorithms really signed
with RSA/EC keys, `alg: none`, the wrong HMAC key, exp/nbf on both sides of the 60 s leeway,
wrong or missing issuer. Each gets its exact status and error code, nothing is journaled, and
neither the answer nor the log ever shows the secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.daemon import RouterFactory, RouterProcess
from tests.security_support import journal_count

SECRET = "jwt-secret-Zq8v3LmN0pR7sT1uW4xY6zA9bC2dE5fG-Hj3kL8mN1pQ4rS7tU0vW2xY5z"  # 64 bytes, recognisable in any leak
ISSUER = "billing"

CONFIG = f"""
[endpoints.secure]
return_type = "data"
return_data = '{{"user": {{{{ __data.__headers.__jwt_data[0].user | json_encode }}}}}}'
add_authentication = true
endpoint_key = "{ISSUER}"
endpoint_secret = "{SECRET}"
"""


@pytest.fixture(scope="module")
def router(module_router_factory: RouterFactory) -> RouterProcess:
    return module_router_factory(CONFIG)


@pytest.fixture(scope="module")
def url(router: RouterProcess) -> str:
    return router.url("endpoints.secure")


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"iss": ISSUER, "iat": now, "exp": now + 300, "data": {"user": 7}}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def hs(key: str = SECRET, algorithm: str = "HS256", **extra: Any) -> str:
    return jwt.encode(claims(**extra), key, algorithm=algorithm)


def b64(part: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()


def raw_hs256(payload: dict[str, Any], key: bytes) -> str:
    """HS256 by hand, for claims PyJWT refuses to encode (and keys it refuses to use)."""
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64(payload)}"
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def post(url: str, token: str | None, *, header: str = "authorization") -> httpx.Response:
    headers = {}
    if token is not None:
        headers = {"Authorization": f"Bearer {token}"} if header == "authorization" else {header: token}
    return httpx.post(url, json={"n": 1}, headers=headers, timeout=10)


def refused(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["error"] == error, body
    assert body.get("reason"), body  # a readable reason next to the code
    assert SECRET not in response.text and SECRET not in str(response.headers)
    return body


def journaled(router: RouterProcess) -> int:
    return journal_count(router, "endpoints.secure")


def test_valid_tokens_pass_both_ways_and_all_hmac_sizes(url: str) -> None:
    """The positive control: without it every refusal below could be a broken endpoint."""
    for algorithm in ("HS256", "HS384", "HS512"):
        ok = post(url, hs(algorithm=algorithm))
        assert ok.status_code == 200 and ok.json() == {"user": 7}, ok.text
    assert post(url, hs(), header="token").json() == {"user": 7}


def rsa_token() -> tuple[str, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return jwt.encode(claims(), key, algorithm="RS256"), public


def ec_token() -> str:
    return jwt.encode(claims(), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")


def test_foreign_algorithms_are_refused(router: RouterProcess, url: str) -> None:
    before = journaled(router)
    token, public_pem = rsa_token()
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    body = refused(post(url, token), 401, "invalid_token")
    assert "RS256" in body["reason"] and "HS256" in body["reason"]
    body = refused(post(url, ec_token()), 401, "invalid_token")
    assert "ES256" in body["reason"]
    # Algorithm confusion: an HS256 token keyed with the RSA public key is just a wrong key.
    confused = raw_hs256(claims(), public_pem)
    refused(post(url, confused), 401, "invalid_signature")
    # `alg: none`, however it is spelled, with and without a trailing signature.
    none = jwt.encode(claims(), None, algorithm="none")
    assert none.endswith(".")
    refused(post(url, none), 401, "invalid_token")
    payload = b64(claims())
    for alg in ("none", "None", "NONE", "nOnE", ""):
        unsigned = f"{b64({'alg': alg, 'typ': 'JWT'})}.{payload}."
        refused(post(url, unsigned), 401, "invalid_token")
    # A real HS256 signature glued under a header that claims `none` does not help either.
    signed = hs().split(".")
    refused(post(url, f"{b64({'alg': 'none'})}.{signed[1]}.{signed[2]}"), 401, "invalid_token")
    # No `alg` at all.
    refused(post(url, f"{b64({'typ': 'JWT'})}.{payload}.{signed[2]}"), 401, "invalid_token")
    assert journaled(router) == before  # the check runs before anything is journaled


def test_wrong_key_and_tampered_tokens(router: RouterProcess, url: str) -> None:
    before = journaled(router)
    refused(post(url, hs(key="w" * 40)), 401, "invalid_signature")
    refused(post(url, hs(key=SECRET[:-1] + "H")), 401, "invalid_signature")  # off by one character
    refused(post(url, hs(key=SECRET, algorithm="HS512")[:-4] + "AAAA"), 401, "invalid_signature")
    # The payload swapped for another user's, signature kept.
    head, _, sig = hs().split(".")
    forged = f"{head}.{b64(claims(data={'user': 1}))}.{sig}"
    refused(post(url, forged), 401, "invalid_signature")
    for garbage in ("x", "a.b", "a.b.c", "....", "Bearer", "eyJ" + "A" * 5000):
        refused(post(url, garbage), 401, "invalid_token")
    refused(post(url, hs(exp="soon")), 401, "invalid_token")  # a claim of the wrong type
    assert journaled(router) == before


@pytest.mark.parametrize(
    "make, outcome",
    [
        # exp 59 s ago is inside the 60 s leeway, 61 s ago is not (rounded so the request's own
        # latency of up to a second never decides the outcome).
        (lambda now: {"exp": math.ceil(now) - 59}, None),
        (lambda now: {"exp": math.floor(now) - 61}, "token_expired"),
        (lambda now: {"nbf": math.floor(now) + 59}, None),
        (lambda now: {"nbf": math.ceil(now) + 61}, "token_not_yet_valid"),
        (lambda now: {"iat": math.floor(now) + 59}, None),
        (lambda now: {"iat": math.ceil(now) + 61}, "token_not_yet_valid"),
    ],
    ids=["exp-59", "exp-61", "nbf+59", "nbf+61", "iat+59", "iat+61"],
)
def test_leeway_is_sixty_seconds(
    router: RouterProcess, url: str, make: Callable[[float], dict[str, int]], outcome: str | None
) -> None:
    before = journaled(router)
    response = post(url, hs(**{"iat": None, **make(time.time())}))
    if outcome is None:
        assert response.status_code == 200 and response.json() == {"user": 7}, response.text
        assert journaled(router) == before + 1
    else:
        refused(response, 401, outcome)
        assert journaled(router) == before


def test_issuer_and_missing_token(router: RouterProcess, url: str) -> None:
    assert post(url, raw_hs256(claims(), SECRET.encode())).status_code == 200  # the hand-made signer is right
    before = journaled(router)
    body = refused(post(url, None), 403, "forbidden")
    assert "missing" in body["reason"]
    refused(httpx.post(url, json={}, headers={"Authorization": "Bearer"}), 403, "forbidden")
    httpx_basic = httpx.post(url, json={}, auth=("billing", SECRET))  # not a bearer token: missing
    refused(httpx_basic, 403, "forbidden")
    refused(post(url, hs(iss="other")), 401, "invalid_issuer")
    refused(post(url, hs(iss="Billing")), 401, "invalid_issuer")  # exact, case included
    refused(post(url, raw_hs256(claims(iss=["billing"]), SECRET.encode())), 401, "invalid_issuer")
    body = refused(post(url, hs(iss=None)), 401, "invalid_token")
    assert "iss" in body["reason"]
    assert journaled(router) == before
    assert SECRET not in router.log()
