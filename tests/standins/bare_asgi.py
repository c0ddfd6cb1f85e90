"""A bare hypercorn-trio ASGI app answering 200 JSON, in its own process: the baseline that
benchmarks compare against (and a fast webhook target for the engine bench)."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from tests.standins import free_port

APP = """
import sys, trio
from hypercorn.config import Config
from hypercorn.trio import serve

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            await send({"type": msg["type"] + ".complete"})
            if msg["type"] == "lifespan.shutdown":
                return
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"ok":true}'})

cfg = Config()
cfg.bind = [sys.argv[1]]
cfg.accesslog = None
trio.run(serve, app, cfg)
"""


class BareServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", APP, f"127.0.0.1:{self.port}"], stderr=subprocess.DEVNULL
        )
        for _ in range(100):
            try:
                httpx.get(self.url("/"), timeout=0.5)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("bare ASGI server did not start")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()
