"""SMTP AUTH PLAIN / LOGIN against `[smtp] users` (pbkdf2 hashes, config/passwords.py).

aiosmtpd calls the authenticator synchronously on its event loop. A pbkdf2 check with 600k
iterations takes a few hundred milliseconds, so a successful check is remembered (keyed by an
HMAC of user and password under a per-process random key, never the password itself) and later
logins by the same client cost microseconds. Failures are never cached.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any

import structlog
from aiosmtpd.smtp import AuthResult, LoginPassword

log = structlog.get_logger("router.smtp")

MECHANISMS = ("LOGIN", "PLAIN")
_CACHE_LIMIT = 1024


class Authenticator:
    """An aiosmtpd `authenticator` callable; `users` maps a login name to its password hash."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self.users = dict(users)
        self._key = secrets.token_bytes(32)
        self._verified: set[bytes] = set()

    def _fingerprint(self, login: str, password: bytes, encoded: str) -> bytes:
        return hmac.new(
            self._key, login.encode() + b"\0" + password + b"\0" + encoded.encode(), hashlib.sha256
        ).digest()

    def check(self, login: str, password: bytes) -> bool:
        # Imported here: the `config` package is heavy and the SMTP worker only needs this when
        # users are configured.
        from config.passwords import verify_password

        encoded = self.users.get(login)
        if encoded is None:
            # Same work for an unknown user so timing does not reveal which names exist.
            verify_password(password.decode("utf-8", "replace"), _DUMMY_HASH)
            return False
        fingerprint = self._fingerprint(login, password, encoded)
        if fingerprint in self._verified:
            return True
        if not verify_password(password.decode("utf-8", "replace"), encoded):
            return False
        if len(self._verified) >= _CACHE_LIMIT:
            self._verified.clear()
        self._verified.add(fingerprint)
        return True

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if mechanism not in MECHANISMS or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        ok = self.check(login, auth_data.password)
        log.info("smtp auth", user=login, mechanism=mechanism, ok=ok, peer=_peer(session))
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)


def _peer(session: Any) -> str:
    peer = getattr(session, "peer", None)
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "")


# A well-formed hash no password matches, checked for unknown users so they cost as much as a
# real check (same iteration count as `hash_password`'s default).
_DUMMY_HASH = "pbkdf2_sha256$600000$dummy-salt$" + "A" * 43 + "="
