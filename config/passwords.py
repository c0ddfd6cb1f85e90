"""``pbkdf2_sha256$ITERATIONS$SALT$HASH`` password hashes (Django-compatible, base64 hash).

Used for ``[smtp] users``. Generate one with ``router hash-password USER`` (it prompts, or reads
one line from stdin; never from the command line, which every local user can read).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

__all__ = ["DEFAULT_ITERATIONS", "MIN_ITERATIONS", "check_password_hash", "hash_password", "verify_password"]

ALGORITHM = "pbkdf2_sha256"
DEFAULT_ITERATIONS = 600_000
MIN_ITERATIONS = 1_000
_FORMAT_HELP = (
    f'expected "{ALGORITHM}$ITERATIONS$SALT$HASH" with ITERATIONS >= {MIN_ITERATIONS} and a base64 '
    "HASH; generate one with: router hash-password USER"
)


def _derive(password: str, salt: str, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)


def hash_password(password: str, *, iterations: int = DEFAULT_ITERATIONS, salt: str | None = None) -> str:
    """Hash ``password`` into the stored format."""
    salt = salt if salt is not None else secrets.token_hex(12)
    if "$" in salt or not salt:
        raise ValueError("salt must be non-empty and must not contain '$'")
    digest = base64.b64encode(_derive(password, salt, iterations)).decode()
    return f"{ALGORITHM}${iterations}${salt}${digest}"


def check_password_hash(encoded: str) -> str:
    """Validate the shape of a stored hash; returns it unchanged or raises ValueError."""
    if not isinstance(encoded, str):
        raise ValueError(f"password hash must be a string; {_FORMAT_HELP}")
    parts = encoded.split("$")
    if len(parts) != 4 or parts[0] != ALGORITHM:
        raise ValueError(f"not a password hash (plain-text passwords are not accepted); {_FORMAT_HELP}")
    _, iterations, salt, digest = parts
    if not iterations.isdigit() or int(iterations) < MIN_ITERATIONS:
        raise ValueError(f"invalid iteration count {iterations!r}; {_FORMAT_HELP}")
    if not salt:
        raise ValueError(f"empty salt; {_FORMAT_HELP}")
    try:
        raw = base64.b64decode(digest, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"hash part is not valid base64; {_FORMAT_HELP}") from None
    if len(raw) != 32:
        raise ValueError(f"hash part must decode to 32 bytes (SHA-256), got {len(raw)}; {_FORMAT_HELP}")
    return encoded


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time check of ``password`` against a stored hash; False for malformed hashes."""
    try:
        check_password_hash(encoded)
    except ValueError:
        return False
    _, iterations, salt, digest = encoded.split("$")
    expected = base64.b64decode(digest)
    return hmac.compare_digest(_derive(password, salt, int(iterations)), expected)
