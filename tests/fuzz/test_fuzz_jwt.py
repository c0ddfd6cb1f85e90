"""Fuzz the endpoint JWT check: any token, header or claims → 401/403 (or the claims of a token
that really is valid), never an exception."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from channels.http.jwt_auth import ALGORITHMS, JwtFailure, jwt_data, token_from_headers, verify
from tests.fuzz.profiles import examples

ISSUER = "billing"
SECRET = "s" * 40
HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def sign(
    header: dict[str, Any] | Any, claims: Any, secret: str = SECRET, *, raw_claims: bytes | None = None
) -> str:
    """A token built by hand, so headers and claims can be anything JSON (or not JSON at all)."""
    signing = (
        b64(json.dumps(header).encode())
        + "."
        + b64(raw_claims if raw_claims is not None else json.dumps(claims).encode())
    )
    alg = header.get("alg") if isinstance(header, dict) else None
    digest = HASHES.get(alg, hashlib.sha256) if isinstance(alg, str) else hashlib.sha256
    return signing + "." + b64(hmac.new(secret.encode(), signing.encode(), digest).digest())


json_any = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
times = st.one_of(
    st.integers(),
    st.floats(),
    st.text(max_size=10),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.sampled_from([time.time(), time.time() + 3600, time.time() - 3600, 1e308, -1e308, 2**64]),
)
algs = (
    st.sampled_from([*ALGORITHMS, "none", "None", "RS256", "ES256", "PS256", "EdDSA", "HS1", "", "hs256"])
    | json_any
)
headers = (
    st.fixed_dictionaries(
        {"alg": algs},
        optional={
            "typ": json_any,
            "kid": json_any,
            "crit": json_any,
            "b64": json_any,
            "jku": json_any,
            "x5u": json_any,
        },
    )
    | json_any
)
claims = (
    st.fixed_dictionaries(
        {},
        optional={
            "iss": st.sampled_from([ISSUER, "other", ""]) | json_any,
            "exp": times,
            "nbf": times,
            "iat": times,
            "data": json_any,
            "aud": json_any,
            "sub": json_any,
        },
    )
    | json_any
)


def assert_clean(outcome: dict[str, Any] | JwtFailure) -> None:
    if isinstance(outcome, JwtFailure):
        assert outcome.status in (401, 403)
        assert SECRET not in outcome.reason
        return
    assert outcome["iss"] == ISSUER  # only a token that really verifies gets through
    assert isinstance(jwt_data(outcome), list)


@examples(600)
@given(header=headers, body=claims, right_secret=st.booleans())
@example(header={"alg": "HS256"}, body={"iss": ISSUER, "exp": 1e308}, right_secret=True)
@example(header={"alg": "HS256"}, body={"iss": ISSUER, "iat": float("inf")}, right_secret=True)
@example(header={"alg": "HS256"}, body={"iss": ISSUER, "nbf": 2**64}, right_secret=True)
@example(header={"alg": "HS256"}, body={"iss": [ISSUER]}, right_secret=True)
@example(header={"alg": "HS256", "crit": ["b64"], "b64": False}, body={"iss": ISSUER}, right_secret=True)
@example(header={"alg": ["HS256"]}, body={}, right_secret=True)
def test_signed_tokens(header: Any, body: Any, right_secret: bool) -> None:
    token = sign(header, body, SECRET if right_secret else "wrong" * 8)
    assert_clean(verify(token, issuer=ISSUER, secret=SECRET))


@examples(450)
@given(
    token=st.text(max_size=200)
    | st.lists(st.text(st.characters(codec="ascii"), max_size=40), max_size=5).map(".".join)
)
@example(token="a.b.c")
@example(token="eyJhbGciOiJIUzI1NiJ9.e30.")
@example(token="....")
@example(token="\x00")
def test_random_tokens(token: str) -> None:
    assert_clean(verify(token, issuer=ISSUER, secret=SECRET))


@examples(300)
@given(header=headers, raw=st.binary(max_size=80))
@example(header={"alg": "HS256"}, raw=b"\xff\xfe")
@example(header={"alg": "HS256"}, raw=b'{"iss": "billing", "exp": 1e400}')
def test_non_json_claims(header: Any, raw: bytes) -> None:
    assert_clean(verify(sign(header, None, raw_claims=raw), issuer=ISSUER, secret=SECRET))


@examples(300)
@given(auth=st.text(max_size=60), token_header=st.text(max_size=60))
def test_token_from_headers(auth: str, token_header: str) -> None:
    token = token_from_headers({"authorization": auth, "token": token_header})
    assert token is None or isinstance(token, str)
    assert_clean(verify(token, issuer=ISSUER, secret=SECRET))
