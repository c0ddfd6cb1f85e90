"""In-process fixtures: the router's own parts wired as `router serve` wires them (a real
storage in a temp dir, the real dispatcher, engine and HTTP channel), without a subprocess or
sockets. The HTTP channel is driven through httpx's `ASGITransport`."""

from __future__ import annotations

import logging
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
import trio

from channels.http.app import HttpChannel
from config import Config
from engine.actions import Services
from engine.records import RecordStore
from engine.runner import Engine
from engine.templates import TemplateEngine
from router.build import build_routes, load_checked
from router.daemon import open_storage
from router.dispatch.deletions import JournalDeletionSink
from router.dispatch.dispatcher import Dispatcher
from router.ops import logs
from router.storage import Storage
from router.storage.rows import Signal

HEAD = """
[router]
data_dir = "{data_dir}"
runners = 0
retry_backoff = "0.05s"
lease = "3s"
{router_extra}
"""


@dataclass
class Observed:
    """A `DispatchObserver` that keeps what it is told."""

    submits: list[tuple[str, str, str]] = field(default_factory=list)
    runs: list[tuple[str, str]] = field(default_factory=list)
    retries: list[str] = field(default_factory=list)

    def on_submit(self, channel: str, source: str, outcome: str, seconds: float) -> None:
        self.submits.append((channel, source, outcome))

    def on_run(self, workflow: str, status: str, seconds: float) -> None:
        self.runs.append((workflow, status))

    def on_retry(self, kind: str) -> None:
        self.retries.append(kind)


@dataclass
class Node:
    cfg: Config
    storage: Storage
    dispatcher: Dispatcher
    http: HttpChannel
    client: httpx.AsyncClient
    observed: Observed

    def signal(self, signal_id: str) -> Signal | None:
        return self.storage.read(lambda tx: tx.get_signal(signal_id))

    def signals(self) -> list[Signal]:
        return self.storage.read(lambda tx: tx.list_signals(limit=10_000))

    def state_of(self, kind: str, name: str) -> Any:
        return self.storage.read(lambda tx: tx.source_states()).get((kind, name))

    async def settled(self, signal_id: str) -> Signal:
        """The signal once it is done or failed (polled: the runs are in the dispatcher's nursery)."""
        with trio.fail_after(10):
            while True:
                signal = self.signal(signal_id)
                if signal is not None and signal.status in ("done", "failed"):
                    return signal
                await trio.sleep(0.01)


@pytest.fixture
def router_logging() -> Iterator[None]:
    """The daemon's logging (structlog over stdlib, as `router serve` sets it up), put back after."""
    saved, root = structlog.get_config(), logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logs.setup("logfmt", "warning")
    yield
    structlog.configure(**saved)
    root.handlers[:], root.level = handlers, level


@pytest.fixture
async def node_factory(router_logging: None, tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Node]]]:
    async with trio.open_nursery() as nursery, httpx.AsyncClient(timeout=10) as outbound:
        made: list[Node] = []

        async def make(body: str, *, router_extra: str = "") -> Node:
            path = tmp_path / f"router{len(made)}.toml"
            data_dir = tmp_path / f"var{len(made)}"
            path.write_text(HEAD.format(data_dir=data_dir, router_extra=router_extra) + textwrap.dedent(body))
            cfg, _ = load_checked(path)
            storage = open_storage(cfg)
            templates = TemplateEngine(RecordStore(storage, JournalDeletionSink()))
            _, workflows = load_checked(path, templates)
            services = Services(
                db=storage,
                deletions=JournalDeletionSink(),
                smtp=cfg.outbound.smtp,
                twilio=cfg.twilio,
                http=outbound,
            )
            engine = Engine(services, templates, default_timeout=cfg.router.run_timeout)
            observed = Observed()
            dispatcher = Dispatcher(
                storage,
                engine,
                templates,
                workflows,
                cfg.router,
                dedup_window=cfg.http.idempotency_window,
                observer=observed,
            )

            async def remember_ack(signal_id: str, ack: dict[str, Any]) -> None:
                await storage.write(lambda tx: tx.set_ack(signal_id, ack))

            http = HttpChannel(
                dispatcher,
                build_routes(cfg, storage.read(lambda tx: tx.source_states())),
                cfg,
                on_ack=remember_ack,
            )
            await nursery.start(storage.run_writer)
            await nursery.start(dispatcher.run)
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=http), base_url="http://router.test")
            node = Node(cfg, storage, dispatcher, http, client, observed)
            made.append(node)
            return node

        yield make
        for node in made:
            await node.client.aclose()
            with trio.move_on_after(5):
                await node.dispatcher.drain()
            node.storage.stop_writer()
        nursery.cancel_scope.cancel()
    for node in made:
        node.storage.close()
