"""Twilio messaging webhooks: `/sms/{name}` and `/whatsapp/{name}` (SPEC §5, §6).

1. `X-Twilio-Signature` is checked with the twilio package's own `RequestValidator` over the URL
   Twilio called: `public_url` + path (+ query); with `trust_proxy`, scheme and host come from
   `X-Forwarded-Proto` / `X-Forwarded-Host`. The algorithm follows
   `X-Twilio-Webhooks-Signature-Settings` (HMAC-SHA1 by default). Failure → 403, before any parsing.
2. The form becomes the entity: Twilio's fields as sent (`__data.Body`, …) plus
   `__data.incoming_sms` / `__data.incoming_whatsapp` with the SPEC fields.
3. MessageSid (or the source's `dedup_key` template) deduplicates Twilio's retries.
4. The answer is TwiML (`text/xml`): when a sync workflow listens, the runs are awaited (up to
   `REPLY_TIMEOUT`) and every `reply` step's message is sent back; otherwise an empty
   `<Response/>` right after the journal commit.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import structlog
import trio
from twilio.request_validator import RequestValidator, get_signature_algorithm
from twilio.twiml.messaging_response import MessagingResponse

from channels.http import access, pipeline
from channels.http.asgi import Request, Response, Send, error_response
from channels.http.pipeline import HttpContext, Refused
from channels.http.replies import from_ack
from channels.http.responder import HttpResponder
from channels.http.routes import HttpSource
from channels.intake import Submission
from config import RouterSettings
from engine.entity import Entity

log = structlog.get_logger("router.http")

REPLY_TIMEOUT = 10.0  # Twilio gives up on a webhook after 15 s
WHATSAPP_PREFIX = "whatsapp:"


class _Params(dict[str, list[str]]):
    """Form fields with repeats kept, in the shape RequestValidator accepts (`getall`)."""

    def getall(self, name: str) -> list[str]:
        return self[name]


def public_request_url(request: Request, router: RouterSettings) -> str:
    """The URL Twilio called, as it signed it (`[router] public_url`, or the proxy's headers)."""
    base = router.public_url.rstrip("/")
    if router.trust_proxy:
        proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip()
        host = request.headers.get("x-forwarded-host", "").split(",")[0].strip()
        if proto and host:
            base = f"{proto}://{host}"
    query = f"?{request.query_string}" if request.query_string else ""
    return f"{base}{request.path}{query}"


def signature_valid(request: Request, params: _Params, router: RouterSettings, token: str | None) -> bool:
    """`token`: `[twilio] auth_token`."""
    signature = request.headers.get("x-twilio-signature", "")
    if not token:
        log.error("twilio webhook refused: no [twilio] auth_token configured", path=request.path)
        return False
    if not signature:
        return False
    algorithm = get_signature_algorithm(request.headers.get("x-twilio-webhooks-signature-settings"))
    url = public_request_url(request, router)
    try:
        return bool(RequestValidator(token).validate(url, params, signature, algorithm))
    except ValueError:  # urlparse refuses the URL (bad port or IPv6 host from X-Forwarded-Host)
        return False


def _form(request: Request) -> _Params:
    params = _Params()
    raw = request.body.decode("utf-8", "replace") if request.method == "POST" else ""
    for key, value in parse_qsl(raw, keep_blank_values=True):
        params.setdefault(key, []).append(value)
    return params


def _strip(number: str) -> str:
    return number[len(WHATSAPP_PREFIX) :] if number.startswith(WHATSAPP_PREFIX) else number


def message_fields(fields: dict[str, Any], kind: str, received_at: str) -> dict[str, Any]:
    """Twilio's form → `incoming_sms` / `incoming_whatsapp` (SPEC §5)."""

    def one(name: str) -> str:
        value = fields.get(name, "")
        return str(value[0] if isinstance(value, list) and value else value)

    try:
        count = max(0, min(int(one("NumMedia") or 0), 20))
    except ValueError:
        count = 0
    media = [
        {"url": one(f"MediaUrl{i}"), "content_type": one(f"MediaContentType{i}")}
        for i in range(count)
        if one(f"MediaUrl{i}")
    ]
    out: dict[str, Any] = {
        "sender_number": one("From"),
        "to_number": one("To"),
        "text": one("Body"),
        "date_received": received_at,
        "message_sid": one("MessageSid") or one("SmsMessageSid") or one("SmsSid"),
        "media": media,
        "num_media": count,
        "account_sid": one("AccountSid"),
    }
    if kind == "whatsapp":
        out["sender_number"] = _strip(out["sender_number"])
        out["to_number"] = _strip(out["to_number"])
        out["profile_name"] = one("ProfileName")
        out["wa_id"] = one("WaId")
    return out


def twiml(messages: list[str]) -> Response:
    answer = MessagingResponse()
    for message in messages:
        answer.message(message)
    return Response(200, str(answer).encode(), [("content-type", "text/xml; charset=utf-8")])


def _replayed(sub: Submission) -> Response:
    """Twilio's retry of a message already taken: the same TwiML again, nothing run twice."""
    return from_ack(sub.ack) if sub.ack else twiml([])


async def handle(channel: HttpContext, request: Request, send: Send, source: HttpSource) -> Response:
    if request.method not in ("POST", "GET", "HEAD"):
        return error_response(405, f"method {request.method} not allowed; use POST").header(
            "allow", "POST, GET, HEAD"
        )
    try:
        return await _accept(channel, request, source)
    except Refused as refused:
        return refused.response


async def _accept(channel: HttpContext, request: Request, source: HttpSource) -> Response:
    cfg = channel.cfg
    await access.check_access(request, source)
    await pipeline.read_body(request, source, cfg.http.max_body)
    if not signature_valid(request, _form(request), cfg.router, cfg.twilio.auth_token):
        raise Refused(error_response(403, "invalid Twilio signature"))
    pipeline.check_rate(channel.limits, source)
    data = await pipeline.parse(request, channel.files_dir)
    entity = Entity(source.kind, source.source, data, raw=request.body)
    fields = {k: v for k, v in data.items() if not k.startswith("__")}
    message = message_fields(fields, source.kind, entity.received_at)
    data["incoming_whatsapp" if source.kind == "whatsapp" else "incoming_sms"] = message
    key = pipeline.dedup_key(request, source, data, channel.intake) or message["message_sid"] or None

    if not channel.intake.has_sync_listener(source.source):
        return await pipeline.submit_and_answer(channel.intake, entity, key, twiml([]), replay=_replayed)

    responder = HttpResponder(entity.id)
    sub = await pipeline.submit_held(channel.intake, entity, key, responder, replay=_replayed)
    if isinstance(sub, Response):
        return sub  # Twilio's retry of a message already taken
    with trio.move_on_after(REPLY_TIMEOUT):
        await responder.finished.wait()
    if not responder.finished.is_set():
        log.warning("twilio reply timeout: answering with the replies so far", signal_id=entity.id)
    response = twiml(list(responder.twiml))
    await channel.remember_ack(entity.id, response)
    return response
