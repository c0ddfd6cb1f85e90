"""An HTTP target for webhook tests: echoes by default, can be scripted to fail or stall."""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from tests.standins import ThreadedServer


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: list[tuple[str, str]]  # as sent, in order
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    @property
    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("ascii"), keep_blank_values=True)

    @property
    def json(self) -> object:
        return json.loads(self.body)


@dataclass
class Scripted:
    """One scripted answer. `delay` stalls before the status line is sent."""

    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _handle(self) -> None:
        owner: HttpTarget = self.server.owner  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        recorded = Recorded(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers=list(self.headers.items()),
            body=body,
        )
        with owner.lock:
            owner.requests.append(recorded)
            answer = owner.script.popleft() if owner.script else None
        if answer is None:
            answer = Scripted(
                200,
                json.dumps(
                    {
                        "method": recorded.method,
                        "path": recorded.path,
                        "headers": {k.lower(): v for k, v in recorded.headers},
                        "body": body.decode("utf-8", "replace"),
                    }
                ),
                {"Content-Type": "application/json"},
            )
        if answer.delay and owner.stopping.wait(answer.delay):
            return
        payload = answer.body.encode("utf-8") if isinstance(answer.body, str) else answer.body
        try:
            self.send_response(answer.status)
            for key, value in answer.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        except OSError:  # the client gave up (timeout tests)
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


class HttpTarget(ThreadedServer):
    """Records every request in `requests`; answers from `script` (FIFO), then echoes as JSON."""

    handler_class = _Handler

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Recorded] = []
        self.script: deque[Scripted] = deque()

    def answer(self, *answers: Scripted) -> None:
        with self.lock:
            self.script.extend(answers)
