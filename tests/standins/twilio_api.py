"""A stand-in for Twilio's REST API: `POST /2010-04-01/Accounts/{sid}/Messages.json`.

Answers like Twilio (201 with a Message resource as JSON), records every request (path, form
fields, Authorization) and can be told to fail. Point `[twilio] api_base` at
`base_url` and the real twilio client talks to it.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections import deque
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs

from tests.standins import ThreadedServer

MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC[0-9A-Za-z]+)/Messages\.json$")


@dataclass
class TwilioRequest:
    method: str
    path: str
    account_sid: str | None
    form: dict[str, list[str]]
    authorization: str | None
    headers: dict[str, str]  # names lowercased

    def field(self, name: str) -> str | None:
        values = self.form.get(name)
        return values[0] if values else None

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        if not self.authorization or not self.authorization.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(self.authorization[6:]).decode().partition(":")
        return user, password


@dataclass
class Failure:
    status: int
    code: int | None = None
    message: str = "stand-in failure"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send_json(self, status: int, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: int | None, message: str) -> None:
        self._send_json(
            status,
            {
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            },
        )

    def _handle(self) -> None:
        owner: TwilioStandin = self.server.owner  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        match = MESSAGES_PATH.match(self.path.split("?", 1)[0])
        request = TwilioRequest(
            method=self.command,
            path=self.path,
            account_sid=match.group("sid") if match else None,
            form=parse_qs(raw.decode("utf-8"), keep_blank_values=True),
            authorization=self.headers.get("Authorization"),
            headers={k.lower(): v for k, v in self.headers.items()},
        )
        with owner.lock:
            owner.requests.append(request)
            failure = owner.failures.popleft() if owner.failures else None
        if failure is not None:
            self._error(failure.status, failure.code, failure.message)
            return
        if match is None or self.command != "POST":
            self._error(404, 20404, "The requested resource was not found")
            return
        if owner.credentials is not None and request.basic_auth != owner.credentials:
            self._error(401, 20003, "Authenticate")
            return
        to, sender = request.field("To"), request.field("From")
        if not to:
            self._error(400, 21604, "A 'To' phone number is required.")
            return
        if not sender and not request.field("MessagingServiceSid"):
            self._error(400, 21603, "A 'From' phone number is required.")
            return
        sid = "SM" + secrets.token_hex(16)
        account = match.group("sid")
        now = formatdate(usegmt=True)
        uri = f"/2010-04-01/Accounts/{account}/Messages/{sid}.json"
        self._send_json(
            201,
            {
                "account_sid": account,
                "api_version": "2010-04-01",
                "body": request.field("Body") or "",
                "date_created": now,
                "date_sent": None,
                "date_updated": now,
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "from": sender,
                "messaging_service_sid": request.field("MessagingServiceSid"),
                "num_media": str(len(request.form.get("MediaUrl", []))),
                "num_segments": "1",
                "price": None,
                "price_unit": "USD",
                "sid": sid,
                "status": "queued",
                "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
                "to": to,
                "uri": uri,
            },
        )

    do_GET = do_POST = do_PUT = do_DELETE = _handle


class TwilioStandin(ThreadedServer):
    """`credentials=(account_sid, auth_token)` makes it answer 401 to anything else."""

    handler_class = _Handler

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.credentials = credentials
        self.requests: list[TwilioRequest] = []
        self.failures: deque[Failure] = deque()

    def fail_next(
        self, status: int, *, code: int | None = None, message: str = "stand-in failure", times: int = 1
    ) -> None:
        with self.lock:
            self.failures.extend(Failure(status, code, message) for _ in range(times))
