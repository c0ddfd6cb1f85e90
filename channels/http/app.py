"""The HTTP channel: one lean ASGI app served by hypercorn's trio worker.

Hot paths (`/listener/…`, `/webhooks/…`, `/forms/…`, `/sms/…`, `/whatsapp/…`) are plain ASGI
handlers: the framework costs more than the fsync does (STACK-NOTES). Which handler serves which
path is the static `ROUTES` below; which sources exist is the `RouteTable`, replaced atomically
on reload or state changes (a request keeps the table it started with). A handler sees the
channel only as `pipeline.HttpContext`, so no handler imports this module.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog

from channels.http import endpoints, forms, twilio, webhooks
from channels.http.access import client_address, networks
from channels.http.asgi import (
    ClientGone,
    Receive,
    Request,
    Response,
    Scope,
    Send,
    error_response,
    json_response,
    loggable_path,
)
from channels.http.pipeline import HttpContext
from channels.http.ratelimit import RateLimits, SharedRateLimits
from channels.http.replies import to_ack
from channels.http.routes import HttpSource, RouteTable
from channels.intake import Intake
from config import Config

log = structlog.get_logger("router.http")
access = structlog.get_logger("router.access")

# The largest request head (request line and headers) served. hypercorn's h11 parser is given
# the same bound, but only applies it to a head still incomplete after a 64 KiB read, so a head
# that arrives whole can be almost twice as big: measured here, it is the same for every request.
MAX_HEAD = 64 * 1024


def head_size(scope: Scope) -> int:
    """The bytes of the request line and headers as sent (give or take the spaces)."""
    line = (
        len(scope.get("method", ""))
        + len(scope.get("raw_path", b""))
        + len(scope.get("query_string", b""))
        + 12
    )
    return line + sum(len(name) + len(value) + 4 for name, value in scope.get("headers", []))


# A source kind's handler: the answer, or None when it streamed one itself (SSE) through `send`.
Handler = Callable[[HttpContext, Request, Send, HttpSource], Awaitable[Response | None]]


@dataclass(frozen=True)
class Route:
    """`/{prefix…}/{key…}` → the source with that key in one of the `RouteTable`'s tables."""

    prefix: tuple[str, ...]
    keys: int  # path segments after the prefix that name the source
    table: Callable[[RouteTable], dict[Any, HttpSource]]
    handle: Handler
    missing: str  # the 404's message

    def source(self, routes: RouteTable, parts: list[str]) -> HttpSource | None:
        key = parts[len(self.prefix)] if self.keys == 1 else tuple(parts[len(self.prefix) :])
        return self.table(routes).get(key)


ROUTES: dict[str, Route] = {
    route.prefix[0]: route
    for route in (
        Route(("listener",), 2, lambda t: t.endpoints, endpoints.handle, "unknown or inactive endpoint"),
        Route(
            ("webhooks", "incoming"), 1, lambda t: t.webhooks, webhooks.handle, "unknown or inactive webhook"
        ),
        Route(("forms",), 1, lambda t: t.forms, forms.handle, "unknown or inactive forms source"),
        Route(("sms",), 1, lambda t: t.sms, twilio.handle, "unknown or inactive sms source"),
        Route(("whatsapp",), 1, lambda t: t.whatsapp, twilio.handle, "unknown or inactive whatsapp source"),
    )
}


class HttpObserver(Protocol):
    """Metrics (router/ops/metrics.py): `begin` when a request arrives, `end` once its answer
    went out (same trio task, so what the dispatcher learned in between can ride a contextvar)."""

    def begin(self, request: Request) -> object: ...

    def end(self, token: object, request: Request, status: int) -> None: ...


