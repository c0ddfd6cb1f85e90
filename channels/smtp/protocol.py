"""aiosmtpd's `SMTP` protocol with the limits a public mail listener needs.

- DATA is read in bulk (64 KiB reads, one search for `<CRLF>.<CRLF>`, one un-dot-stuffing
  `replace`) instead of aiosmtpd's line-by-line loop, whose per-line Python cost is what makes a
  flood of large messages eat the whole process (aiosmtpd#293). Over-long lines are accepted.
- `max_message_size` is advertised in EHLO as `SIZE`, refused in `MAIL FROM … SIZE=` and enforced
  while receiving (the rest is read and dropped, then `552`).
- `command_timeout` between commands, `data_timeout` for one whole DATA transfer; on expiry the
  client gets `421 4.4.2` before the connection is closed.
- `max_connections`: the connection after the last one gets `421 4.7.0` and is closed.

The seam with aiosmtpd. Its public hooks (`handle_RCPT`, `handle_DATA`, the constructor's
options, `smtp_*` command methods, an `Authenticator`) carry most of this; where none exists we
override a private member, each one listed here with the reason. aiosmtpd is pinned to the tested
range in pyproject.toml, and tests/test_aiosmtpd_seam.py fingerprints the upstream source of every
member named below, so a new aiosmtpd that changes one fails that test before it fails a user.

| private member | why |
|---|---|
| `aiosmtpd.smtp.inspect` (module global) | `SMTP.__init__` runs `inspect.getmembers()` over protocol and handler on every connection to find `auth_*` methods: a tenth of the SMTP process's time; `_AuthMembers` returns the same members from a per-class cache |
| `aiosmtpd.smtp.dir` (module global, shadows the builtin) | `SMTP.__init__` runs `dir()` over protocol and handler on every connection to find `smtp_*` and `handle_*` methods; `class_dir` lists each class once and adds the instance's own names |
| `SMTP._create_envelope` | our envelope also records which mailboxes each recipient reached (no public factory) |
| `SMTP._timeout_cb` | to say `421 4.4.2` before closing a timed-out connection (upstream closes silently) |
| `SMTP._getaddr` | to see source routes and `%`/`!` routing the parser drops (relay refusal), without the class upstream creates per call |
| `SMTP._reader`, `_reset_timeout`, `_set_post_data_state`, `_call_handler_hook` | used by our `smtp_DATA` (bulk read) exactly as upstream's own `smtp_DATA` uses them |
| `asyncio.StreamReader._limit`, `._buffer` | a bigger read size during DATA, and pipelined bytes after the terminator put back |
"""

from __future__ import annotations

import asyncio
import inspect
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any

import aiosmtpd.smtp
import structlog
from aiosmtpd.smtp import SMTP, Envelope

from channels.smtp.auth import Authenticator

log = structlog.get_logger("router.smtp")

READ_CHUNK = 64 * 1024
_END = b"\r\n.\r\n"


@dataclass(frozen=True)
class Limits:
    """Per-connection settings, taken from `[smtp]` when the connection is accepted."""

    hostname: str = "router.local"
    max_message_size: int = 10 * 1024 * 1024
    max_recipients: int = 100
    command_timeout: float = 300.0
    data_timeout: float = 600.0
    max_connections: int = 100
    tls_context: ssl.SSLContext | None = None
    require_tls: bool = False
    auth_required: bool = False
    authenticator: Any = None  # channels.smtp.auth.Authenticator or None


class RoutedEnvelope(Envelope):
    """An envelope that also remembers which mailboxes each accepted recipient reached."""

    def __init__(self) -> None:
        super().__init__()
        self.mailboxes: dict[str, list[str]] = {}  # mailbox name → envelope recipients


@dataclass
class Connections:
    """Open SMTP connections, touched only on the SMTP thread's event loop."""

    open: set[RouterSMTP] = field(default_factory=set)
    on_change: Callable[[int], None] | None = None  # told the open count (the sessions gauge)

    def add(self, conn: RouterSMTP) -> None:
        self.open.add(conn)
        if self.on_change is not None:
            self.on_change(len(self.open))

    def discard(self, conn: RouterSMTP) -> None:
        if conn in self.open:
            self.open.discard(conn)
            if self.on_change is not None:
                self.on_change(len(self.open))


class _AuthMembers:
    """Stands in for `inspect` inside aiosmtpd.smtp, whose `SMTP.__init__` runs
    `inspect.getmembers()` over the protocol and the handler on every connection only to keep the
    `auth_*` members: a tenth of the SMTP thread's time under load. This returns exactly those
    members (bound, as before), with the names looked up once per class."""

    def __getattr__(self, name: str) -> Any:
        return getattr(inspect, name)

    def getmembers(self, obj: Any) -> list[tuple[str, Any]]:
        names = list(_auth_names(type(obj)))
        names += [n for n in getattr(obj, "__dict__", {}) if n.startswith("auth_") and n not in names]
        return sorted((n, getattr(obj, n)) for n in names)


