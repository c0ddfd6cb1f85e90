"""Local stand-ins for the outside world, used by tests.

Each runs in background threads (so it works from sync pytest fixtures and from trio tests
alike) and records what it received for assertions:

- `http_target.HttpTarget` — an HTTP server for webhook tests (echo, scripted failures, delays);
- `twilio_api.TwilioStandin` — Twilio's `Messages.json` REST endpoint;
- `smtp_sink.SmtpSink` — an aiosmtpd server capturing envelopes, able to answer 4xx/5xx.
"""

from __future__ import annotations

import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (for servers that cannot bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (a timeout test, a capped read) is not an error worth printing.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class ThreadedServer:
    """A `ThreadingHTTPServer` on 127.0.0.1 (port chosen by the OS) served from a daemon thread.

    Subclasses provide `handler_class`; the handler reaches the owner as `self.server.owner`.
    Use as a context manager, or call `start()` / `stop()`.
    """

    handler_class: type[BaseHTTPRequestHandler]

    def __init__(self) -> None:
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def start(self) -> ThreadedServer:
        httpd = _QuietServer(("127.0.0.1", 0), self.handler_class)
        httpd.owner = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()  # wakes handlers that are sleeping on purpose
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
