"""Steps every HTTP source shares: body limit, signature, rate limit, parsing, idempotency."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from channels.http import signatures
from channels.http.asgi import BodyTooLarge, Request, Response, error_response, json_response
from channels.http.encoding import SUPPORTED, BadEncoding, UnsupportedEncoding, decoder_for
from channels.http.parsing import (
    BadBody,
    build_data,
    caller_fields,
    mergeable_query,
    parse_json,
    request_meta,
)
from channels.http.ratelimit import RateLimits, SharedRateLimits
from channels.http.routes import HttpSource
from channels.intake import Intake, JournalUnavailable, Overloaded


class Refused(Exception):
    """Stop handling and answer with `response`."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


async def read_body(request: Request, source: HttpSource, max_body: int) -> bytes:
    """The body, within the source's `max_body` or else `[http] max_body`."""
    limit = getattr(source.config, "max_body", None) or max_body
    try:
        decoder = decoder_for(request.headers.get("content-encoding"), limit)
        return await request.read_body(limit, decoder)
    except BodyTooLarge as exc:
        what = "decompressed request body" if exc.decoded else "request body"
        response = error_response(413, f"{what} exceeds the limit of {exc.limit} bytes", limit=exc.limit)
        response.close = True  # the rest of the body is never read
        raise Refused(response) from exc
    except UnsupportedEncoding as exc:
        raise Refused(error_response(415, str(exc)).header("accept-encoding", ", ".join(SUPPORTED))) from exc
    except BadEncoding as exc:
        raise Refused(error_response(400, str(exc))) from exc


def check_signature(request: Request, source: HttpSource) -> None:
    problem = signatures.check(source.config, request.headers, request.body)
    if problem:
        raise Refused(error_response(401, "invalid signature", reason=problem))


def check_rate(limits: RateLimits | SharedRateLimits, source: HttpSource) -> None:
    wait = limits.check(source)
    if wait > 0:
        response = error_response(429, "rate limit exceeded", source=source.source)
        raise Refused(response.header("retry-after", str(max(1, math.ceil(wait)))))


# Bodies past this size are parsed in a worker thread: a 1 MB form of 170,000 fields takes a
# few hundred ms of pure Python, which on the event loop would stall every other request.
# (The GIL is still shared, but the loop gets it back every switch interval, 5 ms.)
OFF_LOOP_BYTES = 64 * 1024
_parse_threads = trio.CapacityLimiter(2)  # its own: never take the journal writer's thread tokens


async def _parsed(request: Request, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    if len(request.body) <= OFF_LOOP_BYTES:
        return fn()
    return await trio.to_thread.run_sync(fn, limiter=_parse_threads)


async def parse(request: Request, files_dir: Path | None) -> dict[str, Any]:
    """The body as `__data`; uploads are written under `files_dir` (None: not kept)."""
    return await _parsed(request, lambda: parse_now(request, files_dir))


def parse_now(request: Request, files_dir: Path | None) -> dict[str, Any]:
    try:
        return build_data(request, files_dir)
    except BadBody as exc:
        raise Refused(error_response(400, str(exc))) from exc


async def parse_json_request(request: Request) -> dict[str, Any]:
    return await _parsed(request, lambda: parse_json_now(request))


def parse_json_now(request: Request) -> dict[str, Any]:
    """Webhooks take JSON whatever the content type says (some senders omit it)."""
    data = request_meta(request)
    try:
        parsed = parse_json(request.body)
    except BadBody as exc:
        raise Refused(error_response(400, str(exc))) from exc
    data.update(mergeable_query(data))
    if isinstance(parsed, dict):
        data.update(caller_fields(parsed))
    else:
        data["__json"] = parsed
    return data


def dedup_key(request: Request, source: HttpSource, data: dict[str, Any], intake: Intake) -> str | None:
    key = request.headers.get("idempotency-key", "").strip()
    if key:
        return key[:256]
    template = getattr(source.config, "dedup_key", None)
    if template:
        rendered = intake.render(template, data).strip()
        return rendered[:256] or None
    return None


def unavailable(exc: Exception) -> Response:
    if isinstance(exc, Overloaded):
        return error_response(503, "overloaded, retry later").header("retry-after", str(exc.retry_after))
    if isinstance(exc, JournalUnavailable):
        return error_response(503, "journal unavailable, nothing was accepted").header("retry-after", "5")
    raise exc


def accepted(signal_id: str, **extra: Any) -> Response:
    return json_response(200, {"status": "accepted", "signal_id": signal_id, **extra})
