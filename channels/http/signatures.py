"""Provider signature presets, verified over the raw request bytes in constant time.

Each verifier returns None when the signature holds, or a short reason (never the secret).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from typing import Any

STRIPE_TOLERANCE = 300
SLACK_TOLERANCE = 300
STANDARD_TOLERANCE = 300

Verifier = Callable[[Any, str, dict[str, str], bytes, float], "str | None"]


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()


# ASCII digits only: str.isdigit() also takes '²' (a latin-1 header byte) which int() refuses.
_TIMESTAMP = re.compile(r"\s*-?[0-9]{1,15}\s*")


def _timestamp_problem(raw: str | None, now: float, tolerance: int) -> str | None:
    if not raw or not _TIMESTAMP.fullmatch(raw):
        return "missing or malformed signature timestamp"
    if abs(now - int(raw)) > tolerance:
        return f"signature timestamp is outside the {tolerance} s tolerance (replayed or clock skew)"
    return None


def verify_github(cfg: Any, secret: str, headers: dict[str, str], body: bytes, now: float) -> str | None:
    given = headers.get("x-hub-signature-256", "")
    if not given.startswith("sha256="):
        return "missing X-Hub-Signature-256 header"
    expected = "sha256=" + _mac(secret.encode(), body).hex()
    return None if hmac.compare_digest(given.encode(), expected.encode()) else "signature mismatch"


def verify_stripe(cfg: Any, secret: str, headers: dict[str, str], body: bytes, now: float) -> str | None:
    raw = headers.get("stripe-signature", "")
    parts: dict[str, list[str]] = {}
    for item in raw.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    ts = parts.get("t", [""])[0]
    problem = _timestamp_problem(ts, now, STRIPE_TOLERANCE)
    if problem:
        return problem if raw else "missing Stripe-Signature header"
    expected = _mac(secret.encode(), f"{ts}.".encode() + body).hex().encode()
    ok = False
    for candidate in parts.get("v1", []):
        ok |= hmac.compare_digest(candidate.encode(), expected)
    return None if ok else "signature mismatch"


def verify_shopify(cfg: Any, secret: str, headers: dict[str, str], body: bytes, now: float) -> str | None:
    given = headers.get("x-shopify-hmac-sha256", "")
    if not given:
        return "missing X-Shopify-Hmac-Sha256 header"
    expected = base64.b64encode(_mac(secret.encode(), body))
    return None if hmac.compare_digest(given.strip().encode(), expected) else "signature mismatch"


def verify_slack(cfg: Any, secret: str, headers: dict[str, str], body: bytes, now: float) -> str | None:
    ts = headers.get("x-slack-request-timestamp")
    given = headers.get("x-slack-signature", "")
    if not given:
        return "missing X-Slack-Signature header"
    problem = _timestamp_problem(ts, now, SLACK_TOLERANCE)
    if problem:
        return problem
    expected = "v0=" + _mac(secret.encode(), f"v0:{ts}:".encode() + body).hex()
    return None if hmac.compare_digest(given.encode(), expected.encode()) else "signature mismatch"


def _standard_key(secret: str) -> bytes:
    """Standard Webhooks secrets are base64, optionally prefixed `whsec_` (the reference libraries
    decode both forms); a secret that is not base64 at all is used as its bytes."""
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        return secret.encode()


# Svix, whose scheme became Standard Webhooks, still sends its own header names (Clerk, Resend
# and others use Svix): the same three headers as `svix-id`, `svix-timestamp`, `svix-signature`.
# As in Svix's own libraries, a family is taken whole, `webhook-*` first.
STANDARD_FAMILIES = ("webhook", "svix")


def verify_standard(cfg: Any, secret: str, headers: dict[str, str], body: bytes, now: float) -> str | None:
    family = next(
        (f for f in STANDARD_FAMILIES if headers.get(f"{f}-id") and headers.get(f"{f}-signature")), None
    )
    if family is None:
        return "missing webhook-id or webhook-signature header (or svix-id, svix-signature)"
    msg_id = headers[f"{family}-id"]
    ts = headers.get(f"{family}-timestamp")
    given = headers[f"{family}-signature"]
    problem = _timestamp_problem(ts, now, STANDARD_TOLERANCE)
    if problem:
        return problem
    expected = base64.b64encode(_mac(_standard_key(secret), f"{msg_id}.{ts}.".encode() + body))
    ok = False
    for item in given.split():
        version, _, sig = item.partition(",")
        if version == "v1":
            ok |= hmac.compare_digest(sig.encode(), expected)
    return None if ok else "signature mismatch"


def verify_generic(cfg: Any, secret: str, headers: dict[str, str], body: bytes, now: float) -> str | None:
    header = (cfg.signature_header or "x-signature").lower()
    given = headers.get(header, "")
    if not given:
        return f"missing {header} header"
    prefix = cfg.signature_prefix or ""
    if prefix and not given.startswith(prefix):
        return f"signature must start with {prefix!r}"
    given = given[len(prefix) :].strip()
    digest = _mac(secret.encode(), body)
    if (cfg.signature_encoding or "hex") == "base64":
        expected = base64.b64encode(digest)
    else:
        expected = digest.hex().encode()
        given = given.lower()
    return None if hmac.compare_digest(given.encode(), expected) else "signature mismatch"


VERIFIERS: dict[str, Verifier] = {
    "github": verify_github,
    "stripe": verify_stripe,
    "shopify": verify_shopify,
    "slack": verify_slack,
    "standard-webhooks": verify_standard,
    "hmac-sha256": verify_generic,
}


def secrets_of(cfg: Any) -> list[str]:
    """`signing_secret` as a list: one secret, or several during a provider's rotation."""
    value = getattr(cfg, "signing_secret", None)
    return [value] if isinstance(value, str) and value else [v for v in value or [] if v]


def check(cfg: Any, headers: dict[str, str], body: bytes, now: float | None = None) -> str | None:
    """None if the source needs no signature or the signature holds with any of its secrets
    (several during a provider's rotation); else the reason the first secret gave."""
    scheme = getattr(cfg, "signature", None)
    if not scheme:
        return None
    verify, at = VERIFIERS[scheme], time.time() if now is None else now
    first: str | None = "no signing_secret"
    for index, secret in enumerate(secrets_of(cfg)):
        problem = verify(cfg, secret, headers, body, at)
        if problem is None:
            return None
        first = problem if index == 0 else first
    return first
