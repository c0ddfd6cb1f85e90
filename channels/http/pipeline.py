"""Steps every HTTP source shares: body limit, signature, rate limit, parsing, idempotency,
and the journal (`submit_and_answer`, `submit_held`): what a handler in this package needs of the
channel is `HttpContext`, so the handlers never import the app that routes to them."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

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
from channels.http.replies import from_ack, to_ack
from channels.http.routes import HttpSource
from channels.intake import CallerResponder, Intake, JournalUnavailable, Overloaded, Submission
from config import Config
from engine.entity import Entity


class HttpContext(Protocol):
    """What a source kind's handler uses of the HTTP channel (`channels.http.app.HttpChannel`)."""

    @property
    def intake(self) -> Intake: ...

    @property
    def cfg(self) -> Config: ...

    @property
    def files_dir(self) -> Path:
        """Where uploaded files are kept."""
        ...

    @property
    def limits(self) -> RateLimits | SharedRateLimits: ...

    async def remember_ack(self, signal_id: str, response: Response) -> None:
        """A held caller's answer, kept for a repeat of its idempotency key."""
        ...


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


def replayed(sub: Submission) -> Response:
    """The answer to a repeat of an idempotency key: the original acknowledgement, no run."""
    if sub.ack:
        return from_ack(sub.ack)
    return json_response(200, {"status": "duplicate", "signal_id": sub.signal_id}).header(
        "idempotent-replayed", "true"
    )


async def _submit(
    intake: Intake,
    entity: Entity,
    key: str | None,
    *,
    ack: Response | None = None,
    responder: CallerResponder | None = None,
) -> Submission:
    try:
        return await intake.submit(
            entity, dedup_key=key, responder=responder, ack=to_ack(ack) if ack is not None else None
        )
    except (Overloaded, JournalUnavailable) as exc:
        raise Refused(unavailable(exc)) from exc


async def submit_and_answer(
    intake: Intake,
    entity: Entity,
    key: str | None,
    answer: Response,
    *,
    replay: Callable[[Submission], Response] = replayed,
) -> Response:
    """For an answer known before the journal: journal `entity` with `answer` as its
    acknowledgement and return `answer`, or the original answer to a repeat of `key`. Raises
    `Refused` (503) when nothing was accepted."""
    sub = await _submit(intake, entity, key, ack=answer)
    return replay(sub) if sub.duplicate else answer


async def submit_held(
    intake: Intake,
    entity: Entity,
    key: str | None,
    responder: CallerResponder,
    *,
    replay: Callable[[Submission], Response] = replayed,
) -> Submission | Response:
    """For a caller held for what the runs answer through `responder`: the Submission (the
    caller waits), or the original answer to a repeat of `key` (nothing runs). Raises `Refused`
    (503) when nothing was accepted."""
    sub = await _submit(intake, entity, key, responder=responder)
    return replay(sub) if sub.duplicate else sub
