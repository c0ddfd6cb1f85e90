"""The SMTP channel, daemon side: the seam between the SMTP worker (asyncio) and trio.

    SMTP worker process (asyncio, channels/smtp/worker.py)     daemon (trio, this module)
    ───────────────────────────────────────────────────────     ──────────────────────────
    aiosmtpd dialogue, DATA, MIME parse, attachments fsynced
    "deliver" frame (one entity per mailbox)  ── socketpair ──►  SmtpBridge: intake.submit()
                                                                 per entity; returns once
    250 / 451 / 421 to the client            ◄── "result" ────   journaled (or why not)

`SmtpBridge` is the only place the two worlds meet. The daemon binds `[smtp] listen` itself (so
the port is listening when the channel reports started), hands the socket to the worker, pushes
`[smtp]` and the mailbox table (re-sent on SIGHUP reloads and on (de)activation), and restarts
the worker through the daemon's supervisor if it dies. Why a process and not a thread: with
aiosmtpd on a thread of the daemon, a flood of 5 MB mails took HTTP p99 from ~20 ms to ~400 ms
and the daemon's GIL capped SMTP at ~390 msgs/s (tests/bench/smtp.py; aiosmtpd#293).
"""

from __future__ import annotations

import errno
import logging
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import structlog
import trio

from channels.intake import Intake, JournalUnavailable, Overloaded, Submission
from channels.smtp.ipc import FrameReader, pack
from channels.smtp.protocol import limits_from
from config import Config
from engine.entity import Entity

log = structlog.get_logger("router.smtp")

REFRESH_INTERVAL = 0.5
READY_TIMEOUT = 30.0
BIND_RETRY = 5.0  # a previous worker may still hold the port for a moment after a crash


async def deliver(intake: Intake, batch: list[Entity], key: str | None) -> list[Submission | BaseException]:
    """Journal one message's signals (one per mailbox) concurrently; each one's outcome."""
    results: list[Submission | BaseException] = [RuntimeError("not submitted")] * len(batch)
    if len(batch) == 1:  # one mailbox, the common case: no nursery and task per message
        try:
            results[0] = await intake.submit(batch[0], dedup_key=key)
        except Exception as exc:  # noqa: BLE001 - reported per mailbox
            results[0] = exc
        return results

    async def one(i: int, entity: Entity) -> None:
        try:
            results[i] = await intake.submit(entity, dedup_key=key)
        except Exception as exc:  # noqa: BLE001 - reported per mailbox
            results[i] = exc

    async with trio.open_nursery() as nursery:
        for i, entity in enumerate(batch):
            nursery.start_soon(one, i, entity)
    return results


def _result(outcome: Submission | BaseException) -> dict[str, Any]:
    if isinstance(outcome, Submission):
        return {"ok": True, "signal_id": outcome.signal_id, "duplicate": outcome.duplicate}
    if isinstance(outcome, Overloaded):
        return {"ok": False, "error": "overloaded"}
    if isinstance(outcome, JournalUnavailable):
        return {"ok": False, "error": "journal"}
    return {"ok": False, "error": "internal"}


