"""What the engine needs from the outside world, as small protocols.

The engine never imports a channel or the router: whoever runs a workflow passes objects that
satisfy these protocols. The router implements `Database` (over its storage seam) and
`DeletionSink`; channels implement `Responder` for callers that can receive a reply.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Database(Protocol):
    """The storage seam as the engine sees it.

    `write` runs `fn(conn)` inside the single writer's transaction (group-committed with other
    writes) and returns its result once the transaction is durable. `read` runs `fn(conn)` on a
    read connection. Both take plain synchronous functions so SQLite specifics stay in one place.
    """

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...


class DeletionSink(Protocol):
    """Called inside the delete's own transaction so a deletion never happens without its signal."""

    def record_deleted(self, conn: sqlite3.Connection, record_type: str, record: dict[str, Any]) -> None: ...


@dataclass
class Reply:
    """A response a workflow produced for its caller (the `respond` action)."""

    return_type: str  # data | html | redirect
    body: str = ""
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


class Responder(Protocol):
    """The caller's side of a run: only channels that can answer provide one."""

    def respond(self, reply: Reply) -> bool:
        """Deliver a reply; returns False if one was already delivered (later ones are ignored)."""
        ...

    async def emit(self, event: str, data: str) -> None:
        """Send one SSE frame (sse endpoints)."""
        ...

    def twiml_reply(self, message: str) -> None:
        """Set the SMS/WhatsApp TwiML answer (the `reply` action)."""
        ...


@dataclass
class OutboundSettings:
    """Where outbound actions go; built by the router from `[outbound.*]` and `[twilio]`."""

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "router@localhost"
    smtp_timeout: float = 30.0
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_api_base: str | None = None  # e.g. http://127.0.0.1:9999 for a local stand-in
    twilio_from: str | None = None
    twilio_whatsapp_from: str | None = None
