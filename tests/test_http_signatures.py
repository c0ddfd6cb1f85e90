"""Signature presets against the real daemon, each request signed the way its provider documents.

The signatures are computed here from the providers' documentation, independently of
channels/http/signatures.py:

- GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`.
- Stripe: `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, 300 s tolerance.
- Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256(secret, body)>`.
- Slack: `X-Slack-Request-Timestamp: <unix>`, `X-Slack-Signature: v0=<hex HMAC-SHA256(secret,
  "v0:<ts>:<body>")>`, 5 minutes.
- Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64
  HMAC-SHA256(base64decode(secret without "whsec_"), "<id>.<ts>.<body>")>` (space-separated list).
- Svix (Clerk, Resend): the Standard Webhooks scheme under `svix-id`, `svix-timestamp`,
  `svix-signature` (docs.svix.com "Verifying payloads manually").
- Generic `hmac-sha256`: a configured header and prefix, hex or base64.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable

import httpx
import pytest

SECRET = "sig-secret-" + "k" * 32
RAW_KEY = secrets.token_bytes(24)
WHSEC = "whsec_" + base64.b64encode(RAW_KEY).decode()
BARE_STD = base64.b64encode(b"bare-standard-key-0123456789abcd").decode()  # no whsec_ prefix

PRESETS = {
    "github": ('signature = "github"', SECRET),
    "stripe": ('signature = "stripe"', "whsec_stripe_" + "x" * 24),
    "shopify": ('signature = "shopify"', SECRET),
    "slack": ('signature = "slack"', SECRET),
    "standard": ('signature = "standard-webhooks"', WHSEC),
    "standard_bare": ('signature = "standard-webhooks"', BARE_STD),
    "svix": ('signature = "standard-webhooks"', WHSEC),
    "hexsig": (
        'signature = "hmac-sha256"\nsignature_header = "X-Body-Signature"\nsignature_prefix = "sha256="',
        SECRET,
    ),
    "b64sig": (
        'signature = "hmac-sha256"\nsignature_header = "X-Sig"\nsignature_prefix = "v1="\n'
        'signature_encoding = "base64"',
        SECRET,
    ),
}


def _another(preset: str, tag: bytes) -> str:
    """A second secret in the preset's own format (Standard Webhooks secrets are base64)."""
    if preset.startswith("standard") or preset == "svix":
        return "whsec_" + base64.b64encode(tag * 24).decode()
    return f"{tag.decode()}-" + PRESETS[preset][1]


def _config() -> str:
    parts = []
    for name, (lines, secret) in PRESETS.items():
        parts.append(f'[webhooks.{name}]\n{lines}\nsigning_secret = "{secret}"\n')
        parts.append(f'[endpoints.{name}]\nreturn_data = "ok"\n{lines}\nsigning_secret = "{secret}"\n')
        # During a provider's rotation: the new and the old secret (an unset optional one is dropped).
        both = f'["{_another(name, b"n")}", "{secret}", "${{UNSET_OLD_SECRET:-}}"]'
        parts.append(f"[webhooks.{name}_list]\n{lines}\nsigning_secret = {both}\n")
    return "\n".join(parts)


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def sign_github(body: bytes, secret: str, now: int) -> dict[str, str]:
    return {"X-Hub-Signature-256": "sha256=" + _hmac(secret.encode(), body).hex(), "X-GitHub-Event": "push"}


def sign_stripe(body: bytes, secret: str, now: int) -> dict[str, str]:
    sig = _hmac(secret.encode(), f"{now}.".encode() + body).hex()
    # Stripe may send several v1 signatures (secret rolling) and a v0 test one.
    return {"Stripe-Signature": f"t={now},v1={'0' * 64},v1={sig},v0={'1' * 64}"}


def sign_shopify(body: bytes, secret: str, now: int) -> dict[str, str]:
    return {
        "X-Shopify-Hmac-Sha256": base64.b64encode(_hmac(secret.encode(), body)).decode(),
        "X-Shopify-Topic": "orders/create",
    }


def sign_slack(body: bytes, secret: str, now: int) -> dict[str, str]:
    base = f"v0:{now}:".encode() + body
    return {
        "X-Slack-Request-Timestamp": str(now),
        "X-Slack-Signature": "v0=" + _hmac(secret.encode(), base).hex(),
    }


def sign_standard(body: bytes, secret: str, now: int) -> dict[str, str]:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
    sig = base64.b64encode(_hmac(key, f"{msg_id}.{now}.".encode() + body)).decode()
    # Several signatures, space-separated; one is from an old key.
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(now),
        "webhook-signature": f"v1,{base64.b64encode(b'old' * 11).decode()} v1,{sig}",
    }


def sign_svix(body: bytes, secret: str, now: int) -> dict[str, str]:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id = "msg_p5jXN8AQM9LWM0D4loKWxJek"
    sig = base64.b64encode(_hmac(key, f"{msg_id}.{now}.".encode() + body)).decode()
    return {"svix-id": msg_id, "svix-timestamp": str(now), "svix-signature": f"v1,{sig}"}


def sign_hex(body: bytes, secret: str, now: int) -> dict[str, str]:
    return {"X-Body-Signature": "sha256=" + _hmac(secret.encode(), body).hex()}


def sign_b64(body: bytes, secret: str, now: int) -> dict[str, str]:
    return {"X-Sig": "v1=" + base64.b64encode(_hmac(secret.encode(), body)).decode()}


SIGNERS: dict[str, Callable[[bytes, str, int], dict[str, str]]] = {
    "github": sign_github,
    "stripe": sign_stripe,
    "shopify": sign_shopify,
    "slack": sign_slack,
    "standard": sign_standard,
    "standard_bare": sign_standard,
    "svix": sign_svix,
    "hexsig": sign_hex,
    "b64sig": sign_b64,
}
TIMESTAMPED = ("stripe", "slack", "standard", "svix")


