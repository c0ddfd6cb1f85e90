"""JWT checks for dynamic endpoints (Flexie's protocol, minus its gaps).

HS256/384/512 only; `iss` must equal the endpoint key; exp/nbf/iat with 60 s leeway. Missing
token → 403; anything invalid → 401 with a reason that never contains the secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ALGORITHMS = ["HS256", "HS384", "HS512"]
LEEWAY = 60


@dataclass
class JwtFailure:
    status: int
    error: str
    reason: str


def token_from_headers(headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    token = headers.get("token", "").strip()
    return token or None


def verify(token: str | None, *, issuer: str, secret: str) -> dict[str, Any] | JwtFailure:
    if not token:
        return JwtFailure(
            403, "forbidden", "missing token: send Authorization: Bearer <jwt> or a token header"
        )
    import jwt  # PyJWT pulls in cryptography (~50 ms, ~5 MB at start-up): only for endpoints with a secret

    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:  # DecodeError, and PyJWT's checks of kid/crit/b64 in the header
        return JwtFailure(401, "invalid_token", "malformed token")
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        return JwtFailure(
            401, "invalid_token", f"algorithm {alg!r} is not allowed; use HS256, HS384 or HS512"
        )
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=ALGORITHMS,
            issuer=issuer,
            leeway=LEEWAY,
            options={"require": ["iss"], "verify_iat": True},
        )
    except jwt.ExpiredSignatureError:
        return JwtFailure(401, "token_expired", "token has expired")
    except jwt.ImmatureSignatureError:
        return JwtFailure(401, "token_not_yet_valid", "token is not valid yet (nbf/iat in the future)")
    except jwt.MissingRequiredClaimError as exc:
        return JwtFailure(401, "invalid_token", f"token lacks the {exc.claim!r} claim")
    except jwt.InvalidIssuerError:
        return JwtFailure(401, "invalid_issuer", "token issuer (iss) does not match this endpoint's key")
    except jwt.InvalidSignatureError:
        return JwtFailure(401, "invalid_signature", "token signature does not verify")
    except jwt.InvalidTokenError as exc:
        return JwtFailure(401, "invalid_token", f"invalid token: {type(exc).__name__}")
    return claims


def jwt_data(claims: dict[str, Any]) -> list[Any]:
    """Flexie exposes the `data` claim as `__headers.__jwt_data[0]`."""
    return [claims["data"]] if "data" in claims else []
