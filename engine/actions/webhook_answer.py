"""One try of a `webhook` step: send the request, read the answer (at most 1 MiB of it) into
the shape `__data.webhook` takes, and read a `Retry-After`."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import trio

MAX_BODY = 1024 * 1024  # bytes of the response body kept in __data.webhook.body
MAX_RETRY_AFTER = 30.0


def retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _decode(raw: bytes, encoding: str | None) -> str:
    try:
        return raw.decode(encoding or "utf-8", errors="replace")
    except LookupError:  # an unknown charset in the Content-Type
        return raw.decode("utf-8", errors="replace")


def _parse_json(text: str, content_type: str, truncated: bool) -> Any:
    if truncated or not text.strip():
        return None
    ctype = content_type.split(";", 1)[0].strip().lower()
    looks_json = "json" in ctype or (not ctype and text.lstrip()[:1] in ("{", "["))
    if not looks_json:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


async def send_once(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    headers: dict[str, str],
    content: bytes | None,
    timeout: float,  # noqa: ASYNC109 - httpx's per-phase timeout too, not only the attempt's deadline
) -> dict[str, Any]:
    with trio.fail_after(timeout):
        async with client.stream(
            method,
            url,
            headers=headers,
            content=content,
            timeout=httpx.Timeout(timeout),
            follow_redirects=True,
        ) as response:
            chunks: list[bytes] = []
            size = 0
            truncated = False
            async for chunk in response.aiter_bytes():
                if size + len(chunk) > MAX_BODY:
                    chunks.append(chunk[: MAX_BODY - size])
                    truncated = True
                    break
                chunks.append(chunk)
                size += len(chunk)
    raw = b"".join(chunks)
    content_type = response.headers.get("content-type", "")
    text = _decode(raw, response.charset_encoding)
    return {
        "ok": 200 <= response.status_code < 300,
        "status": response.status_code,
        "headers": {k.lower(): v for k, v in response.headers.items()},
        "body": text,
        "json": _parse_json(text, content_type, truncated),
    }