@pytest.fixture(scope="module")
def router(module_router_factory):  # type: ignore[no-untyped-def]
    return module_router_factory(_config())


@pytest.fixture(scope="module")
def urls(router):  # type: ignore[no-untyped-def]
    return {k: v["url"] for k, v in router.sources().items()}


def _post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url, content=body, headers={"content-type": "application/json", **headers})


@pytest.mark.parametrize("kind", ["webhooks", "endpoints"])
@pytest.mark.parametrize("preset", list(PRESETS))
def test_preset_signed_as_documented(urls, preset: str, kind: str) -> None:  # type: ignore[no-untyped-def]
    url = urls[f"{kind}.{preset}"]
    secret = PRESETS[preset][1]
    sign = SIGNERS[preset]
    body = json.dumps({"id": f"evt_{preset}", "amount": 1299, "note": "ünïcode ✓"}).encode()
    now = int(time.time())

    ok = _post(url, body, sign(body, secret, now))
    assert ok.status_code == 200, ok.text

    # The same signature over a different body (one byte changed) is refused.
    tampered = body.replace(b"1299", b"9999")
    bad = _post(url, tampered, sign(body, secret, now))
    assert bad.status_code == 401 and bad.json()["error"] == "invalid signature"
    assert secret not in bad.text

    # Signed with another secret.
    other = (
        "whsec_" + base64.b64encode(b"z" * 24).decode()
        if preset.startswith("standard") or preset == "svix"
        else "wrong-" + secret
    )
    assert _post(url, body, sign(body, other, now)).status_code == 401

    # No signature at all.
    missing = _post(url, body, {})
    assert missing.status_code == 401 and "reason" in missing.json()


@pytest.mark.parametrize("kind", ["webhooks", "endpoints"])
@pytest.mark.parametrize("preset", TIMESTAMPED)
def test_replayed_old_timestamp_is_refused(urls, preset: str, kind: str) -> None:  # type: ignore[no-untyped-def]
    url = urls[f"{kind}.{preset}"]
    secret = PRESETS[preset][1]
    body = b'{"id": "replayed"}'
    old = int(time.time()) - 600  # correctly signed ten minutes ago
    r = _post(url, body, SIGNERS[preset](body, secret, old))
    assert r.status_code == 401 and "tolerance" in r.json()["reason"]
    future = int(time.time()) + 600
    assert _post(url, body, SIGNERS[preset](body, secret, future)).status_code == 401
    # Inside the tolerance it passes.
    assert _post(url, body, SIGNERS[preset](body, secret, int(time.time()) - 120)).status_code == 200


def test_slack_form_body_on_endpoint(urls) -> None:  # type: ignore[no-untyped-def]
    """Slack slash commands are urlencoded: the signature covers the raw bytes as sent."""
    body = b"token=x&team_id=T1&command=%2Fweather&text=94070"
    now = int(time.time())
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        **sign_slack(body, PRESETS["slack"][1], now),
    }
    assert httpx.post(urls["endpoints.slack"], content=body, headers=headers).status_code == 200
    reordered = b"team_id=T1&token=x&command=%2Fweather&text=94070"  # same fields, other bytes
    assert httpx.post(urls["endpoints.slack"], content=reordered, headers=headers).status_code == 401


def test_github_uppercase_or_sha1_header_refused(urls) -> None:  # type: ignore[no-untyped-def]
    body = b'{"zen": "Keep it logically awesome."}'
    sha1 = hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
    r = _post(urls["webhooks.github"], body, {"X-Hub-Signature": f"sha1={sha1}"})
    assert r.status_code == 401 and "X-Hub-Signature-256" in r.json()["reason"]


def test_svix_headers_are_one_family(urls) -> None:  # type: ignore[no-untyped-def]
    """`svix-*` and `webhook-*` are not mixed: an id from one and a signature from the other fail."""
    body = b'{"type": "user.created"}'
    now = int(time.time())
    svix = sign_svix(body, WHSEC, now)
    mixed = {
        "webhook-id": svix["svix-id"],
        "webhook-timestamp": str(now),
        "svix-signature": svix["svix-signature"],
    }
    r = _post(urls["webhooks.svix"], body, mixed)
    assert r.status_code == 401 and "svix-id" in r.json()["reason"]
    # Both families present (a proxy adding the new names): webhook-* is read, and must hold.
    both = {**svix, **sign_standard(body, WHSEC, now)}
    assert _post(urls["webhooks.svix"], body, both).status_code == 200
    assert _post(urls["webhooks.svix"], body, {**both, "webhook-signature": "v1,AAAA"}).status_code == 401


@pytest.mark.parametrize("preset", list(PRESETS))
def test_signing_secret_list_accepts_any_of_its_secrets(urls, preset: str) -> None:  # type: ignore[no-untyped-def]
    url = urls[f"webhooks.{preset}_list"]
    body = json.dumps({"id": f"evt_{preset}_rot"}).encode()
    now = int(time.time())
    for secret in (_another(preset, b"n"), PRESETS[preset][1]):  # the new secret, and the old one
        r = _post(url, body, SIGNERS[preset](body, secret, now))
        assert r.status_code == 200, (secret, r.text)
    stranger = _post(url, body, SIGNERS[preset](body, _another(preset, b"z"), now))
    assert stranger.status_code == 401 and stranger.json()["reason"] == "signature mismatch"
    assert (
        _post(url, body.replace(b"rot", b"tor"), SIGNERS[preset](body, PRESETS[preset][1], now)).status_code
        == 401
    )
