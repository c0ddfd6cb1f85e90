"""The SMTP channel: aiosmtpd on its own thread and asyncio loop, bridged to the trio daemon.

Threads and loops:

    SMTP thread (asyncio)                         daemon thread (trio)
    ─────────────────────                         ────────────────────
    RouterSMTP reads a message, MailHandler
    parses it (large ones on a small pool) ──►  TrioSeam ──► deliver(): intake.submit() per
                                                              mailbox, returns once journaled
    250 / 451 / 421 to the client         ◄──  TrioSeam ◄──

`TrioSeam` is the only place the two worlds meet. Both directions are non-blocking hand-offs
(`TrioToken.run_sync_soon` into trio, `loop.call_soon_threadsafe` back), so neither loop ever
blocks on the other and no thread is parked per message. `250` is sent only after every
mailbox's signal is durably in the journal; if the journal cannot write, `451` (the sender keeps
the message and retries; nothing is lost). A repeat Message-ID to a mailbox is acknowledged but
not run again; a message without one is deduplicated on its content hash, so a retry after a
partial failure never runs twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import trio

from channels.intake import Intake, JournalUnavailable, Overloaded, Submission
from channels.smtp.auth import Authenticator
from channels.smtp.mailboxes import MailboxTable
from channels.smtp.mime import parse_email
from channels.smtp.protocol import Busy, Connections, Limits, RoutedEnvelope, RouterSMTP
from engine.entity import Entity, utcnow_iso

log = logging.getLogger("router.smtp")

T = TypeVar("T")

PARSE_INLINE_MAX = 256 * 1024  # larger messages are parsed on the pool, off the SMTP loop
REFRESH_INTERVAL = 0.5


class SeamClosed(Exception):
    """The trio side is gone (daemon stopping): nothing was accepted."""


class TrioSeam:
    """THE asyncio → trio seam: run `afn(*args)` in the daemon's trio run from the SMTP loop.

    `call` is awaited on the asyncio loop; `afn` runs as a task in the SMTP channel's trio nursery
    and its result (or exception) comes back through `call_soon_threadsafe`. If the asyncio side
    stops waiting (client gone), the trio task still finishes: a journal write never half-happens.
    """

    def __init__(self, token: trio.lowlevel.TrioToken, nursery: trio.Nursery) -> None:
        self.token = token
        self.nursery = nursery

    async def call(self, afn: Callable[..., Awaitable[T]], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[bool, Any]] = loop.create_future()

        def resolve(ok: bool, value: Any) -> None:  # on the asyncio loop
            if not future.done():
                future.set_result((ok, value))

        def back(ok: bool, value: Any) -> None:  # from the trio thread
            try:
                loop.call_soon_threadsafe(resolve, ok, value)
            except RuntimeError:
                pass  # the SMTP loop is closed: nobody is waiting any more

        async def in_trio() -> None:
            try:
                value = await afn(*args)
            except trio.Cancelled:
                back(False, SeamClosed("daemon stopping"))
                raise
            except Exception as exc:  # noqa: BLE001 - handed to the asyncio side
                back(False, exc)
            else:
                back(True, value)

        def spawn() -> None:  # runs on the trio thread
            try:
                self.nursery.start_soon(in_trio)
            except RuntimeError:
                back(False, SeamClosed("daemon stopping"))

        try:
            self.token.run_sync_soon(spawn)
        except trio.RunFinishedError as exc:
            raise SeamClosed("daemon stopped") from exc
        ok, value = await future
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]


async def deliver(intake: Intake, batch: list[tuple[Entity, str | None]]) -> list[Submission | BaseException]:
    """Trio side: journal one message's signals (one per mailbox) concurrently; each outcome."""
    results: list[Submission | BaseException] = [SeamClosed("not submitted")] * len(batch)

    async def one(i: int, entity: Entity, key: str | None) -> None:
        try:
            results[i] = await intake.submit(entity, dedup_key=key)
        except Exception as exc:  # noqa: BLE001 - reported per mailbox
            results[i] = exc

    async with trio.open_nursery() as nursery:
        for i, (entity, key) in enumerate(batch):
            nursery.start_soon(one, i, entity, key)
    return results


