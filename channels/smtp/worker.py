"""The SMTP worker process: aiosmtpd on its own asyncio loop, in a process of its own.

    python -m channels.smtp.worker LISTEN_FD LINK_FD     (started by channels.smtp.server)

Everything that costs CPU per byte of mail runs here: the SMTP dialogue, reading DATA, MIME
parsing, hashing and fsyncing attachments. A flood of large messages therefore competes with
the daemon's HTTP listener for a core, not for its GIL (aiosmtpd#293; measured in
tests/bench/smtp.py). The daemon binds the listening socket and hands it over, then answers
`deliver` frames on the link once the signals are journaled; only then does a client get `250`.
If the link breaks (daemon gone), waiting clients get `421` and this process exits.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import structlog

from channels.smtp.ipc import FrameReader, pack
from channels.smtp.mailboxes import MailboxTable
from channels.smtp.mime import parse_email
from channels.smtp.protocol import Busy, Connections, Limits, RoutedEnvelope, RouterSMTP, limits_from
from engine.entity import Entity, utcnow_iso

log = structlog.get_logger("router.smtp")

PARSE_INLINE_MAX = 256 * 1024  # larger messages are parsed on the pool, off the SMTP loop
STOP_GRACE = 5.0  # on stop, how long deliveries already handed to the daemon may take
WORKER_NICE = 5  # below the daemon's listener when both want the CPU (see main)


class LinkClosed(Exception):
    """The daemon is gone or stopping: nothing more can be acknowledged."""


class Link:
    """This side of the socketpair to the daemon."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pending: dict[int, asyncio.Future[list[dict[str, Any]]]] = {}
        self.seq = 0
        self.closed = False
        self._out: list[bytes] = []
        self._sessions: int | None = None  # the open-session count to report with the next write
        self._flushing = False
        self.loop = asyncio.get_running_loop()

    def send(self, message: dict[str, Any]) -> None:
        """Queue a frame; frames queued in one loop iteration leave in one write."""
        if self.closed:
            return
        self._schedule()
        self._out.append(pack(message))

    def sessions(self, count: int) -> None:
        """Report the open-session count: only the last of one loop iteration's counts is sent
        (a connection per message changes it twice per message)."""
        if self.closed:
            return
        self._schedule()
        self._sessions = count

    def _schedule(self) -> None:
        if not self._flushing:
            self._flushing = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        if self._sessions is not None:
            self._out.append(pack({"t": "sessions", "n": self._sessions}))
            self._sessions = None
        if self._out and not self.closed:
            self.writer.write(b"".join(self._out))
        self._out.clear()

    async def deliver(self, batch: list[dict[str, Any]], info: dict[str, Any]) -> list[dict[str, Any]]:
        if self.closed:
            raise LinkClosed()
        self.seq += 1
        n = self.seq
        future: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self.pending[n] = future
        self.send({"t": "deliver", "n": n, "batch": batch, "info": info})
        try:
            return await future
        finally:
            self.pending.pop(n, None)

    def resolve(self, message: dict[str, Any]) -> None:
        future = self.pending.pop(message["n"], None)
        if future is not None and not future.done():
            future.set_result(message["results"])

    def close(self) -> None:
        self.closed = True
        for future in self.pending.values():
            if not future.done():
                future.set_exception(LinkClosed())
        self.pending.clear()