class SmtpBridge:
    """THE asyncio → trio seam, over the socketpair to the worker process."""

    def __init__(self, stream: trio.SocketStream, intake: Intake) -> None:
        self.stream = stream
        self.intake = intake
        self.ready = trio.Event()
        self.closed = trio.Event()
        self._outbox: list[bytes] = []
        self._wake = trio.Event()
        self.on_sessions: Callable[[int], None] | None = None  # open SMTP sessions, for metrics
        self.on_refused: Callable[[str], None] | None = None  # a refused command's reason, for metrics
        # The same with what the worker told of it (command, peer, rcpt, answer): kept for inspection.
        self.on_refusal: Callable[[str, dict[str, str]], None] | None = None

    def send(self, message: dict[str, Any]) -> None:
        self._outbox.append(pack(message))
        self._wake.set()

    async def serve(self) -> None:
        """Until the worker's end closes: read frames, journal deliveries, write results."""
        frames = FrameReader()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer)
                while True:
                    try:
                        data = await self.stream.receive_some(1 << 20)
                    except trio.BrokenResourceError:
                        data = b""
                    if not data:
                        break
                    for message in frames.feed(data):
                        kind = message.get("t")
                        if kind == "deliver":
                            nursery.start_soon(self._deliver, message)
                        elif kind == "log":
                            fields = message.get("fields") or {}
                            structlog.get_logger(str(message.get("logger", "router.smtp"))).log(
                                int(message.get("level", logging.INFO)),
                                str(message.get("msg", "")),
                                **{str(k): v for k, v in fields.items() if str(k) != "event"},
                            )
                        elif kind == "ready":
                            self.ready.set()
                        elif kind == "sessions" and self.on_sessions is not None:
                            self.on_sessions(int(message.get("n", 0)))
                        elif kind == "refused":
                            reason = str(message.get("reason", "unknown"))[:40]
                            if self.on_refused is not None:
                                self.on_refused(reason)
                            detail = message.get("detail")
                            if self.on_refusal is not None and isinstance(detail, dict):
                                self.on_refusal(reason, {str(k): str(v) for k, v in detail.items()})
                nursery.cancel_scope.cancel()
        finally:
            self.closed.set()
            if self.on_sessions is not None:
                self.on_sessions(0)  # the worker is gone and its sessions with it

    async def _writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            data, self._outbox = b"".join(self._outbox), []
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return

    async def _deliver(self, message: dict[str, Any]) -> None:
        batch = [
            Entity(e["channel"], e["source"], e["data"], id=e["id"], received_at=e["received_at"])
            for e in message["batch"]
        ]
        key = message["batch"][0].get("dedup_key") if message["batch"] else None
        outcomes = await deliver(self.intake, batch, key)
        info = message.get("info", {})
        for entity, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Submission):
                # At debug, like accepted HTTP requests and done runs: the journal keeps every
                # signal, and at ~1,000 msgs/s this line was the largest cost of the SMTP path.
                log.debug(
                    "smtp accepted",
                    source=entity.source,
                    signal_id=outcome.signal_id,
                    duplicate=outcome.duplicate,
                    mail_from=info.get("from"),
                    size=info.get("size"),
                    peer=info.get("peer"),
                )
            elif isinstance(outcome, (Overloaded, JournalUnavailable)):
                log.warning(
                    "smtp not accepted", source=entity.source, reason=str(outcome), peer=info.get("peer")
                )
            else:
                log.error("smtp delivery failed", source=entity.source, exc_info=outcome)
        self.send({"t": "result", "n": message["n"], "results": [_result(o) for o in outcomes]})


class SourceActivation(Protocol):
    """A source's activation as the CLI / admin API set it (None: as the config says)."""

    @property
    def active_override(self) -> bool | None: ...


class SmtpHost(Protocol):
    """What the SMTP channel uses of the process that runs it (router/daemon.py's `Daemon`)."""

    @property
    def cfg(self) -> Config:
        """The config now: replaced on SIGHUP reloads."""
        ...

    @property
    def stopping(self) -> trio.Event:
        """Set on SIGTERM."""
        ...

    @property
    def state_version(self) -> float:
        """Changes whenever a source is activated, deactivated or rotated."""
        ...

    async def source_states(self) -> Mapping[tuple[str, str], SourceActivation]: ...


class SmtpObserver(Protocol):
    """Metrics (router/ops/metrics.py): what the worker reports over its link."""

    def smtp_sessions_open(self, sessions: int) -> None: ...

    def smtp_refused(self, reason: str) -> None: ...

    def smtp_refusal(self, reason: str, detail: Mapping[str, str]) -> None:
        """The same refusal with what the worker told of it (command, peer, rcpt, answer)."""