class MailHandler:
    """aiosmtpd hooks: recipients against mailboxes, then the message into the journal."""

    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's naming
        self, smtp: RouterSMTP, session: Any, envelope: RoutedEnvelope, address: str, rcpt_options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= smtp.limits.max_recipients:
            return f"452 4.5.3 Error: too many recipients (at most {smtp.limits.max_recipients})"
        found = self.server.mailboxes.resolve(address)
        if not found.accepted:
            if found.inactive:
                return f"550 5.2.1 <{address}>: Recipient address rejected: mailbox disabled"
            if found.local_domain:
                return f"550 5.1.1 <{address}>: Recipient address rejected: no such mailbox"
            return f"550 5.7.1 <{address}>: Relay access denied"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        for name in found.mailboxes:
            envelope.mailboxes.setdefault(name, []).append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, smtp: RouterSMTP, session: Any, envelope: RoutedEnvelope) -> str:  # noqa: N802
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        received_at = utcnow_iso()
        peer = session.peer[0] if isinstance(session.peer, tuple) and session.peer else str(session.peer or "")
        try:
            email = await self.server.parse(raw, received_at)
        except OSError as exc:
            log.error("smtp cannot store attachments: %s", exc)
            return "451 4.3.0 Error: cannot store the message right now, try again later"
        except Exception:
            log.exception("smtp message parsing failed peer=%s", peer)
            return "451 4.3.0 Error: local error in processing"
        key = email["message_id"] or f"sha256:{hashlib.sha256(raw).hexdigest()}"
        envelope_info = {
            "mail_from": envelope.mail_from or "",
            "helo": session.host_name or "",
            "remote_addr": peer,
            "tls": session.ssl is not None,
            "authenticated_as": session.auth_data if session.authenticated else None,
        }
        batch: list[tuple[Entity, str | None]] = []
        for name, rcpts in envelope.mailboxes.items():
            data = {
                "incoming_email": {**email, "envelope": {**envelope_info, "rcpt_to": rcpts}},
                "__remote_addr": peer,
            }
            batch.append((Entity("mailboxes", f"mailboxes.{name}", data, received_at=received_at), key[:256]))
        try:
            results = await self.server.seam_call(deliver, batch)
        except SeamClosed:
            return "421 4.3.2 Service shutting down, try again later"
        return self._status(results, batch, email, peer)

    def _status(
        self, results: list[Submission | BaseException], batch: list[tuple[Entity, str | None]],
        email: dict[str, Any], peer: str,
    ) -> str:
        failures = [r for r in results if isinstance(r, BaseException)]
        for (entity, _), result in zip(batch, results, strict=True):
            if isinstance(result, Submission):
                log.info(
                    "smtp accepted source=%s signal_id=%s%s from=%s size=%d peer=%s", entity.source,
                    result.signal_id, " duplicate=true" if result.duplicate else "", email["from_email"],
                    email["size"], peer,
                )
        if not failures:
            ids = [r.signal_id for r in results if isinstance(r, Submission)]
            return f"250 2.0.0 OK: queued as {ids[0]}" if len(ids) == 1 else f"250 2.0.0 OK: queued as {' '.join(ids)}"
        if any(isinstance(f, SeamClosed) for f in failures):
            return "421 4.3.2 Service shutting down, try again later"
        if all(isinstance(f, Overloaded) for f in failures):
            return "451 4.3.2 Error: too busy, try again later"
        for failure in failures:
            if not isinstance(failure, (Overloaded, JournalUnavailable)):
                log.error("smtp delivery failed peer=%s", peer, exc_info=failure)
            else:
                log.warning("smtp not accepted peer=%s: %s", peer, failure)
        return "451 4.3.0 Error: message not accepted (journal unavailable), try again later"


