"""Fuzz MIME parsing: any message becomes an `incoming_email` that crosses the worker's IPC link
and the journal, in process and over real SMTP (smtplib) to the daemon; never an exception."""

from __future__ import annotations

import json
import smtplib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from channels.smtp.ipc import FrameReader, pack
from channels.smtp.mime import parse_email
from engine.entity import Entity
from tests.daemon import RouterFactory, RouterProcess
from tests.fuzz import mail_strategies as ms
from tests.fuzz.profiles import examples

RECEIVED_AT = "2026-01-01T00:00:00.000Z"


@pytest.fixture(scope="module")
def files_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fuzz-mail-") as tmp:
        yield Path(tmp)


def assert_delivers(raw: bytes, files_dir: Path | None) -> dict[str, Any]:
    """parse_email's result must cross the worker→daemon link and be journaled as it is."""
    email = parse_email(raw, files_dir=files_dir, received_at=RECEIVED_AT)
    assert email["size"] == len(raw)
    entity = Entity("mailboxes", "mailboxes.fuzz", {"incoming_email": email})
    reader = FrameReader()
    frames = reader.feed(pack({"t": "deliver", "batch": [{"data": entity.data}]}))
    assert frames[0]["batch"][0]["data"]["incoming_email"]["size"] == len(raw)
    json.loads(entity.to_json())
    for item in email["attachments"]:
        assert len(item["sha256"]) == 64
        if files_dir is not None:
            assert Path(item["path"]).stat().st_size == item["size"]
    return email


@examples(600)
@given(raw=ms.emails())
@example(raw=ms.nested_multipart(2000))
@example(raw=ms.nested_rfc822(2000))
@example(raw=b'From: a@b.c\r\nContent-Type: text/plain; name="\xff\xfe.txt"\r\n\r\nx')
@example(
    raw=b'Content-Type: application/pdf\r\nContent-Disposition: attachment; filename="\xe9\xff"\r\n\r\nx'
)
@example(raw=b"Content-Type: text/\xff\xfe\r\n\r\nx")
@example(raw=b"Subject: =?utf-8?B?!!!?=\r\nFrom: =?x-nope?Q?a?= <a@b.c>\r\n\r\nx")
@example(raw="Subject: =?\u00fctf-8?Q?a?=\r\n\r\nx".encode())
@example(raw=b"Content-Type: text/plain; charset=undefined\r\n\r\nx")
@example(raw=b"Content-Type: multipart/mixed; boundary=b; x*\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n")
@example(
    raw=b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Disposition: attachment; x*\r\n\r\nx\r\n--b--"
)
def test_parse_email(raw: bytes, files_dir: Path) -> None:
    assert_delivers(raw, files_dir)


@examples(300)
@given(raw=ms.emails())
def test_parse_email_without_files_dir(raw: bytes) -> None:
    assert_delivers(raw, None)


def test_malformed_parameter_keeps_the_text() -> None:
    """policy.default's header parser raises on `; x*`: the lenient re-read still finds the text."""
    email = assert_delivers(b"Subject: hi\r\nContent-Type: text/plain; x*\r\n\r\nhello\r\n", None)
    assert (email["subject"], email["text"]) == ("hi", "hello\n")


# -- over SMTP to the real daemon -----------------------------------------------------------------

CONFIG = """
[mailboxes.support]
address = "support@example.com"
"""


@pytest.fixture(scope="module")
def router(module_router_factory: RouterFactory) -> RouterProcess:
    proc = module_router_factory(CONFIG, start=False)
    text = proc.config_path.read_text()
    proc.config_path.write_text(text.replace("[smtp]\n", '[smtp]\nmax_message_size = "1MiB"\n', 1))
    return proc.start()


DELIVERED: list[bytes] = []  # replies of the 250s: one journaled signal each


def send(router: RouterProcess, raw: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", router.smtp_port, timeout=20) as client:
        client.ehlo("fuzz.example")
        code, _ = client.mail("fuzz@example.org")
        assert code == 250
        code, _ = client.rcpt("support@example.com")
        assert code == 250
        code, reply = client.data(raw)
        if code == 250:
            DELIVERED.append(reply)
        return code, reply


@examples(60)
@given(raw=ms.emails())
@example(raw=ms.nested_multipart(2000))
@example(raw=b'From: a@b.c\r\nContent-Type: text/plain; name="\xff\xfe.txt"\r\n\r\nx')
@example(raw=b"Subject: x*\r\nContent-Type: text/plain; x*\r\n\r\nhello\r\n")
def test_smtp_delivery(router: RouterProcess, raw: bytes) -> None:
    """A message the envelope accepted is taken (250), whatever its content: never 451/421."""
    code, reply = send(router, raw)
    assert code == 250, (code, reply, router.log()[-2000:])


@examples(90)
@given(raw=st.binary(max_size=300))
def test_smtp_random_bytes(router: RouterProcess, raw: bytes) -> None:
    code, _ = send(router, raw)
    assert code == 250


def test_smtp_daemon_still_answers(router: RouterProcess) -> None:
    """Runs last in this module: the same daemon still takes mail, every 250 was journaled."""
    code, _ = send(router, b"Subject: after the fuzz\r\n\r\nstill here\r\n")
    assert code == 250
    assert httpx.get(f"{router.base}/healthz", timeout=5).status_code == 200
    assert "Traceback" not in router.log(), router.log()[-4000:]
    queued = {sid for reply in DELIVERED for sid in reply.decode().split("queued as ", 1)[1].split()}
    journaled = {s["id"] for s in router.signals()}
    assert queued and queued <= journaled, queued - journaled
