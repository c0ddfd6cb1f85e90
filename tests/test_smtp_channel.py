"""The SMTP channel without the daemon: run_smtp with its real worker process, real smtplib, and a
recording Intake in place of the router.

These run in a second each and pin the protocol behaviour; tests/test_smtp_e2e.py drives the
real daemon end to end.
"""

from __future__ import annotations

import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from channels.intake import JournalUnavailable, Submission
from channels.smtp.mailboxes import MailboxTable
from channels.smtp.server import run_smtp
from config import load_config
from config.passwords import hash_password
from engine.entity import Entity
from tests.daemon import free_port


class RecordingIntake:
    def __init__(self) -> None:
        self.entities: list[tuple[Entity, str | None]] = []
        self.seen: dict[tuple[str, str], str] = {}
        self.fail: Exception | None = None
        self.delay = 0.0

    async def submit(
        self, entity: Entity, *, dedup_key: str | None = None, responder: Any = None, ack: Any = None
    ) -> Submission:
        if self.delay:
            await trio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        if dedup_key and (entity.source, dedup_key) in self.seen:
            return Submission(self.seen[(entity.source, dedup_key)], duplicate=True)
        if dedup_key:
            self.seen[(entity.source, dedup_key)] = entity.id
        self.entities.append((entity, dedup_key))
        return Submission(entity.id)

    def render(self, template: str, data: dict[str, Any], *, html: bool = False) -> str:
        return template


class Host:
    """The daemon as the SMTP channel sees it (`channels.smtp.server.SmtpHost`)."""

    def __init__(self, cfg: Any, port: int = 0) -> None:
        self.cfg = cfg
        self.port = port
        self.dispatcher = RecordingIntake()
        self.stopping = trio.Event()
        self.state_version = 0.0
        self._states: dict[tuple[str, str], Any] = {}

    @property
    def states(self) -> dict[tuple[str, str], Any]:
        return self._states

    @states.setter
    def states(self, states: dict[tuple[str, str], Any]) -> None:
        self._states = states
        self.state_version += 1  # as the daemon's sources_version moves on (de)activation

    async def source_states(self) -> dict[tuple[str, str], Any]:
        return self._states


SMTP_CONFIG = """
[router]
data_dir = "{data_dir}"

[smtp]
listen = "127.0.0.1:{port}"
max_message_size = "64KiB"
max_recipients = 3
max_connections = 3
command_timeout = "{command_timeout}"
data_timeout = "2s"
{extra}

[mailboxes.support]
address = ["support@example.com", "help@example.com"]

[mailboxes.sales]
address = "sales@example.com"

[mailboxes.catchall]
address = "*@catch.example"

[mailboxes.off]
address = "off@example.com"
active = false
"""


@pytest.fixture
async def smtp(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    async with trio.open_nursery() as nursery:
        hosts: list[Host] = []

        async def start(extra: str = "", command_timeout: str = "30s") -> Host:
            port = free_port()
            path = tmp_path / f"router{len(hosts)}.toml"
            path.write_text(
                SMTP_CONFIG.format(
                    data_dir=tmp_path / "var", port=port, extra=extra, command_timeout=command_timeout
                )
            )
            host = Host(load_config(path), port)
            await nursery.start(run_smtp, host, host.dispatcher)
            hosts.append(host)
            return host

        yield start
        for host in hosts:
            host.stopping.set()


def multipart(to: str = "support@example.com", msgid: str | None = "<m1@example.org>") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Alice Example <alice@example.org>"
    msg["To"] = to
    msg["Subject"] = "Invoice =?utf-8?q?n=C2=B0?= 42"
    if msgid:
        msg["Message-ID"] = msgid
    msg.set_content("Hello\n.line starting with a dot\n")
    msg.add_alternative("<p>Hello</p>", subtype="html")
    msg.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="invoice.pdf")
    return msg


def send(port: int, msg: EmailMessage, rcpts: list[str] | None = None) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        return client.send_message(msg, to_addrs=rcpts)


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(1000)
        if not chunk:
            raise AssertionError(f"closed before {marker!r}: {data!r}")
        data += chunk
    return data


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await trio.to_thread.run_sync(fn, *args)


async def test_delivers_parsed_email_after_submit(smtp: Callable[..., Any]) -> None:
    host = await smtp()
    refused = await in_thread(send, host.port, multipart())
    assert refused == {}
    [(entity, key)] = host.dispatcher.entities
    assert (entity.channel, entity.source, key) == ("mailboxes", "mailboxes.support", "<m1@example.org>")
    email = entity.data["incoming_email"]
    assert email["subject"] == "Invoice n° 42"
    assert email["text"] == "Hello\n.line starting with a dot\n"
    assert email["html"] == "<p>Hello</p>\n"
    assert (email["from_email"], email["from_name"]) == ("alice@example.org", "Alice Example")
    [att] = email["attachments"]
    assert att["name"] == "invoice.pdf" and att["size"] == len(b"%PDF-1.4 fake")
    assert await trio.Path(att["path"]).read_bytes() == b"%PDF-1.4 fake"
    assert email["envelope"]["rcpt_to"] == ["support@example.com"]