class SmtpServer:
    """The SMTP thread: its own asyncio loop running one listening server."""

    def __init__(self, host: str, port: int, seam: TrioSeam, intake: Intake, files_dir: Path) -> None:
        self.host = host
        self.port = port
        self.seam = seam
        self.intake = intake
        self.files_dir = files_dir
        self.limits = Limits()
        self.mailboxes = MailboxTable()
        self.connections = Connections()
        self.handler = MailHandler(self)
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="smtp-parse")
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    async def seam_call(self, afn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return await self.seam.call(afn, self.intake, *args)

    async def parse(self, raw: bytes, received_at: str) -> dict[str, Any]:
        job = partial(parse_email, raw, files_dir=self.files_dir, received_at=received_at)
        # Small single-part mail is parsed right here; anything that may carry attachments
        # (fsynced files) or is large goes to the pool so the SMTP loop keeps serving others.
        if len(raw) <= PARSE_INLINE_MAX and b"multipart/" not in raw[:16384].lower():
            return job()
        return await asyncio.get_running_loop().run_in_executor(self.pool, job)

    def _protocol(self) -> asyncio.Protocol:
        limits = self.limits
        if len(self.connections.open) >= limits.max_connections:
            log.warning("smtp connection refused: %d connections open", len(self.connections.open))
            return Busy(limits.hostname)
        return RouterSMTP(self.handler, limits, self.connections)

    # -- lifecycle (blocking; call from a worker thread) -------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="smtp-loop", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        try:
            self._server = loop.run_until_complete(
                loop.create_server(self._protocol, self.host, self.port, reuse_address=True, backlog=1024)
            )
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self, timeout: float = 5.0) -> None:
        loop = self.loop
        if loop is None or self._thread is None or loop.is_closed():
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for conn in list(self.connections.open):
                conn.close_for_shutdown()
            await asyncio.sleep(0.05)
            loop.stop()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop)
        except RuntimeError:
            pass
        self._thread.join(timeout)
        self.pool.shutdown(wait=False, cancel_futures=True)


def limits_from(smtp: Any) -> Limits:
    """`[smtp]` (config.settings.SmtpSettings) → the per-connection `Limits`."""
    tls: ssl.SSLContext | None = None
    if smtp.tls_cert is not None and smtp.tls_key is not None:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(str(smtp.tls_cert), str(smtp.tls_key))
    return Limits(
        hostname=smtp.hostname,
        max_message_size=int(smtp.max_message_size),
        max_recipients=smtp.max_recipients,
        command_timeout=float(smtp.command_timeout),
        data_timeout=float(smtp.data_timeout),
        max_connections=smtp.max_connections,
        tls_context=tls,
        require_tls=smtp.require_tls and tls is not None,
        auth_required=smtp.auth_required,
        authenticator=Authenticator(smtp.users) if smtp.users else None,
    )


async def run_smtp(host: Any, load_states: Callable[[], dict[tuple[str, str], Any]], *,
                   task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """The daemon's supervised SMTP channel.

    `host` is the daemon: `cfg` (re-read after SIGHUP), `dispatcher` (the Intake) and `stopping`
    (set on SIGTERM). `load_states()` returns the sources' activation state (CLI / admin API).
    """
    cfg = host.cfg
    if not cfg.smtp.enabled:
        task_status.started()
        await host.stopping.wait()
        return
    async with trio.open_nursery() as nursery:
        seam = TrioSeam(trio.lowlevel.current_trio_token(), nursery)
        server = SmtpServer(cfg.smtp.host, cfg.smtp.port, seam, host.dispatcher, Path(cfg.router.data_dir) / "files")
        server.limits = limits_from(cfg.smtp)
        server.mailboxes = _mailbox_table(cfg, load_states())
        await trio.to_thread.run_sync(server.start)
        log.info("smtp listening on %s mailboxes=%d", cfg.smtp.listen, len(cfg.mailboxes))
        task_status.started()
        try:
            await _refresh(host, server, load_states, cfg)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(server.stop)
            nursery.cancel_scope.cancel()


async def _refresh(host: Any, server: SmtpServer, load_states: Callable[[], Any], cfg: Any) -> None:
    """Until the daemon stops: pick up reloads and (de)activations within half a second."""
    while not host.stopping.is_set():
        with trio.move_on_after(REFRESH_INTERVAL):
            await host.stopping.wait()
        if host.cfg is not cfg:
            if host.cfg.smtp.listen != cfg.smtp.listen:
                log.warning("reload: [smtp] listen changed; restart the daemon to move the listener")
            cfg = host.cfg
            try:
                server.limits = limits_from(cfg.smtp)
            except (OSError, ssl.SSLError) as exc:
                log.error("reload: [smtp] TLS files unusable, keeping the previous ones: %s", exc)
        server.mailboxes = _mailbox_table(cfg, load_states())


def _mailbox_table(cfg: Any, states: dict[tuple[str, str], Any]) -> MailboxTable:
    overrides = {
        name: bool(state.active_override)
        for (kind, name), state in states.items()
        if kind == "mailboxes" and getattr(state, "active_override", None) is not None
    }
    return MailboxTable.build(cfg.mailboxes, overrides)
