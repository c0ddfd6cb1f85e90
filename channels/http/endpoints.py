"""Flexie-style dynamic endpoints: `/listener/{first_hash}/{second_hash}`."""

from __future__ import annotations

import json
import time

import structlog
import trio

from channels.http import access, cors, jwt_auth, pipeline
from channels.http.asgi import Request, Response, Send, error_response, json_response
from channels.http.pipeline import HttpContext, Refused
from channels.http.replies import body_response, reply_response
from channels.http.responder import HttpResponder
from channels.http.routes import HttpSource
from engine.entity import Entity

log = structlog.get_logger("router.http")

METHODS = ("GET", "HEAD", "POST", "PUT", "OPTIONS")  # HEAD: as GET, without the body
SYNC_HOLD_LIMIT = 600.0  # a sync run still queued after this long gets the 202 answer


def _cors_domains(channel: HttpContext, source: HttpSource) -> list[str]:
    raw = channel.intake.render(source.config.cors_domains or "", {})
    return [d.strip() for d in raw.split(",") if d.strip()]


def _jwt_pairs(channel: HttpContext, source: HttpSource) -> list[tuple[str, str]]:
    """(iss, secret) pairs accepted now: the config's values win over the generated ones; during
    a rotation's grace the previous pair too (pinned parts stay as they are)."""
    cfg = source.config
    issuer = channel.intake.render(cfg.endpoint_key, {}) if cfg.endpoint_key else source.jwt_key or ""
    secret = (
        channel.intake.render(cfg.endpoint_secret, {}) if cfg.endpoint_secret else source.jwt_secret or ""
    )
    pairs = [(issuer, secret)]
    old = source.grace(time.time())
    if old is not None and (old.jwt_key or old.jwt_secret):
        pairs.append((old.jwt_key or issuer, old.jwt_secret or secret))
    return [(i, s) for i, s in pairs if s]  # an empty HMAC key would accept tokens anyone can sign


def _authenticate(channel: HttpContext, request: Request, source: HttpSource) -> list[object]:
    token = jwt_auth.token_from_headers(request.headers)
    first: jwt_auth.JwtFailure | None = None
    pairs = _jwt_pairs(channel, source)
    if not pairs:
        raise Refused(error_response(500, "endpoint_secret renders empty: no JWT can be checked"))
    for issuer, secret in pairs:
        outcome = jwt_auth.verify(token, issuer=issuer, secret=secret)
        if not isinstance(outcome, jwt_auth.JwtFailure):
            return jwt_auth.jwt_data(outcome)
        first = first or outcome  # the current pair's reason: the previous one is on its way out
    assert first is not None
    raise Refused(error_response(first.status, first.error, reason=first.reason))


async def handle(channel: HttpContext, request: Request, send: Send, source: HttpSource) -> Response | None:
    cfg = source.config
    if request.method not in METHODS:
        return error_response(405, f"method {request.method} not allowed").header("allow", ", ".join(METHODS))
    origin = request.headers.get("origin")
    domains = _cors_domains(channel, source) if cfg.allow_cors else []
    if request.method == "OPTIONS" and "access-control-request-method" in request.headers:
        # Preflight is answered before authentication: a browser never sends credentials here.
        if not cfg.allow_cors:
            return Response(204, b"", [("allow", ", ".join(METHODS))])
        return cors.preflight(origin, domains, request.headers.get("access-control-request-headers"))
    try:
        response = await _accept(channel, request, send, source)
    except Refused as refused:
        response = refused.response
    if response is not None and cfg.allow_cors:
        cors.decorate(response, origin, domains)
    return response


async def _accept(channel: HttpContext, request: Request, send: Send, source: HttpSource) -> Response | None:
    cfg = source.config
    await access.check_access(request, source)
    await pipeline.read_body(request, source, channel.cfg.http.max_body)
    pipeline.check_signature(request, source)
    jwt_data = _authenticate(channel, request, source) if cfg.add_authentication else None
    pipeline.check_rate(channel.limits, source)
    data = await pipeline.parse(request, channel.files_dir)
    if jwt_data is not None:
        data["__headers"]["__jwt_data"] = jwt_data
    entity = Entity("endpoints", source.source, data, raw=request.body)
    key = pipeline.dedup_key(request, source, data, channel.intake)
    rtype = cfg.return_type

    if rtype in ("data", "html", "redirect"):
        template = {"data": cfg.return_data, "html": cfg.return_html, "redirect": cfg.return_redirect}[rtype]
        response = body_response(rtype, channel.intake.render(template or "", data, html=rtype == "html"))
        return await pipeline.submit_and_answer(channel.intake, entity, key, response)

    responder = HttpResponder(entity.id, stream=rtype == "sse")
    sub = await pipeline.submit_held(channel.intake, entity, key, responder)
    if isinstance(sub, Response):
        return sub  # a repeat: its original answer
    if rtype == "sse":
        await stream_events(channel, request, send, responder, entity.id)
        return None
    # Sync runs hold the caller until the first respond (or the runs' end, bounded by their
    # run_timeout); async ones get a 202 with the signal id after response_timeout.
    hold = max(cfg.response_timeout, SYNC_HOLD_LIMIT) if sub.sync else cfg.response_timeout
    with trio.move_on_after(hold):
        await responder.wait_reply()
    reply = responder.reply
    if reply is not None:
        response = reply_response(reply)
    elif responder.finished.is_set():
        response = Response(204)  # every run ended without a respond step
    else:
        response = json_response(202, {"status": "accepted", "signal_id": entity.id})
    await channel.remember_ack(entity.id, response)
    return response


def _frame(event: str, data: str) -> bytes:
    lines = "".join(f"data: {line}\n" for line in (data.split("\n") if data else [""]))
    return f"event: {event}\n{lines}\n".encode()


async def stream_events(
    channel: HttpContext, request: Request, send: Send, responder: HttpResponder, signal_id: str
) -> None:
    """True streaming: each `emit` is flushed as it happens; the run survives a disconnect."""
    assert responder.frames is not None
    headers = [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),
        (b"x-request-id", request.request_id.encode("latin-1")),
    ]
    cfg_source = request.extra.get("source")
    if cfg_source is not None and cfg_source.config.allow_cors:
        domains = _cors_domains(channel, cfg_source)
        allowed = cors.allowed_origin(request.headers.get("origin"), domains)
        headers.append((b"vary", b"Origin"))
        if allowed:
            headers.append((b"access-control-allow-origin", allowed.encode("latin-1")))
    try:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b": stream open\n\n", "more_body": True})
        while True:
            with trio.move_on_after(channel.cfg.http.sse_keepalive) as idle:
                try:
                    event, data = await responder.frames.receive()
                except trio.EndOfChannel:
                    break
                await send({"type": "http.response.body", "body": _frame(event, data), "more_body": True})
            if idle.cancelled_caught:
                await send({"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})
        done = json.dumps({"signal_id": signal_id})
        await send({"type": "http.response.body", "body": _frame("done", done), "more_body": False})
    except Exception:  # noqa: BLE001 - hypercorn raises various errors once the peer is gone
        log.info("sse client went away; the run continues", signal_id=signal_id)
    finally:
        responder.frames.close()
