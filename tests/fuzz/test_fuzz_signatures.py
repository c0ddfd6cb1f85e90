"""Fuzz the provider signature presets: any header values → None (holds) or a reason (a 401),
never an exception."""

from __future__ import annotations

import time
from types import SimpleNamespace

from hypothesis import example, given
from hypothesis import strategies as st

from channels.http.signatures import VERIFIERS, check
from tests.fuzz.profiles import examples

NOW = time.time()
HEADERS = [
    "x-hub-signature-256",
    "stripe-signature",
    "x-shopify-hmac-sha256",
    "x-slack-request-timestamp",
    "x-slack-signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-signature",
    "x-sig",
]
# Header values arrive decoded as latin-1: any of its characters, including the digits ¹²³.
latin1 = st.text(st.characters(max_codepoint=0xFF), max_size=40)
stamps = (
    st.sampled_from(
        [
            str(int(NOW)),
            "-" + str(int(NOW)),
            "--5",
            "-",
            "\u00b2",
            "1\u00b3",
            " 5 ",
            "9" * 5000,
            "0",
            "+5",
            "5_000",
            "\u0665",
        ]
    )
    | latin1
)
values = (
    latin1
    | stamps.map(lambda t: f"t={t},v1=ab")
    | stamps.map(lambda t: f"v1,{t}")
    | st.sampled_from(["sha256=", "v0=", "v1,", "t=,v1=", ",,,", "=", "v1 v1,x v2,y"])
)


@examples(300)
@given(
    scheme=st.sampled_from(sorted(VERIFIERS)),
    headers=st.dictionaries(st.sampled_from(HEADERS), values, max_size=4),
    stamp=stamps,
    body=st.binary(max_size=40),
    secret=st.text(st.characters(max_codepoint=0xFF), min_size=16, max_size=40),
    encoding=st.sampled_from(["hex", "base64"]),
    prefix=st.sampled_from(["", "sha256=", "\u00e9"]),
)
@example(
    scheme="stripe",
    headers={"stripe-signature": "t=\u00b2,v1=ab"},
    stamp="",
    body=b"",
    secret="s" * 32,
    encoding="hex",
    prefix="",
)
@example(
    scheme="slack",
    headers={"x-slack-signature": "v0=ab"},
    stamp="--5",
    body=b"",
    secret="s" * 32,
    encoding="hex",
    prefix="",
)
@example(
    scheme="standard-webhooks",
    headers={"webhook-id": "m", "webhook-signature": "v1,x"},
    stamp="9" * 5000,
    body=b"",
    secret="whsec_\u00e9" * 4,
    encoding="hex",
    prefix="",
)
def test_presets(
    scheme: str, headers: dict[str, str], stamp: str, body: bytes, secret: str, encoding: str, prefix: str
) -> None:
    cfg = SimpleNamespace(
        signature=scheme,
        signing_secret=secret,
        signature_header="x-sig",
        signature_prefix=prefix,
        signature_encoding=encoding,
    )
    headers = dict(headers)
    headers.setdefault(
        {"slack": "x-slack-request-timestamp", "standard-webhooks": "webhook-timestamp"}.get(
            scheme, "x-unused"
        ),
        stamp,
    )
    outcome = check(cfg, headers, body, now=NOW)
    assert outcome is None or (isinstance(outcome, str) and secret not in outcome)