def config_message(cfg: Config, states: Mapping[tuple[str, str], SourceActivation]) -> dict[str, Any]:
    """`[smtp]` and the mailbox table (activation overrides applied) for the worker."""
    mailboxes = []
    for name, model in cfg.mailboxes.items():
        state = states.get(("mailboxes", name))
        override = state.active_override if state is not None else None
        active = bool(model.active) if override is None else bool(override)
        mailboxes.append({"name": name, "address": list(model.address), "active": active})
    return {
        "t": "config",
        "smtp": cfg.smtp.model_dump(mode="json"),
        "mailboxes": mailboxes,
        "files_dir": str(Path(cfg.router.data_dir) / "files"),
        "log_level": logging.getLogger().getEffectiveLevel(),
    }


async def _first(*events: trio.Event) -> None:
    """Return as soon as one of `events` is set."""
    async with trio.open_nursery() as nursery:
        for event in events:

            async def wait(e: trio.Event = event) -> None:
                await e.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(wait)


async def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    deadline = trio.current_time() + BIND_RETRY
    while True:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(1024)
            return sock
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE or trio.current_time() > deadline:
                raise
            await trio.sleep(0.1)


async def run_smtp(
    host: SmtpHost,
    intake: Intake,
    observer: SmtpObserver | None = None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The daemon's supervised SMTP channel: delivered mail goes to `intake`."""
    cfg = host.cfg
    if not cfg.smtp.enabled:
        task_status.started()
        await host.stopping.wait()
        return
    limits_from(cfg.smtp)  # unreadable TLS files fail here, with the daemon's own error
    listener = await _bind(cfg.smtp.host, cfg.smtp.port)
    ours, theirs = socket.socketpair()
    try:
        # Forked from the daemon's fork server when it has one (the loaded code shared), else a new interpreter.
        spawn = getattr(host, "spawn_child", None)
        proc = await spawn("smtp", (listener.fileno(), theirs.fileno())) if spawn is not None else None
        if proc is None:
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "channels.smtp.worker", str(listener.fileno()), str(theirs.fileno())],
                pass_fds=(listener.fileno(), theirs.fileno()),
                stdin=subprocess.DEVNULL,
            )
    finally:
        listener.close()
        theirs.close()
    bridge = SmtpBridge(trio.SocketStream(trio.socket.from_stdlib_socket(ours)), intake)
    if observer is not None:
        bridge.on_sessions = observer.smtp_sessions_open
        bridge.on_refused = observer.smtp_refused
        bridge.on_refusal = observer.smtp_refusal
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(bridge.serve)
            last = config_message(cfg, await host.source_states())
            seen_cfg, seen_version = cfg, host.state_version
            bridge.send(last)
            with trio.move_on_after(READY_TIMEOUT):
                await _first(bridge.ready, bridge.closed)
            if bridge.ready.is_set():
                log.info(
                    "smtp listening",
                    listen=cfg.smtp.listen,
                    mailboxes=len(cfg.mailboxes),
                    worker_pid=proc.pid,
                )
                task_status.started()
            while bridge.ready.is_set() and not host.stopping.is_set() and not bridge.closed.is_set():
                with trio.move_on_after(REFRESH_INTERVAL):
                    await host.stopping.wait()
                if host.cfg.smtp.listen != cfg.smtp.listen and host.cfg is not cfg:
                    log.warning("reload: [smtp] listen changed; restart the daemon to move the listener")
                cfg = host.cfg
                # Rebuilding the mailbox table costs ~20 ms with 10,000 sources: only on a change.
                version = host.state_version
                if cfg is seen_cfg and version == seen_version:
                    continue
                seen_cfg, seen_version = cfg, version
                current = config_message(cfg, await host.source_states())
                if current != last:
                    bridge.send(current)
                    last = current
            if host.stopping.is_set() and not bridge.closed.is_set():
                bridge.send({"t": "stop"})
                with trio.move_on_after(10):
                    await proc.wait()
            nursery.cancel_scope.cancel()
        if not bridge.ready.is_set():
            raise RuntimeError(f"smtp worker did not start listening (pid {proc.pid}, status {proc.poll()})")
        if not host.stopping.is_set():
            raise RuntimeError(f"smtp worker exited (pid {proc.pid}, status {proc.poll()})")
    finally:
        with trio.CancelScope(shield=True):
            if proc.poll() is None:
                proc.kill()
            await proc.wait()
