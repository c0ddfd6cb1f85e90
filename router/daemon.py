"""`router serve`: the trio main that owns every channel, the journal writer and the runs.

Structure: one root nursery. Inside it the storage writer, the dispatcher (its own nursery of
runs), one supervised task per channel (restarted with backoff if it crashes), the state
watcher and the signal handler. SIGTERM stops the listeners, lets runs finish up to
`shutdown_timeout`, and exits 0; whatever is left stays in the journal for the next start.

The same class runs the children the main process starts (router/ops/workers.py): an extra HTTP
worker (`--worker N`: HTTP channel and dispatcher only) or a runner (`--runner N`: no listener,
a dispatcher that claims pending work, woken by the doorbell).
"""

from __future__ import annotations

import logging
import os
import signal
import ssl
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import structlog
import trio

from config import Config, ConfigError
from engine.actions import Services
from engine.records import RecordStore
from engine.runner import Engine
from engine.templates import TemplateEngine
from engine.workflow import Workflow
from router import sources
from router.build import build_routes, load_checked
from router.dispatch.deletions import JournalDeletionSink
from router.dispatch.dispatcher import Dispatcher
from router.dispatch.doorbell import Doorbell, Doorbells, wait_for_runners
from router.dispatch.doorbell import listen as doorbell_listen
from router.exitcodes import EX_CONFIG, EX_UNAVAILABLE
from router.ops import metrics, systemd
from router.ops.forkserver import ForkedProcess, ForkServer, ForkServerGone
from router.ops.netutil import ListenError, open_listeners, raise_fd_limit
from router.ops.refusals import RefusalLog
from router.ops.shared_metrics import ENV as SHARED_DIR_ENV
from router.ops.supervise import supervise, tune_gc
from router.ops.workers import WorkerPool, die_with_parent, lifeline, main_pid
from router.storage import Storage, StorageError, StorageUnavailable, open_postgres
from router.storage import open_storage as open_store
from router.storage.rows import SourceState

if TYPE_CHECKING:
    from channels.http.app import HttpChannel
    from channels.http.ratelimit import SharedRateLimits
    from router.schedules.scheduler import Scheduler

log = structlog.get_logger("router.daemon")

DB_NAME = "router.db"


def db_path(cfg: Config) -> Path:
    return Path(cfg.router.data_dir) / DB_NAME


def open_storage(cfg: Config) -> Storage:
    """The config's store, migrated to this version: PostgreSQL with `[database] url`, else SQLite
    in the data dir. `StorageError` (unavailable, or a newer schema) if it cannot be opened."""
    db = cfg.database
    if db.url:
        storage = open_postgres(
            db.url,
            pool_size=db.pool_size,
            statement_timeout=db.statement_timeout,
            connect_timeout=db.connect_timeout,
            max_deliveries=db.max_deliveries,
        )
    else:
        storage = open_store(db_path(cfg))  # migrates the schema to this version
    storage.write_sync(lambda tx: sources.ensure_sources(tx, cfg))
    return storage


def node_rate_limits(*, create: bool) -> SharedRateLimits | None:
    """One table of rate-limit buckets for all the HTTP processes of this node, in the node's
    shared-memory directory (router/ops/shared_metrics.py): the main process makes it afresh before
    its workers start; they open it."""
    from channels.http.ratelimit import SharedRateLimits

    base = os.environ.get(SHARED_DIR_ENV)
    if not base:
        return None  # not under `router serve` (an in-process test): per-process buckets
    return SharedRateLimits(Path(base) / "rate-limits", create=create)


