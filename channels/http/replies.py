"""Building HTTP responses from rendered bodies and workflow replies."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from urllib.parse import quote

from channels.http.asgi import Response
from engine.ports import Reply

_HTML_START = re.compile(
    rb"^\s*(<!doctype\s+html|<html|<head|<body|<div|<p[\s>]|<h[1-6]|<table|<span|<a\s)", re.I
)
_XML_START = re.compile(rb"^\s*(<\?xml|<[A-Za-z_][\w.:-]*[\s/>])")


# Everything a Location may carry as it is: visible ASCII. The rest (CR, LF, NUL and other
# controls, spaces, non-ASCII) is percent-encoded as UTF-8, so data rendered into a redirect can
# neither add a header nor break the response.
_LOCATION_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))


def safe_location(rendered: str) -> str:
    """A rendered redirect target made safe for the Location header (`%` is kept: the template
    may already have encoded the URL)."""
    return quote(rendered.strip(), safe=_LOCATION_SAFE)


def detect_content_type(body: bytes) -> str:
    """Flexie's `data` return type: JSON, XML or HTML detected, else text."""
    if len(body) <= _CACHED_BODY:
        return _cached_content_type(body)
    return _content_type(body)


_CACHED_BODY = 512  # a `return_data` without per-signal values renders the same bytes every time


@lru_cache(maxsize=256)
def _cached_content_type(body: bytes) -> str:
    return _content_type(body)


def _content_type(body: bytes) -> str:
    stripped = body.lstrip()
    if stripped[:1] in (b"{", b"[", b'"') or stripped in (b"true", b"false", b"null"):
        try:
            json.loads(stripped)
            return "application/json"
        except ValueError:
            pass
    if _HTML_START.match(stripped):
        return "text/html; charset=utf-8"
    if _XML_START.match(stripped):
        return "application/xml; charset=utf-8"
    return "text/plain; charset=utf-8"


def body_response(return_type: str, rendered: str, status: int | None = None) -> Response:
    """A `data`, `html` or `redirect` answer from an already-rendered template."""
    if return_type == "redirect":
        return Response(status or 302, b"", [("location", safe_location(rendered))])
    body = rendered.encode()
    ctype = "text/html; charset=utf-8" if return_type == "html" else detect_content_type(body)
    return Response(status or 200, body, [("content-type", ctype)])


def reply_response(reply: Reply) -> Response:
    response = body_response(reply.return_type, reply.body, reply.status)
    for name, value in reply.headers.items():
        if name.lower() in ("content-length", "transfer-encoding", "connection"):
            continue
        response.headers = [(k, v) for k, v in response.headers if k.lower() != name.lower()]
        response.header(name, str(value))
    return response


def to_ack(response: Response) -> dict[str, object]:
    """What a repeat with the same idempotency key gets back."""
    return {
        "status": response.status,
        "headers": [[k, v] for k, v in response.headers],
        "body": response.body.decode("utf-8", "replace"),
    }


def from_ack(ack: dict[str, object]) -> Response:
    headers = [(str(k), str(v)) for k, v in ack.get("headers", [])]  # type: ignore[attr-defined]
    response = Response(int(ack.get("status", 200)), str(ack.get("body", "")).encode(), headers)  # type: ignore[call-overload]
    return response.header("idempotent-replayed", "true")