class HttpChannel:
    def __init__(
        self,
        intake: Intake,
        routes: RouteTable,
        cfg: Config,
        *,
        max_in_flight: int = 1024,
        ready: Callable[[], bool] = lambda: True,
        on_ack: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None,
        limits: RateLimits | SharedRateLimits | None = None,
        observer: HttpObserver | None = None,
    ) -> None:
        self.intake = intake
        self.routes = routes
        self.set_config(cfg)
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.limits = limits if limits is not None else RateLimits()
        self.ready = ready
        self.on_ack = on_ack
        self.draining = False  # set on SIGTERM: requests on kept-alive connections get 503 + close
        self.observer = observer

    def set_routes(self, routes: RouteTable) -> None:
        """A new table (reload, a source (de)activated or rotated); a request in flight keeps the
        table it started with."""
        self.routes = routes

    def set_config(self, cfg: Config) -> None:
        """The config (`[http]`, `[router]`, `[twilio]`) requests read from now on (start, reload)."""
        self.cfg = cfg
        self.files_dir = Path(cfg.router.data_dir) / "files"  # form uploads
        self.trusted_proxies = networks(tuple(cfg.router.trusted_proxies))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = Request.from_scope(scope, receive)
        request_id = request.request_id
        if request.method == "HEAD":
            send = _without_body(send)
        if self.cfg.router.trust_proxy and "x-forwarded-for" in request.headers:
            request.client = client_address(
                request.client, request.headers["x-forwarded-for"], self.trusted_proxies
            )
        started = time.perf_counter()
        observed = self.observer.begin(request) if self.observer is not None else None
        status = 500
        if head_size(scope) > MAX_HEAD:
            request.extra["reason"] = "request head too large"
            response = error_response(431, f"request header fields too large (the limit is {MAX_HEAD} bytes)")
            response.close = True
            request.extra["answer"] = response
            await response.send(send, request_id)
            if self.observer is not None:
                self.observer.end(observed, request, 431)
            return
        if self.in_flight >= self.max_in_flight:
            request.extra["overloaded"] = True
            request.extra["reason"] = "too many requests in flight"
            await request.drain()
            response = error_response(503, "too many requests in flight").header("retry-after", "1")
            request.extra["answer"] = response
            await response.send(send, request_id)
            if self.observer is not None:
                self.observer.end(observed, request, 503)
            return
        if self.draining:
            await request.drain()
            request.extra["reason"] = "shutting down"
            response = error_response(503, "shutting down, retry later").header("retry-after", "2")
            response.close = True
            request.extra["answer"] = response
            await response.send(send, request_id)
            if self.observer is not None:
                self.observer.end(observed, request, 503)
            return
        self.in_flight += 1
        try:
            answer = await self._route(request, send)
            status = 200 if answer is None else answer.status  # None: a stream already answered
            if answer is not None:
                if not request.body_read and not answer.close:
                    await request.drain()
                if answer.status >= 400:
                    request.extra["reason"] = answer.reason
                    request.extra["answer"] = answer
                await answer.send(send, request_id)
        except ClientGone:
            status = 499  # nginx's "client closed request": there is no one to answer
            request.extra["reason"] = "the client closed the connection before its body arrived"
        except Exception:
            status = 500
            log.exception("request failed", request_id=request_id, path=request.path)
            await error_response(500, "internal error", request_id=request_id).send(send, request_id)
        finally:
            self.in_flight -= 1
            if self.observer is not None:
                self.observer.end(observed, request, status)
            if self.cfg.http.access_log:
                access.info(
                    "access",
                    method=request.method,
                    path=loggable_path(request.path),
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                    remote=request.client,
                    request_id=request_id,
                )

    async def _route(self, request: Request, send: Send) -> Response | None:
        parts = request.path.strip("/").split("/")
        route = ROUTES.get(parts[0])
        if (
            route is not None
            and len(parts) == len(route.prefix) + route.keys
            and tuple(parts[: len(route.prefix)]) == route.prefix
        ):
            source = route.source(self.routes, parts)
            if source is not None:
                request.extra["source"] = source
            if source is None or not source.active or source.expired(time.time()):
                return error_response(404, route.missing)
            return await route.handle(self, request, send, source)
        if request.path == "/healthz":
            return json_response(200, {"status": "ok"})
        if request.path == "/readyz":
            ok = self.ready()
            return json_response(200 if ok else 503, {"ready": ok})
        return error_response(404, "not found")

    async def remember_ack(self, signal_id: str, response: Response) -> None:
        if self.on_ack is not None:
            await self.on_ack(signal_id, to_ack(response))


def _without_body(send: Send) -> Send:
    """HEAD is answered as GET is, status and headers (Content-Length included) but no body
    (RFC 9110 §9.3.2); h11 refuses body bytes on a HEAD response, so they are dropped here."""
    ended = False

    async def head_send(message: MutableMapping[str, Any]) -> None:
        nonlocal ended
        if message["type"] == "http.response.body":
            if ended:
                return
            ended = True
            message = {"type": "http.response.body", "body": b"", "more_body": False}
        await send(message)

    return head_send


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