class LinkLogHandler(logging.Handler):
    """Log records go to the daemon, which writes them with its own format and level."""

    def __init__(self, link: Link, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.link = link
        self.loop = loop
        self.loop_thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        message: dict[str, Any] = {"t": "log", "level": record.levelno, "logger": record.name}
        if isinstance(record.msg, dict):  # from structlog: the event and its fields, kept apart
            fields = {k: v for k, v in record.msg.items() if not k.startswith("_") or k == "_throttle"}
            message["msg"] = str(fields.pop("event", ""))
            message["fields"] = fields
        else:
            message["msg"] = record.getMessage()
            if record.exc_info:
                message["fields"] = {"exc": logging.Formatter().formatException(record.exc_info)}
        if threading.get_ident() == self.loop_thread:
            self.link.send(message)
        else:
            self.loop.call_soon_threadsafe(self.link.send, message)


class Worker:
    def __init__(self, link: Link) -> None:
        self.link = link
        self.limits = Limits()
        self.mailboxes = MailboxTable()
        self.files_dir: Path | None = None
        self.connections = Connections(on_change=link.sessions)
        self.handler = MailHandler(self)
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="smtp-parse")

    def configure(self, message: dict[str, Any]) -> None:
        try:
            self.limits = limits_from(SimpleNamespace(**message["smtp"]))
        except (OSError, ValueError) as exc:
            log.error("smtp config not applied, keeping the previous one", error=str(exc))
        boxes = {
            m["name"]: SimpleNamespace(address=m["address"], active=m["active"]) for m in message["mailboxes"]
        }
        self.mailboxes = MailboxTable.build(boxes)
        self.files_dir = Path(message["files_dir"])
        logging.getLogger().setLevel(message.get("log_level", logging.INFO))

    def refused(self, reason: str, **detail: Any) -> None:
        """Tell the main process (it keeps the metrics and the refused requests): a command
        refused, and why; `detail` (command, peer, rcpt, mail_from, answer) when there is one."""
        message: dict[str, Any] = {"t": "refused", "reason": reason}
        if detail:
            message["detail"] = {k: str(v)[:512] for k, v in detail.items() if v is not None}
        self.link.send(message)

    def protocol(self) -> asyncio.Protocol:
        limits = self.limits
        if len(self.connections.open) >= limits.max_connections:
            log.warning(
                "smtp connection refused",
                open=len(self.connections.open),
                limit=limits.max_connections,
                _throttle=("smtp", "connection", "max_connections"),
            )
            self.refused("too_many_connections")
            return Busy(limits.hostname)
        return RouterSMTP(self.handler, limits, self.connections)

    async def parse(self, raw: bytes, received_at: str) -> dict[str, Any]:
        job = partial(parse_email, raw, files_dir=self.files_dir, received_at=received_at)
        # Small single-part mail is parsed right here; anything that may carry attachments
        # (fsynced files) or is large goes to the pool so the loop keeps serving the others.
        if len(raw) <= PARSE_INLINE_MAX and b"multipart/" not in raw[:16384].lower():
            return job()
        return await asyncio.get_running_loop().run_in_executor(self.pool, job)


class MailHandler:
    """aiosmtpd hooks: recipients against mailboxes, then the message to the daemon's journal."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def handle_RCPT(  # aiosmtpd's naming
        self, smtp: RouterSMTP, session: Any, envelope: RoutedEnvelope, address: str, rcpt_options: list[str]
    ) -> str:
        def refuse(reason: str, answer: str) -> str:
            self.worker.refused(
                reason,
                command="RCPT",
                peer=_peer(session),
                rcpt=address,
                mail_from=envelope.mail_from,
                answer=answer,
            )
            return answer

        if len(envelope.rcpt_tos) >= smtp.limits.max_recipients:
            return refuse(
                "too_many_recipients",
                f"452 4.5.3 Error: too many recipients (at most {smtp.limits.max_recipients})",
            )
        if smtp.last_routing is not None:
            # Even where a catch-all would take the local part: this is how relays get abused.
            _refused_rcpt(address, "routing", _peer(session))
            return refuse(
                "relay",
                f"553 5.7.1 <{address}>: Recipient address rejected: {smtp.last_routing} is not "
                "accepted (no relaying)",
            )
        found = self.worker.mailboxes.resolve(address)
        if not found.accepted:
            peer = _peer(session)
            if found.inactive:
                _refused_rcpt(address, "disabled", peer)
                return refuse(
                    "mailbox_disabled", f"550 5.2.1 <{address}>: Recipient address rejected: mailbox disabled"
                )
            if found.local_domain:
                _refused_rcpt(address, "unknown", peer)
                return refuse(
                    "no_such_mailbox", f"550 5.1.1 <{address}>: Recipient address rejected: no such mailbox"
                )
            _refused_rcpt(address, "relay", peer)
            return refuse("relay", f"550 5.7.1 <{address}>: Relay access denied")
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        for name in found.mailboxes:
            envelope.mailboxes.setdefault(name, []).append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, smtp: RouterSMTP, session: Any, envelope: RoutedEnvelope) -> str:
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        received_at = utcnow_iso()
        peer = _peer(session)
        try:
            email = await self.worker.parse(raw, received_at)
        except OSError as exc:
            log.error("smtp cannot store attachments", error=str(exc))
            self.worker.refused("storage_error")
            return "451 4.3.0 Error: cannot store the message right now, try again later"
        except Exception:
            log.exception("smtp message parsing failed", peer=peer)
            self.worker.refused("parse_error")
            return "451 4.3.0 Error: local error in processing"
        # Without a Message-ID the content hash deduplicates, so a retry never runs twice.
        key = (email["message_id"] or f"sha256:{hashlib.sha256(raw).hexdigest()}")[:256]
        envelope_info = {
            "mail_from": envelope.mail_from or "",
            "helo": session.host_name or "",
            "remote_addr": peer,
            "tls": session.ssl is not None,
            "authenticated_as": session.auth_data if session.authenticated else None,
        }
        batch = []
        for name, rcpts in envelope.mailboxes.items():
            data = {
                "incoming_email": {**email, "envelope": {**envelope_info, "rcpt_to": rcpts}},
                "__remote_addr": peer,
            }
            entity = Entity("mailboxes", f"mailboxes.{name}", data, received_at=received_at)
            batch.append(
                {
                    "id": entity.id,
                    "channel": entity.channel,
                    "source": entity.source,
                    "received_at": received_at,
                    "dedup_key": key,
                    "data": entity.data,
                }
            )
        info = {"from": email["from_email"], "size": len(raw), "peer": peer}
        try:
            results = await self.worker.link.deliver(batch, info)
        except LinkClosed:
            return "421 4.3.2 Service shutting down, try again later"
        answer = status(results)
        if not answer.startswith("250"):
            self.worker.refused(
                "shutting_down"
                if answer.startswith("421")
                else "overloaded"
                if "too busy" in answer
                else "journal_unavailable"
            )
        return answer


def status(results: list[dict[str, Any]]) -> str:
    errors = [r.get("error", "internal") for r in results if not r.get("ok")]
    if not errors:
        ids = " ".join(r["signal_id"] for r in results)
        return f"250 2.0.0 OK: queued as {ids}"
    if "closed" in errors:
        return "421 4.3.2 Service shutting down, try again later"
    if all(e == "overloaded" for e in errors):
        return "451 4.3.2 Error: too busy, try again later"
    return "451 4.3.0 Error: message not accepted (journal unavailable), try again later"


def _refused_rcpt(address: str, reason: str, peer: str) -> None:
    log.info(
        "refused",
        channel="smtp",
        source="smtp",
        status=550 if reason != "routing" else 553,
        reason=reason,
        rcpt=address,
        peer=peer,
        _throttle=("smtp", "smtp", reason),
    )


def configure_forwarding() -> None:
    """structlog hands records to the stdlib unrendered: LinkLogHandler ships them to the
    daemon, which renders them in its own format (router/ops/logs.py)."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )


def _peer(session: Any) -> str:
    peer = getattr(session, "peer", None)
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "")


async def serve(listen_fd: int, link_fd: int) -> None:
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(sock=socket.socket(fileno=link_fd), limit=2**20)
    link = Link(reader, writer)
    configure_forwarding()
    root = logging.getLogger()
    root.handlers[:] = [LinkLogHandler(link, loop)]
    root.setLevel(logging.INFO)
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    worker = Worker(link)
    frames = FrameReader()
    server: asyncio.AbstractServer | None = None
    try:
        while True:
            data = await reader.read(2**20)
            if not data:
                break  # the daemon is gone
            stop = False
            for message in frames.feed(data):
                kind = message.get("t")
                if kind == "result":
                    link.resolve(message)
                elif kind == "config":
                    worker.configure(message)
                    if server is None:
                        server = await loop.create_server(
                            worker.protocol, sock=socket.socket(fileno=listen_fd)
                        )
                        link.send({"t": "ready"})
                elif kind == "stop":
                    stop = True
            if stop:
                await _stop(server, worker, link, reader, frames)
                return
    finally:
        if server is not None:
            server.close()
        link.close()
        for conn in list(worker.connections.open):
            conn.close_for_shutdown()
        await asyncio.sleep(0.05)
        worker.pool.shutdown(wait=False, cancel_futures=True)


async def _stop(
    server: asyncio.AbstractServer | None,
    worker: Worker,
    link: Link,
    reader: asyncio.StreamReader,
    frames: FrameReader,
) -> None:
    """Stop accepting; let deliveries the daemon already has come back (briefly); then close."""
    if server is not None:
        server.close()
    deadline = asyncio.get_running_loop().time() + STOP_GRACE
    while link.pending and asyncio.get_running_loop().time() < deadline:
        try:
            data = await asyncio.wait_for(
                reader.read(2**20), timeout=max(0.01, deadline - asyncio.get_running_loop().time())
            )
        except TimeoutError:
            break
        if not data:
            break
        for message in frames.feed(data):
            if message.get("t") == "result":
                link.resolve(message)
        await asyncio.sleep(0)  # let the resolved handlers answer their clients


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    listen_fd, link_fd = int(args[0]), int(args[1])
    try:
        # Mail is store-and-forward and tolerates a few ms; HTTP callers wait on every request.
        # When both want the CPU, the daemon's listener goes first.
        os.nice(WORKER_NICE)
    except OSError:
        pass
    try:
        asyncio.run(serve(listen_fd, link_fd))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
