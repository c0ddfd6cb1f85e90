"""Who is calling the admin API: bearer token, dashboard session cookie, or nobody.

The token is compared in constant time: both sides are hashed to fixed-length SHA-256 digests
and compared with `hmac.compare_digest`, so neither the length of the given token nor how many
leading characters are right changes the work done (no early return on a prefix or a length).

The dashboard logs in once with the token and gets a session cookie: `<expires>.<mac>` where
the MAC is keyed by a key derived from the token (changing the token in the config logs every
session out). Requests authenticated by the cookie must also carry `X-CSRF-Token` (derived from
the session) on every mutating call; the cookie is HttpOnly and SameSite=Strict.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

SESSION_COOKIE = "router_session"
SESSION_TTL = 12 * 3600
CSRF_HEADER = "X-CSRF-Token"


def digest(value: str) -> bytes:
    """A fixed-length (32 bytes) digest of a secret, so comparisons never depend on its length."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def token_matches(given: str, expected: str) -> bool:
    """Constant time: always hash both, always compare 32 bytes with `hmac.compare_digest`."""
    same = hmac.compare_digest(digest(given), digest(expected))
    return same and bool(expected)


def fingerprint(token: str) -> str:
    """A short, non-reversible name for a token, fit for logs (`who=token:1a2b3c4d5e6f`)."""
    return hashlib.sha256(b"router-admin-fingerprint\0" + token.encode()).hexdigest()[:12]


def _key(token: str) -> bytes:
    return hashlib.sha256(b"router-admin-session\0" + token.encode()).digest()


def _mac(token: str, message: str) -> str:
    return hmac.new(_key(token), message.encode(), hashlib.sha256).hexdigest()


def make_session(token: str, now: float | None = None, ttl: int = SESSION_TTL) -> str:
    expires = int((time.time() if now is None else now) + ttl)
    return f"{expires}.{_mac(token, f'session:{expires}')}"


def session_valid(cookie: str, token: str, now: float | None = None) -> bool:
    expires, _, mac = cookie.partition(".")
    if not expires.isdigit() or len(mac) != 64:
        return False
    good = hmac.compare_digest(mac.encode(), _mac(token, f"session:{expires}").encode())
    return good and int(expires) > (time.time() if now is None else now)


def csrf_token(token: str, session: str) -> str:
    return _mac(token, f"csrf:{session}")


def csrf_valid(given: str, token: str, session: str) -> bool:
    return hmac.compare_digest(digest(given), digest(csrf_token(token, session)))


@dataclass(frozen=True)
class Principal:
    """An authenticated caller, as it appears in the audit log."""

    who: str  # token:<fingerprint> | session:<fingerprint> | open (no token configured)
    via: str  # bearer | cookie | open
    remote: str
    session: str | None = None

    def __str__(self) -> str:
        return f"{self.who}@{self.remote}"
