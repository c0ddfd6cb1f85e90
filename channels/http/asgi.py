"""Lean ASGI plumbing for the hot paths: no framework between hypercorn and our handlers."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


DRAIN_KEEP = 16 * 1024
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")  # an X-Request-Id echoed as the caller sent it


class BodyTooLarge(Exception):
    def __init__(self, limit: int, *, decoded: bool = False) -> None:
        super().__init__(f"request body is larger than {limit} bytes")
        self.limit = limit
        self.decoded = decoded  # the limit was passed while decompressing (Content-Encoding)


class BodyDecoder(Protocol):
    """A Content-Encoding decoder (channels.http.encoding.Decoder)."""

    def feed(self, data: bytes) -> bytes: ...

    def finish(self) -> None: ...


class ClientGone(Exception):
    pass


@dataclass
class Request:
    scope: Scope
    receive: Receive
    method: str
    path: str
    query_string: str
    headers: dict[str, str]  # lowercased names; repeated headers joined with ", "
    client: str
    request_id: str
    body: bytes = b""
    body_read: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_scope(cls, scope: Scope, receive: Receive, request_id: str | None = None) -> Request:
        """`request_id` None: the caller's first `X-Request-Id` if it is fit to echo, else a new one."""
        headers: dict[str, str] = {}
        given = ""
        for raw_name, raw_value in scope.get("headers", []):
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            if name in headers:
                headers[name] = f"{headers[name]}, {value}"
            else:
                headers[name] = value
                if name == "x-request-id":
                    given = value
        if request_id is None:
            # 128 random bits in hex, as uuid4().hex gave, for a third of its cost.
            request_id = given if given and _REQUEST_ID.match(given) else os.urandom(16).hex()
        client = scope.get("client") or ("", 0)
        return cls(
            scope,
            receive,
            scope["method"].upper(),
            scope.get("path", "/"),
            scope.get("query_string", b"").decode("latin-1"),
            headers,
            str(client[0]) if client else "",
            request_id,
        )

    @property
    def query(self) -> dict[str, Any]:
        if not self.query_string:
            return {}
        return pairs_to_dict(parse_qsl(self.query_string, keep_blank_values=True))

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    async def read_body(self, limit: int, decoder: BodyDecoder | None = None) -> bytes:
        """Read the whole body, refusing (without buffering) anything over `limit` bytes, as
        sent and, with a `decoder` (Content-Encoding), as decoded chunk by chunk."""
        declared = self.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge(limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(limit)
            last = not message.get("more_body", False)
            self.body_read = last  # read to the end: a decoding error must not wait to drain it
            chunks.append(decoder.feed(chunk) if decoder is not None else chunk)
            if last:
                break
        if decoder is not None:
            decoder.finish()
        self.body = b"".join(chunks)
        self.body_read = True
        return self.body

    async def drain(self, limit: int = 64 * 1024) -> None:
        """Read (and drop) a small remaining body so keep-alive connections stay healthy.

        See STACK-NOTES trap 1: answering without reading the body can hang the next request
        on the connection. Large bodies are not drained; the connection is closed instead.
        """
        if self.body_read:
            return
        self.body_read = True
        size = 0
        head: list[bytes] = []  # the first DRAIN_KEEP bytes: a refused request is kept with them
        try:
            while size <= limit:
                message = await self.receive()
                if message["type"] != "http.request":
                    return
                chunk = message.get("body", b"")
                if size < DRAIN_KEEP:
                    head.append(chunk[: DRAIN_KEEP - size])
                size += len(chunk)
                if not message.get("more_body", False):
                    return
        finally:
            self.extra["drained"] = (b"".join(head), size)


def pairs_to_dict(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Query/form pairs to a dict: repeated names (or `name[]`) become lists."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key.endswith("[]"):
            key = key[:-2]
            out.setdefault(key, [])
            if not isinstance(out[key], list):
                out[key] = [out[key]]
            out[key].append(value)
        elif key in out:
            if not isinstance(out[key], list):
                out[key] = [out[key]]
            out[key].append(value)
        else:
            out[key] = value
    return out


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    close: bool = False
    reason: str = ""  # why a request was refused, for the refusal log line (not sent)

    def header(self, name: str, value: str) -> Response:
        self.headers.append((name, value))
        return self

    async def send(self, send: Send, request_id: str) -> None:
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers]
        headers.append((b"x-request-id", request_id.encode("latin-1")))
        if not any(k == b"content-length" for k, _ in headers):
            headers.append((b"content-length", str(len(self.body)).encode()))
        if self.close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


def loggable_path(path: str) -> str:
    """A path fit for a log line: an endpoint's two URL hashes are its credential, so only
    their first 4 characters are kept (enough to tell endpoints apart)."""
    parts = path.split("/")
    if len(parts) == 4 and parts[1] == "listener":
        return f"/listener/{parts[2][:4]}…/{parts[3][:4]}…"
    return path[:512]


def json_response(status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(status, body, [("content-type", "application/json"), *(headers or [])])


def error_response(status: int, message: str, **extra: Any) -> Response:
    response = json_response(status, {"error": message, **extra})
    response.reason = message
    return response