_AUTH_NAMES: dict[type, tuple[str, ...]] = {}


def _auth_names(cls: type) -> tuple[str, ...]:
    names = _AUTH_NAMES.get(cls)
    if names is None:
        names = _AUTH_NAMES[cls] = tuple(n for n in dir(cls) if n.startswith("auth_"))
    return names


aiosmtpd.smtp.inspect = _AuthMembers()  # type: ignore[assignment]  # the seam table above: first row

_CLASS_NAMES: dict[type, tuple[tuple[str, ...], frozenset[str]]] = {}


def class_dir(obj: Any) -> list[str]:
    """`dir(obj)` for `SMTP.__init__`, which calls it on the protocol and the handler on every
    connection to find their `smtp_*` and `handle_*` methods: the class's part is listed once
    per class, the instance's own attributes added (and the result sorted) as `dir` does."""
    cls = type(obj)
    known = _CLASS_NAMES.get(cls)
    if known is None:
        names = tuple(dir(cls))
        known = _CLASS_NAMES[cls] = (names, frozenset(names))
    extra = [n for n in getattr(obj, "__dict__", ()) if n not in known[1]]
    return sorted((*known[0], *extra)) if extra else list(known[0])


aiosmtpd.smtp.dir = class_dir  # type: ignore[attr-defined]  # the seam table above: second row


