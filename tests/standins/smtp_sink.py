"""An SMTP sink on aiosmtpd: captures every envelope, can be told to answer 4xx/5xx.

aiosmtpd's `Controller` runs its own asyncio loop in a thread; `start()`/`stop()` block, so call
them from a sync fixture or a worker thread, never directly inside `trio.run`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.standins import free_port


@dataclass
class Captured:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    auth: str | None = None  # the login used, if any

    @property
    def message(self) -> EmailMessage:
        msg = message_from_bytes(self.content, policy=default_policy)
        assert isinstance(msg, EmailMessage)
        return msg


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self.sink.rcpt_replies.get(address) or self.sink.rcpt_reply
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.sink.lock:
            reply = self.sink.data_replies.pop(0) if self.sink.data_replies else None
        if reply:
            return reply
        login = session.auth_data.login.decode() if getattr(session, "auth_data", None) else None
        captured = Captured(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content), login)
        with self.sink.lock:
            self.sink.messages.append(captured)
        return "250 Message accepted for delivery"


class SmtpSink:
    """`rcpt_reply` refuses every recipient with that reply ("550 5.1.1 no such user");
    `rcpt_replies[address]` refuses one; `data_replies` answers the next DATA commands;
    `credentials=(user, password)` offers AUTH without TLS (loopback only) and checks it."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.messages: list[Captured] = []
        self.rcpt_reply: str | None = None
        self.rcpt_replies: dict[str, str] = {}
        self.data_replies: list[str] = []
        self.lock = threading.Lock()
        self.credentials = credentials
        self.host = "127.0.0.1"
        self.port = 0
        self._controller: Controller | None = None

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and self.credentials is not None:
            given = (auth_data.login.decode(), auth_data.password.decode())
            if given == self.credentials:
                return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    def start(self) -> SmtpSink:
        kwargs: dict[str, Any] = {}
        if self.credentials is not None:
            kwargs = {"authenticator": self._authenticate, "auth_require_tls": False}
        for _ in range(5):  # the port may be taken between free_port() and bind
            self.port = free_port(self.host)
            controller = Controller(
                _Handler(self), hostname=self.host, port=self.port, ready_timeout=5, **kwargs
            )
            try:
                controller.start()
            except (OSError, RuntimeError):
                continue
            self._controller = controller
            return self
        raise RuntimeError("could not start the SMTP sink")

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
