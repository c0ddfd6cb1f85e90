"""CORS for dynamic endpoints: preflight is answered before authentication."""

from __future__ import annotations

from channels.http.asgi import Response

ALLOWED_METHODS = "GET, HEAD, POST, PUT, OPTIONS"
BASE_ALLOWED_HEADERS = ["authorization", "content-type", "token", "idempotency-key", "x-request-id"]


def allowed_origin(origin: str | None, domains: list[str]) -> str | None:
    """The value for Access-Control-Allow-Origin, or None if this origin may not call."""
    if not origin:
        return None
    if "*" in domains:
        return origin  # reflect, so credentials and Vary work for any origin
    normalised = origin.rstrip("/").lower()
    return origin if normalised in {d.rstrip("/").lower() for d in domains} else None


def preflight(origin: str | None, domains: list[str], requested_headers: str | None) -> Response:
    allowed = allowed_origin(origin, domains)
    if allowed is None:
        resp = Response(403, b'{"error":"origin not allowed"}', [("content-type", "application/json")])
        return resp.header("vary", "Origin")
    headers = list(BASE_ALLOWED_HEADERS)
    for name in (requested_headers or "").split(","):
        name = name.strip().lower()
        if name and name not in headers:
            headers.append(name)
    return Response(
        204,
        b"",
        [
            ("access-control-allow-origin", allowed),
            ("access-control-allow-methods", ALLOWED_METHODS),
            ("access-control-allow-headers", ", ".join(headers)),
            ("access-control-allow-credentials", "true"),
            ("access-control-max-age", "600"),
            ("vary", "Origin"),
        ],
    )


def decorate(response: Response, origin: str | None, domains: list[str]) -> Response:
    allowed = allowed_origin(origin, domains)
    response.header("vary", "Origin")
    if allowed is not None:
        response.header("access-control-allow-origin", allowed)
        response.header("access-control-allow-credentials", "true")
        response.header("access-control-expose-headers", "x-request-id")
    return response