async def test_one_signal_per_mailbox_and_plus_addressing(smtp: Callable[..., Any]) -> None:
    host = await smtp()
    rcpts = [
        "support+billing@example.com",
        "help@example.com",
        "sales@example.com",
    ]
    await in_thread(send, host.port, multipart(), rcpts)
    sources = sorted(e.source for e, _ in host.dispatcher.entities)
    assert sources == ["mailboxes.sales", "mailboxes.support"]
    support = next(e for e, _ in host.dispatcher.entities if e.source == "mailboxes.support")
    assert support.data["incoming_email"]["envelope"]["rcpt_to"] == [
        "support+billing@example.com",
        "help@example.com",
    ]
    # the same Message-ID again: acknowledged, not submitted twice
    await in_thread(send, host.port, multipart(), ["support@example.com"])
    assert len(host.dispatcher.entities) == 2


async def test_recipient_refusals(smtp: Callable[..., Any]) -> None:
    host = await smtp()

    def session() -> list[tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", host.port, timeout=10) as c:
            c.ehlo("client.example")
            c.mail("alice@example.org")
            return [
                c.rcpt(a)
                for a in (
                    "nobody@example.com",
                    "victim@gmail.com",
                    "off@example.com",
                    "x@CATCH.example",
                    "a@catch.example",
                    "b@catch.example",
                    "c@catch.example",
                )
            ]

    codes = await in_thread(session)
    assert codes[0][0] == 550 and b"5.1.1" in codes[0][1]
    assert codes[1][0] == 550 and b"5.7.1" in codes[1][1]  # never an open relay
    assert codes[2][0] == 550 and b"disabled" in codes[2][1]
    assert [c for c, _ in codes[3:]] == [250, 250, 250, 452]


async def test_size_limit_advertised_and_enforced(smtp: Callable[..., Any]) -> None:
    host = await smtp()

    def session() -> tuple[Any, ...]:
        with smtplib.SMTP("127.0.0.1", host.port, timeout=10) as c:
            c.ehlo("client.example")
            size = c.esmtp_features.get("size")
            c.mail("a@example.org")
            c.rcpt("support@example.com")
            big = c.data(b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 2000)
            c.rset()
            c.mail("a@example.org")
            c.rcpt("support@example.com")
            ok = c.data(b"Subject: small\r\nMessage-ID: <s@x>\r\n\r\nsmall\r\n")  # session still usable
            declared = c.mail("a@example.org", ["SIZE=999999999"])
            return size, big, ok, declared

    size, big, ok, declared = await in_thread(session)
    assert size == str(64 * 1024)
    assert big[0] == 552
    assert ok[0] == 250
    assert declared[0] == 552
    assert [e.data["incoming_email"]["subject"] for e, _ in host.dispatcher.entities] == ["small"]


async def test_journal_unavailable_gives_451_then_retry_works(smtp: Callable[..., Any]) -> None:
    host = await smtp()
    host.dispatcher.fail = JournalUnavailable("disk full")
    with pytest.raises(smtplib.SMTPDataError) as info:
        await in_thread(send, host.port, multipart())
    assert info.value.smtp_code == 451
    host.dispatcher.fail = None
    assert await in_thread(send, host.port, multipart()) == {}
    assert len(host.dispatcher.entities) == 1


async def test_250_waits_for_the_journal(smtp: Callable[..., Any]) -> None:
    host = await smtp()
    host.dispatcher.delay = 0.5
    started = time.monotonic()
    await in_thread(send, host.port, multipart())
    assert time.monotonic() - started >= 0.5


async def test_connection_limit_and_timeout(smtp: Callable[..., Any]) -> None:
    host = await smtp(command_timeout="1s")

    def scenario() -> tuple[list[bytes], bytes]:
        socks = [socket.create_connection(("127.0.0.1", host.port)) for _ in range(3)]
        greetings = [s.recv(200) for s in socks]
        extra = socket.create_connection(("127.0.0.1", host.port))
        refused = extra.recv(200)
        extra.close()
        for s in socks:
            s.settimeout(15)  # the command timeout (1 s) closes the idle ones with 421: wait for it
        closing = [s.recv(200) for s in socks]
        for s in socks:
            s.close()
        return greetings + closing, refused

    lines, refused = await in_thread(scenario)
    assert all(line.startswith(b"220") for line in lines[:3])
    assert refused.startswith(b"421 4.7.0")
    assert all(line.startswith(b"421 4.4.2") for line in lines[3:])


async def test_pipelined_commands_after_data(smtp: Callable[..., Any]) -> None:
    host = await smtp()

    def scenario() -> bytes:
        s = socket.create_connection(("127.0.0.1", host.port), timeout=15)
        s.recv(200)
        s.sendall(b"EHLO x\r\n")
        read_until(s, b"\r\n250 ")  # the last line of the EHLO answer
        s.sendall(b"MAIL FROM:<a@x>\r\nRCPT TO:<sales@example.com>\r\nDATA\r\n")
        read_until(s, b"354")
        s.sendall(b"Subject: p\r\n\r\n..dotted\r\n.\r\nQUIT\r\n")
        out = b""
        while not out.endswith(b"221 Bye\r\n"):
            chunk = s.recv(1000)
            if not chunk:
                break
            out += chunk
        s.close()
        return out

    out = await in_thread(scenario)
    assert b"250 2.0.0 OK" in out and out.endswith(b"221 Bye\r\n")
    [(entity, _)] = host.dispatcher.entities
    assert entity.data["incoming_email"]["text"] == ".dotted\n"


async def test_deactivation_is_picked_up(smtp: Callable[..., Any]) -> None:
    host = await smtp()
    host.states = {("mailboxes", "sales"): SimpleNamespace(active_override=False)}
    probe = EmailMessage()
    probe["From"], probe["Subject"] = "a@example.org", "probe"
    probe.set_content("x")
    with trio.fail_after(10):  # the channel looks for changes every 0.5 s
        while True:
            try:
                await in_thread(send, host.port, probe, ["sales@example.com"])
            except smtplib.SMTPRecipientsRefused:
                break
            await trio.sleep(0.05)
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        await in_thread(send, host.port, multipart("sales@example.com"))
    assert all(entity.data["incoming_email"]["subject"] == "probe" for entity, _ in host.dispatcher.entities)


def test_mailbox_table_precedence() -> None:
    mailboxes = {
        "exact": SimpleNamespace(address=["Support@Example.com"], active=True),
        "plus": SimpleNamespace(address=["a+b@example.com"], active=True),
        "all": SimpleNamespace(address=["*@example.com"], active=True),
    }
    table = MailboxTable.build(mailboxes)
    assert table.resolve("<support@EXAMPLE.com.>").mailboxes == ("exact",)
    assert table.resolve("support+x@example.com").mailboxes == ("exact",)
    assert table.resolve("a+b@example.com").mailboxes == ("plus",)
    assert table.resolve("someone@example.com").mailboxes == ("all",)
    assert not table.resolve("someone@example.org").accepted
    assert not table.resolve("someone@example.org").local_domain


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_starttls_and_auth_required(smtp: Callable[..., Any], tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    hashed = hash_password("s3cret", iterations=1000)
    host = await smtp(
        extra=f'tls_cert = "{cert}"\ntls_key = "{key}"\nrequire_tls = true\n'
        f'auth_required = true\nusers = {{ mailer = "{hashed}" }}'
    )

    def scenario() -> tuple[Any, ...]:
        with smtplib.SMTP("127.0.0.1", host.port, timeout=10) as c:
            c.ehlo("x")
            before_tls = c.mail("a@x")
        with smtplib.SMTP("127.0.0.1", host.port, timeout=10) as c:
            c.starttls(context=ssl._create_unverified_context())
            c.ehlo("x")
            auths = c.esmtp_features.get("auth", "")
            no_auth = c.mail("a@x")
            try:
                c.login("mailer", "wrong")
                bad = 235
            except smtplib.SMTPAuthenticationError as exc:
                bad = exc.smtp_code
            c.login("mailer", "s3cret")
            refused = c.send_message(multipart())
        return before_tls, auths, no_auth, bad, refused

    before_tls, auths, no_auth, bad, refused = await in_thread(scenario)
    assert before_tls[0] == 530
    assert "LOGIN" in auths and "PLAIN" in auths
    assert no_auth[0] == 530
    assert bad == 535
    assert refused == {}
    [(entity, _)] = host.dispatcher.entities
    envelope = entity.data["incoming_email"]["envelope"]
    assert envelope["tls"] is True and envelope["authenticated_as"] == "mailer"


async def test_a_worker_that_cannot_start_is_an_error_not_a_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "router.toml"
    path.write_text(
        SMTP_CONFIG.format(data_dir=tmp_path / "var", port=free_port(), extra="", command_timeout="5s")
    )
    host = Host(load_config(path))
    monkeypatch.setattr(sys, "executable", "/bin/false")
    with trio.fail_after(10):
        with pytest.raises(RuntimeError, match="did not start listening"):
            await run_smtp(host, host.dispatcher)