class RouterSMTP(SMTP):
    def __init__(self, handler: Any, limits: Limits, connections: Connections) -> None:
        super().__init__(
            handler,
            data_size_limit=limits.max_message_size,
            enable_SMTPUTF8=True,
            hostname=limits.hostname,
            ident="router ESMTP",
            tls_context=limits.tls_context,
            require_starttls=limits.require_tls,
            timeout=limits.command_timeout,
            auth_required=limits.auth_required,
            # With TLS configured, passwords only travel encrypted; without it (a loopback-only
            # setup) AUTH is offered in the clear.
            auth_require_tls=limits.tls_context is not None,
            auth_exclude_mechanism=[],
            authenticator=limits.authenticator,
            loop=asyncio.get_running_loop(),
        )
        self.limits = limits
        self.connections = connections
        # Set by every address parse (MAIL, RCPT): how the last address asked to be routed
        # onwards, if it did. handle_RCPT refuses such recipients (never an open relay).
        self.last_routing: str | None = None
        connections.add(self)

    def _create_envelope(self) -> RoutedEnvelope:
        return RoutedEnvelope()

    def connection_lost(self, error: Exception | None) -> None:
        self.connections.discard(self)
        super().connection_lost(error)

    def _timeout_cb(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(f"421 4.4.2 {self.hostname} Error: timeout exceeded\r\n".encode())  # type: ignore[attr-defined]
        super()._timeout_cb()

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's own parsing, minus the `typing.Protocol` class it defines on every call
        (a class creation per MAIL and RCPT; the result is the same)."""
        self.last_routing = None
        if not arg:
            return "", ""
        plain = plain_angle_addr(arg)
        if plain is not None:
            addr, rest = plain
            localpart = addr.rpartition("@")[0]
            if self.local_part_limit and len(localpart) > self.local_part_limit:
                return None, None
            return addr, rest
        address: Any
        try:
            if arg.lstrip().startswith("<"):
                address, rest = get_angle_addr(arg)
            else:
                address, rest = get_addr_spec(arg)
        except HeaderParseError:
            return None, None
        self.last_routing = routing_in(address)
        addr = str(address.addr_spec)
        localpart, _, _ = addr.rpartition("@")
        if self.local_part_limit and len(localpart) > self.local_part_limit:
            return None, None
        return addr, rest

    def close_for_shutdown(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(f"421 4.3.2 {self.hostname} Service shutting down\r\n".encode())  # type: ignore[attr-defined]
            self.transport.close()

    async def smtp_DATA(self, arg: str) -> None:  # aiosmtpd's naming
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        self._reset_timeout(self.limits.data_timeout)
        content, too_big = await self._read_data()
        if content is None:
            return  # the connection went away mid-transfer
        if too_big:
            self._set_post_data_state()
            refused = getattr(getattr(self.event_handler, "worker", None), "refused", None)
            if refused is not None:
                refused("too_large")
            await self.push(
                f"552 5.3.4 Error: message exceeds the size limit of {self.data_size_limit} bytes"
            )
            return
        self.envelope.content = content
        self.envelope.original_content = content
        # The hand-off to the journal gets its own budget, then commands resume their timeout.
        self._reset_timeout(self.limits.data_timeout)
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status if isinstance(status, str) else "250 2.0.0 OK")
        if isinstance(status, str) and status.startswith("421") and self.transport is not None:
            self.transport.close()

    async def _read_data(self) -> tuple[bytes | None, bool]:
        """(message, too_big): the message up to `<CRLF>.<CRLF>`, un-dot-stuffed.

        Oversized content is read and dropped as it arrives: (b"", True). (None, False) when the
        connection ends mid-transfer. Bytes after the terminator (pipelined commands) go back to
        the reader's buffer.
        """
        reader = self._reader
        limit = self.data_size_limit or 0
        buf = bytearray(b"\r\n")  # so a first line of "." is found like any other
        dropped = 0
        saved_limit = reader._limit  # type: ignore[attr-defined]
        reader._limit = max(saved_limit, READ_CHUNK)  # type: ignore[attr-defined]  # fewer pause/resume cycles
        try:
            while True:
                start = max(0, len(buf) - 4)
                chunk = await reader.read(READ_CHUNK)
                if not chunk:
                    return None, False
                buf += chunk
                end = buf.find(_END, start)
                if end >= 0:
                    rest = bytes(buf[end + len(_END) :])
                    if rest:
                        reader._buffer[0:0] = rest  # type: ignore[attr-defined]
                    if dropped or (limit and end - 2 > limit):
                        return b"", True
                    del buf[end + 2 :]
                    return bytes(buf).replace(b"\r\n..", b"\r\n.")[2:], False
                if limit and len(buf) - 2 + dropped > limit:
                    dropped += len(buf) - 4
                    del buf[:-4]
        except asyncio.CancelledError:
            log.info("smtp connection lost during DATA", peer=_peer(self))
            raise
        finally:
            reader._limit = saved_limit  # type: ignore[attr-defined]


# `<local@host.name>` written plainly: a dot-atom local part without the marks of routing (see
# routing_in) and a host name. Nearly every MAIL FROM and RCPT TO is one; the header parser this
# skips cost ~7 % of the SMTP worker's CPU at 2 KB messages.
_ATEXT = r"[A-Za-z0-9#$&'*+/=?^_`{|}~-]+"
_PLAIN_ANGLE = re.compile(rf"[ \t]*<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>[ \t]*")


def plain_angle_addr(arg: str) -> tuple[str, str] | None:
    """(address, rest) as `get_angle_addr` gives them, for a plain `<local@host>`; else None."""
    match = _PLAIN_ANGLE.match(arg)
    if match is None:
        return None
    rest = arg[match.end() :]
    if rest[:1] in ("(", "\r", "\n"):
        return None  # a comment (or a line break) after it: the parser's business
    return match.group(1), rest


def routing_in(address: Any) -> str | None:
    """Sender-specified routing in a parsed address, or None: a source route (`<@a:b@c>`, which
    the parser would silently drop) or a local part that names another host the old ways
    (`user%host@us`, `host!user@us`, `"user@host"@us`)."""
    if getattr(address, "route", None):
        return "a source route"
    local = str(getattr(address, "local_part", "") or "")
    for mark, what in (
        ("@", "an address in the local part"),
        ("%", "the percent hack"),
        ("!", "a bang path"),
    ):
        if mark in local:
            return what
    return None


def limits_from(smtp: Any) -> Limits:
    """`[smtp]` (SmtpSettings, or its JSON dump as a namespace) → the per-connection `Limits`."""
    tls: ssl.SSLContext | None = None
    if smtp.tls_cert and smtp.tls_key:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(str(smtp.tls_cert), str(smtp.tls_key))
    return Limits(
        hostname=smtp.hostname,
        max_message_size=int(smtp.max_message_size),
        max_recipients=int(smtp.max_recipients),
        command_timeout=float(smtp.command_timeout),
        data_timeout=float(smtp.data_timeout),
        max_connections=int(smtp.max_connections),
        tls_context=tls,
        require_tls=bool(smtp.require_tls) and tls is not None,
        auth_required=bool(smtp.auth_required),
        authenticator=Authenticator(smtp.users) if smtp.users else None,
    )


class Busy(asyncio.Protocol):
    """What a connection over `max_connections` gets: one line, then the door."""

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(
            f"421 4.7.0 {self.hostname} Error: too many connections, try again later\r\n".encode()
        )
        transport.close()


def _peer(protocol: SMTP) -> str:
    peer = protocol.session.peer if protocol.session is not None else None
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "")
