"""FlowX-style API-key webhooks: `POST /webhooks/incoming/{webhook_id}?apiKey=KEY`."""

from __future__ import annotations

import hmac
import time

from channels.http import access, pipeline
from channels.http.asgi import Request, Response, Send, error_response
from channels.http.parsing import is_json_type
from channels.http.pipeline import HttpContext, Refused
from channels.http.routes import HttpSource
from engine.entity import Entity


def _given_key(request: Request) -> str:
    query = request.query
    value = query.get("apiKey") or query.get("apikey") or request.headers.get("x-api-key", "")
    return value if isinstance(value, str) else ""


def key_matches(given: str, expected: str | None) -> bool:
    # Always compare (even against a dummy) so timing does not reveal whether a key exists.
    return hmac.compare_digest(given.encode(), (expected or "\x00" * 43).encode()) and expected is not None


async def handle(channel: HttpContext, request: Request, send: Send, source: HttpSource) -> Response:
    if request.method != "POST":
        return error_response(405, f"method {request.method} not allowed; use POST").header("allow", "POST")
    try:
        return await _accept(channel, request, source)
    except Refused as refused:
        return refused.response


async def _accept(channel: HttpContext, request: Request, source: HttpSource) -> Response:
    await access.check_access(request, source)
    given = _given_key(request)
    if not given:
        raise Refused(error_response(401, "missing API key: add ?apiKey=KEY or an X-Api-Key header"))
    old = source.grace(time.time())
    current = key_matches(given, source.api_key)
    previous = key_matches(given, old.api_key if old else None)  # compared either way: same timing
    if not (current or previous):
        raise Refused(error_response(401, "invalid API key"))
    body = await pipeline.read_body(request, source, channel.cfg.http.max_body)
    ctype = request.content_type
    if ctype and not is_json_type(ctype):
        raise Refused(error_response(400, f"content type {ctype!r} is not JSON; send application/json"))
    if not body.strip():
        raise Refused(error_response(400, "empty body: send a JSON document"))
    pipeline.check_signature(request, source)
    pipeline.check_rate(channel.limits, source)
    data = await pipeline.parse_json_request(request)
    entity = Entity("webhooks", source.source, data, raw=request.body)
    key = pipeline.dedup_key(request, source, data, channel.intake)
    return await pipeline.submit_and_answer(channel.intake, entity, key, pipeline.accepted(entity.id))
