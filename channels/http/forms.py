"""HTML form targets: `POST /forms/{name}` (SPEC §6).

A browser posts a form (urlencoded or multipart) and a person reads the answer, so every answer
is a page, never JSON:

1. Only POST (anything else → 405 with `Allow: POST`).
2. Origin check: with `allowed_origins` set, the `Origin` header (or, when a browser leaves it
   out, the origin of `Referer`) must be one of them; otherwise 403. No list means any origin.
3. The body goes through the shared steps (size limit, signature, rate limit, parsing); a body
   that is not a form is a 400 page saying what to send.
4. Honeypot: a filled `honeypot` field (default `website`, a field people never see) gets the
   normal success answer but is not journaled (a bot learns nothing); it is logged.
5. Success, after the journal commit: 303 to the rendered `redirect` template, or a small
   "Thank you" page (200) when there is no redirect. An `Idempotency-Key` header or the
   source's `dedup_key` makes a double submit answer the same without a second run.
"""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import urlsplit

import structlog

from channels.http import access, pipeline
from channels.http.asgi import Request, Response, Send
from channels.http.pipeline import HttpContext, Refused
from channels.http.replies import safe_location
from channels.http.routes import HttpSource
from engine.entity import Entity

log = structlog.get_logger("router.http")

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}
h1{{font-size:1.5rem}}code{{background:#f3f3f3;padding:0 .2rem}}</style></head>
<body><h1>{title}</h1>
<p>{message}</p>
{extra}</body>
</html>
"""

_TITLES = {
    400: "The form could not be sent",
    403: "This form does not accept submissions from here",
    404: "Form not found",
    405: "Method not allowed",
    413: "The form is too large",
    429: "Too many submissions",
    503: "Please try again shortly",
}


def page(status: int, title: str, message: str, *, detail: str = "") -> Response:
    """A small readable HTML page; `message` and `detail` are plain text (escaped here)."""
    extra = f"<p><small>{html.escape(detail)}</small></p>" if detail else ""
    body = _PAGE.format(title=html.escape(title), message=html.escape(message), extra=extra)
    return Response(
        status, body.encode(), [("content-type", "text/html; charset=utf-8"), ("cache-control", "no-store")]
    )


def thanks_page() -> Response:
    return page(200, "Thank you", "Your submission was received.")


def as_page(response: Response, request_id: str) -> Response:
    """Turn a shared step's JSON refusal (413, 401, 429, 503, 400…) into a page; headers kept."""
    if any(k.lower() == "content-type" and v.startswith("text/html") for k, v in response.headers):
        return response
    try:
        payload = json.loads(response.body or b"{}")
        message = str(payload.get("error") or payload.get("reason") or "the request was refused")
        if payload.get("reason") and payload.get("error") != payload.get("reason"):
            message = f"{payload['error']}: {payload['reason']}"
    except (ValueError, AttributeError):
        message = response.body.decode("utf-8", "replace") or "the request was refused"
    title = _TITLES.get(response.status, "The form could not be sent")
    out = page(
        response.status, title, message[:1].upper() + message[1:] + ".", detail=f"Request id {request_id}"
    )
    out.reason = response.reason or message
    out.headers.extend(
        (k, v) for k, v in response.headers if k.lower() not in ("content-type", "content-length")
    )
    out.close = response.close
    return out


def _origin_of(value: str) -> str | None:
    try:
        parts = urlsplit(value.strip())
    except ValueError:  # "http://[::1": an unclosed IPv6 host is no origin at all
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def origin_problem(request: Request, allowed: list[str]) -> str | None:
    """None if the form may be posted from where the browser says it came from."""
    if not allowed:
        return None
    wanted = {o.rstrip("/").lower() for o in allowed}
    origin = request.headers.get("origin", "").strip()
    if origin and origin != "null":
        seen = _origin_of(origin)
    elif request.headers.get("referer"):
        seen = _origin_of(request.headers["referer"])
    else:
        return "the browser did not say which site the form is on (no Origin or Referer header)"
    if seen is None or seen not in wanted:
        return f"forms from {seen or origin or 'an unknown origin'} are not accepted here"
    return None


def _redirect_target(channel: HttpContext, source: HttpSource, data: dict[str, Any]) -> str:
    template = source.config.redirect or ""
    if not template.strip():
        return ""
    return safe_location(channel.intake.render(template, data))


def success(channel: HttpContext, source: HttpSource, data: dict[str, Any]) -> Response:
    target = _redirect_target(channel, source, data)
    if not target:
        return thanks_page()
    return Response(303, b"", [("location", target)])


async def handle(channel: HttpContext, request: Request, send: Send, source: HttpSource) -> Response:
    if request.method != "POST":
        response = page(405, _TITLES[405], f"This address takes form posts (POST), not {request.method}.")
        return response.header("allow", "POST")
    problem = origin_problem(request, list(source.config.allowed_origins or []))
    if problem:
        response = page(
            403,
            _TITLES[403],
            problem[:1].upper() + problem[1:] + ".",
            detail=f"Request id {request.request_id}",
        )
        response.reason = problem
        return response
    try:
        return await _accept(channel, request, source)
    except Refused as refused:
        return as_page(refused.response, request.request_id)


async def _accept(channel: HttpContext, request: Request, source: HttpSource) -> Response:
    await access.check_access(request, source)
    body = await pipeline.read_body(request, source, channel.cfg.http.max_body)
    ctype = request.content_type
    if ctype not in FORM_TYPES:
        got = f"a body of type {ctype}" if ctype else ("a body without a content type" if body else "no body")
        raise Refused(
            page(
                400,
                _TITLES[400],
                f"Expected a form (urlencoded or multipart/form-data), got {got}.",
                detail=f"Request id {request.request_id}",
            )
        )
    pipeline.check_signature(request, source)
    pipeline.check_rate(channel.limits, source)
    # Parse without keeping uploads first: a bot's files are never written to disk.
    data = await pipeline.parse(request, None)
    trap = source.config.honeypot
    if trap and str(data.get(trap) or "").strip():
        log.info(
            "form honeypot filled: not journaled",
            source=source.source,
            remote=request.client,
            request_id=request.request_id,
        )
        return success(channel, source, data)
    if data.get("__files"):
        data = await pipeline.parse(request, channel.files_dir)
    if trap:
        data.pop(trap, None)
    entity = Entity("forms", source.source, data, raw=request.body)
    key = pipeline.dedup_key(request, source, data, channel.intake)
    return await pipeline.submit_and_answer(channel.intake, entity, key, success(channel, source, data))