class Daemon:
    def __init__(
        self,
        config_path: Path,
        *,
        worker_index: int = 0,
        runner_index: int = 0,
        worker_args: list[str] | None = None,
    ) -> None:
        self.config_path = config_path
        self.worker_index = worker_index  # 0: the main process; >0: an extra HTTP worker
        self.runner_index = runner_index  # >0: a runner process (no listener)
        self.worker_args = worker_args or []
        self.workers: WorkerPool | None = None
        self.fork_server: ForkServer | None = None  # the main process's (started by serve())
        self.lifeline: tuple[int, int] | None = None
        self.cfg: Config
        self.workflows: list[Workflow]
        self.storage: Storage
        self.doorbells: Doorbells  # this daemon's runners' (load())
        self.dispatcher: Dispatcher
        self.http: HttpChannel | None = None
        self.scheduler: Scheduler | None = None  # the main process's: the cluster's lease holder or not
        self.templates: TemplateEngine
        self.ready = False
        self.stopping = trio.Event()
        self._reload_lock = trio.Lock()
        self.http_stopped = trio.Event()
        self._http_scope = trio.CancelScope()
        self._state_version = -1.0
        self.tls_context: ssl.SSLContext | None = None  # [http] tls_cert: reloaded in place on SIGHUP
        self.extra_channels: list[tuple[str, Callable[..., Awaitable[None]]]] = []
        self.channels_up: dict[str, bool] = {}  # supervised channel -> serving now (/readyz)
        self.metrics = metrics.Metrics()  # the storage writer, dispatcher and channels report here
        self.refusals: RefusalLog | None = None  # refused requests kept for inspection (listening processes)

    @property
    def is_main(self) -> bool:
        return self.worker_index == 0 and self.runner_index == 0

    @property
    def state_version(self) -> float:
        """Changes whenever a source is activated, deactivated or rotated (CLI, admin API)."""
        return self._state_version

    # -- start-up -------------------------------------------------------------------------------

    def load(self) -> None:
        self.cfg, _ = load_checked(self.config_path)
        self.doorbells = Doorbells(db_path(self.cfg), main_pid(self.is_main))
        self.storage = open_storage(self.cfg)
        self.storage.on_commit = self.metrics.on_commit
        self.templates = TemplateEngine(RecordStore(self.storage, JournalDeletionSink()))
        # Compile again with the real template engine (lookups available) for the runner.
        _, self.workflows = load_checked(self.config_path, self.templates)

    async def main(self) -> int:
        try:
            self.load()
        except ConfigError as exc:
            for issue in exc.issues:
                log.error("config error", problem=str(issue))
            return EX_CONFIG
        except StorageError as exc:
            where = "database" if self.cfg.database.url else f"data dir {self.cfg.router.data_dir}"
            log.error("storage unavailable", where=where, error=str(exc).strip().replace("\n", " "))
            return EX_UNAVAILABLE
        cfg = self.cfg
        if cfg.http.tls_enabled and self.runner_index == 0:
            from router.ops import tls  # imports hypercorn: only where HTTP is served

            try:
                self.tls_context = tls.server_context(cfg.http)
            except (ssl.SSLError, OSError) as exc:
                log.error("config error", problem=f"[http] tls_cert / tls_key / tls_client_ca: {exc}")
                return EX_CONFIG
        try:  # runners have no listener; only the main process runs SMTP and admin
            http_sock = open_listeners(cfg, http=self.runner_index == 0, others=self.is_main)
        except ListenError as exc:
            log.error("cannot listen", error=str(exc))
            self.storage.close()
            return EX_UNAVAILABLE
        services = Services(
            db=self.storage,
            deletions=JournalDeletionSink(),
            smtp=cfg.outbound.smtp,
            twilio=cfg.twilio,
            http_factory=partial(httpx.AsyncClient, timeout=30.0),
            on_call=self.metrics.on_call,
            on_retry=self.metrics.on_retry,
        )
        try:
            engine = Engine(services, self.templates, default_timeout=cfg.router.run_timeout)
            # A listening process wakes the runners, which take the unattended work.
            doorbell = (
                Doorbell(self.doorbells, cfg.router.runners)
                if http_sock is not None and cfg.router.runners
                else None
            )
            self.dispatcher = Dispatcher(
                self.storage,
                engine,
                self.templates,
                self.workflows,
                cfg.router,
                dedup_window=cfg.http.idempotency_window,
                observer=self.metrics,
                hand_off=doorbell.ring if doorbell is not None else None,
            )
            if http_sock is not None:  # runners import no listener code (a smaller process)
                from hypercorn.trio import run as _hypercorn  # noqa: F401 - loaded before tune_gc() freezes the heap

                from channels.http.app import HttpChannel

                self.http = HttpChannel(
                    self.dispatcher,
                    build_routes(cfg, await self.source_states()),
                    cfg,
                    max_in_flight=cfg.http.max_in_flight,
                    ready=lambda: self.ready,
                    on_ack=self._remember_ack,
                    limits=node_rate_limits(create=self.is_main),
                    observer=self.metrics.http_observer(),
                )
                # Refusals are noted by the metrics' observers (HTTP and SMTP) and kept by this log.
                self.refusals = RefusalLog(self.storage, lambda: self.cfg.admin.refused_keep)
                self.metrics.refusals = self.refusals
            metrics.watch_gauges(self.metrics, self.storage, self.http)
            if self.is_main:
                self.extra_channels = self._extra_channels()
                if cfg.http.workers > 1 or cfg.router.runners > 0:
                    self.workers = WorkerPool(
                        self.config_path,
                        cfg.http.workers,
                        cfg.router.runners,
                        self.worker_args,
                        fork_server=self.fork_server,
                        pipe=self.lifeline,
                    )
            tune_gc()  # after every import this process needs
            try:
                async with trio.open_nursery() as nursery:
                    if self.fork_server is not None:
                        await nursery.start(self.fork_server.run)
                    await nursery.start(self.storage.run_writer)
                    await nursery.start(self.dispatcher.run)
                    if http_sock is not None:
                        await nursery.start(
                            partial(
                                supervise, "http", partial(self._serve_http, http_sock), up=self.channels_up
                            )
                        )
                        nursery.start_soon(self._watch_state)
                        if doorbell is not None:
                            nursery.start_soon(doorbell.run)
                        if self.refusals is not None:
                            nursery.start_soon(self.refusals.run)
                    else:
                        nursery.start_soon(
                            doorbell_listen, self.doorbells, self.runner_index, self.dispatcher.poke
                        )
                    for name, run in self.extra_channels:
                        await nursery.start(partial(supervise, name, run, up=self.channels_up))
                    if self.workers is not None:
                        await nursery.start(self.workers.run)
                        with trio.move_on_after(60) as waiting:
                            await wait_for_runners(self.doorbells, cfg.router.runners)
                        if waiting.cancelled_caught:
                            log.warning(
                                "runners not up after 60s; pending work waits for them in the journal"
                            )
                    nursery.start_soon(self._watchdog)
                    if self.is_main:
                        # PostgreSQL: other nodes' NOTIFYs ring this node's runners (SQLite: returns).
                        nursery.start_soon(self.storage.listen_for_work, self.dispatcher.poke)
                    else:
                        nursery.start_soon(die_with_parent)
                    self.ready = True
                    systemd.notify("READY=1\nSTATUS=serving")
                    role = (
                        {"http": cfg.http.listen} if http_sock is not None else {"runner": self.runner_index}
                    )
                    log.info("ready", **role, data_dir=cfg.router.data_dir, workflows=len(self.workflows))
                    await self._handle_signals()
                    await self._shutdown()
                    nursery.cancel_scope.cancel()
            finally:
                # Work this process still holds goes back to the journal for the next start.
                try:
                    self.storage.write_sync(lambda tx: tx.release(self.dispatcher.owner))
                except StorageError as exc:  # the database is away: the leases lapse instead
                    log.warning("release failed", error=str(exc))
                self.storage.close()
                if doorbell is not None:
                    doorbell.close()
        finally:
            if services.http is not None:
                with trio.CancelScope(shield=True):
                    await services.http.aclose()
        log.info("stopped")
        return 0

    async def spawn_child(self, kind: str, fds: tuple[int, ...]) -> ForkedProcess | None:
        """A child forked from the fork server (channels.smtp.server asks for its worker), or None
        when there is none: the caller starts a new interpreter then."""
        if self.fork_server is None:
            return None
        try:
            return await self.fork_server.spawn(
                kind,
                name=f"router-{kind}",
                fds=fds,
                unset_env=("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"),
            )
        except ForkServerGone:
            return None

    def _extra_channels(self) -> list[tuple[str, Callable[..., Awaitable[None]]]]:
        """Channels besides HTTP, each a supervised `run(task_status=...)` (one line per channel)."""
        channels: list[tuple[str, Callable[..., Awaitable[None]]]] = []
        from channels.smtp.server import SmtpHost, run_smtp
        from router.admin import run_admin
        from router.admin.core import AdminHost
        from router.schedules.scheduler import (
            Scheduler,  # the clock: reads self.cfg on every wake, so reloads apply
        )

        self.scheduler = Scheduler(self.storage, lambda: self.cfg, self.dispatcher.poke)
        channels.append(("schedules", self.scheduler.run))
        smtp_host: SmtpHost = self
        admin_host: AdminHost = self
        channels.append(("smtp", partial(run_smtp, smtp_host, self.dispatcher, self.metrics)))
        channels.append(
            ("admin", partial(run_admin, admin_host))
        )  # API, dashboard, /metrics on [admin] listen
        channels.append(("retention", self._run_retention))
        return channels

    async def _run_retention(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        from router.dispatch.retention import run_retention

        task_status.started()

        def keep() -> float:
            # Never shorter than the idempotency window: a repeat must still find its original answer.
            r = self.cfg.router.retention
            return max(r, self.cfg.http.idempotency_window) if r > 0 else 0.0

        # Only the holder of the scheduler lease prunes: one node of a cluster, not all of them at once.
        await run_retention(
            self.storage, keep, active=lambda: self.scheduler is not None and self.scheduler.leader
        )

    async def _serve_http(self, sock: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        from hypercorn.config import Config as HypercornConfig
        from hypercorn.config import Sockets
        from hypercorn.trio.run import worker_serve
        from hypercorn.utils import wrap_app

        from channels.http.app import MAX_HEAD

        assert self.http is not None
        if self.tls_context is None:
            hc = HypercornConfig()
        else:
            from router.ops.tls import TlsConfig

            hc = TlsConfig(self.tls_context)
        hc.bind = [self.cfg.http.listen]
        hc.accesslog = None
        hc.errorlog = logging.getLogger("hypercorn.error")
        # hypercorn's idle timer runs from the connection's start (or its last answer) until a
        # whole request head has arrived: the keep-alive timeout and the header-read (slowloris)
        # timeout in one.
        hc.keep_alive_timeout = self.cfg.http.idle_timeout
        hc.graceful_timeout = self.cfg.router.shutdown_timeout
        hc.h11_max_incomplete_size = MAX_HEAD  # the app applies it exactly (see channels.http.app)
        if self.tls_context is None:
            sockets = Sockets(secure_sockets=[], insecure_sockets=[sock], quic_sockets=[])
        else:
            sockets = Sockets(secure_sockets=[sock], insecure_sockets=[], quic_sockets=[])
        self._http_scope = trio.CancelScope()  # a fresh one per (re)start of the channel
        with self._http_scope:
            await worker_serve(
                wrap_app(self.http, None, "asgi"),  # type: ignore[arg-type]
                hc,
                sockets=sockets,
                shutdown_trigger=self.stopping.wait,
                task_status=task_status,
            )
        self.http_stopped.set()

    # -- running ----------------------------------------------------------------------------------

    async def _remember_ack(self, signal_id: str, ack: dict[str, Any]) -> None:
        await self.storage.write(lambda tx: tx.set_ack(signal_id, ack))

    async def source_states(self) -> dict[tuple[str, str], SourceState]:
        """Each source's credentials and activation, as the CLI and the admin API left them."""
        return await self.storage.aread(lambda tx: tx.source_states())  # PostgreSQL: off the loop

    async def refresh_routes(self) -> None:
        """Apply a source change to this process's HTTP routes now (`_watch_state` does it for
        the other processes within half a second)."""
        if self.http is not None:
            self.http.set_routes(build_routes(self.cfg, await self.source_states()))

    async def _watch_state(self) -> None:
        """CLI and admin changes (activate, rotate) reach the routes within half a second."""
        assert self.http is not None
        while True:
            try:
                version = await self.storage.aread(lambda tx: tx.sources_version())
                if version != self._state_version:
                    await self.refresh_routes()
                    self._state_version = version
            except StorageUnavailable:
                pass  # the database is away: the routes as they were until it is back
            await trio.sleep(0.5)

    async def _watchdog(self) -> None:
        interval = systemd.watchdog_interval()
        if interval is None:
            return
        while True:
            systemd.notify("WATCHDOG=1")
            await trio.sleep(interval)

    async def _handle_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    await self.reload()
                    if self.workers is not None:
                        self.workers.send(signal.SIGHUP)
                    continue
                log.info("shutdown", signal=signal.Signals(signum).name)
                return

    async def reload(self) -> list[str]:
        """Re-read the config; an invalid one is refused (every problem returned) and the old one
        keeps serving. SIGHUP and `POST /api/reload` take turns."""
        async with self._reload_lock:
            return await self._reload()

    async def _reload(self) -> list[str]:
        systemd.notify("RELOADING=1")
        try:
            cfg, workflows = load_checked(self.config_path, self.templates)
        except ConfigError as exc:
            for issue in exc.issues:
                self._reload_log(logging.ERROR, "reload refused: config error", problem=str(issue))
            systemd.notify("READY=1")
            return [str(i) for i in exc.issues]
        if cfg.http.listen != self.cfg.http.listen:
            self._reload_log(
                logging.WARNING, "reload: [http] listen changed; restart the daemon to move the listener"
            )
        if (cfg.http.workers, cfg.router.runners) != (self.cfg.http.workers, self.cfg.router.runners):
            self._reload_log(
                logging.WARNING,
                "reload: [http] workers / [router] runners changed; restart the daemon to apply it",
            )
        if cfg.admin.listen != self.cfg.admin.listen or cfg.admin.enabled != self.cfg.admin.enabled:
            self._reload_log(
                logging.WARNING, "reload: [admin] listen/enabled changed; restart the daemon to apply it"
            )
        # Through the group-commit writer: write_sync here would start a second transaction on the
        # writer's connection while a batch is open ("cannot start a transaction within a transaction").
        try:
            if self.is_main:
                await self.storage.write(lambda tx: sources.ensure_sources(tx, cfg))
        except StorageUnavailable as exc:
            self._reload_log(logging.ERROR, "reload refused", error=str(exc))
            systemd.notify("READY=1")
            return [f"the journal could not record the new sources: {exc}"]
        if self.tls_context is not None and cfg.http.tls_enabled:
            from router.ops import tls

            try:
                tls.load(self.tls_context, cfg.http)  # new handshakes get the renewed certificate
            except (ssl.SSLError, OSError) as exc:
                self._reload_log(logging.ERROR, "reload refused", error=f"[http] TLS files: {exc}")
                systemd.notify("READY=1")
                return [f"[http] tls_cert / tls_key / tls_client_ca: {exc}"]
        if cfg.http.tls_enabled != (self.tls_context is not None):
            self._reload_log(
                logging.WARNING, "reload: [http] TLS switched on or off; restart the daemon to apply it"
            )
        routes = build_routes(cfg, await self.source_states())
        self.cfg = cfg
        self.dispatcher.workflows = workflows
        if self.http is not None:
            self.http.set_routes(routes)
            self.http.set_config(cfg)
        self.workflows = workflows
        systemd.notify("READY=1")
        self._reload_log(logging.INFO, "reloaded", workflows=len(workflows), sources=len(cfg.sources()))
        return []

    def _reload_log(self, level: int, event: str, **fields: Any) -> None:
        """The main process speaks for the daemon; its children (which reload on the SIGHUP it
        forwards) say the same at debug, so one reload is one set of lines."""
        log.log(level if self.is_main else logging.DEBUG, event, **fields)

    async def _http_quiet(self) -> None:
        """Wait until no request is in flight, then close what is left (idle keep-alive
        connections would otherwise hold hypercorn's graceful shutdown for its whole timeout)."""
        assert self.http is not None
        quiet_since: float | None = None
        while not self.http_stopped.is_set():
            if self.http.in_flight == 0:
                quiet_since = quiet_since or trio.current_time()
                if trio.current_time() - quiet_since >= 0.2:
                    self._http_scope.cancel()
                    return
            else:
                quiet_since = None
            await trio.sleep(0.05)

    async def _shutdown(self) -> None:
        systemd.notify("STOPPING=1")
        self.ready = False
        timeout = self.cfg.router.shutdown_timeout
        deadline = trio.current_time() + timeout
        if self.http is not None:
            self.http.draining = True
        self.stopping.set()  # listeners stop accepting; in-flight requests finish
        if self.workers is not None:
            await self.workers.stop(grace=timeout)
        if self.http is not None:
            with trio.move_on_at(deadline):
                await self._http_quiet()
        with trio.move_on_at(deadline) as draining:
            await self.dispatcher.drain()
        if draining.cancelled_caught:
            log.warning("shutdown timeout: unfinished runs stay in the journal for the next start")
        self.storage.stop_writer()


def serve(
    config_path: Path, *, worker_index: int = 0, runner_index: int = 0, worker_args: list[str] | None = None
) -> int:
    if runner_index == 0:  # runners hold no connections
        fds = raise_fd_limit()
        log.info("open files", limit=fds)
    daemon = Daemon(
        config_path, worker_index=worker_index, runner_index=runner_index, worker_args=worker_args
    )
    if daemon.is_main:
        preload()
        daemon.lifeline = lifeline()
        daemon.fork_server = ForkServer.start(
            {
                "runner": partial(_forked_daemon, config_path),
                "worker": partial(_forked_daemon, config_path),
                "smtp": _forked_smtp_worker,
            },
            prepare={"smtp": _smtp_imports},
            close_in_server=(daemon.lifeline[1],),
        )
    return trio.run(daemon.main)


def preload() -> None:
    """What the main process imports before it forks the fork server: everything an HTTP worker or
    a runner runs (the main process serves HTTP too), so that the children share it."""
    from hypercorn.config import Config as _HypercornConfig  # noqa: F401
    from hypercorn.trio.run import worker_serve as _worker_serve  # noqa: F401
    from hypercorn.utils import wrap_app as _wrap_app  # noqa: F401

    from channels.http import forms as _forms  # noqa: F401
    from channels.http import twilio as _twilio  # noqa: F401
    from channels.http.app import HttpChannel as _HttpChannel  # noqa: F401


def _forked_daemon(config_path: Path, request: dict[str, Any], fds: list[int]) -> int:
    """In a child of the fork server: an HTTP worker or a runner, as `serve --worker/--runner N`."""
    _quiet_stdin()
    kind, index = request["kind"], int(request["index"])
    return serve(
        config_path,
        worker_index=index if kind == "worker" else 0,
        runner_index=index if kind == "runner" else 0,
    )


def _smtp_imports() -> None:
    import channels.smtp.worker  # noqa: F401 - asyncio and aiosmtpd: the SMTP worker's alone


def _forked_smtp_worker(request: dict[str, Any], fds: list[int]) -> int:
    from channels.smtp.worker import main as smtp_worker

    _quiet_stdin()
    return smtp_worker([str(fds[0]), str(fds[1])])


def _quiet_stdin() -> None:
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
