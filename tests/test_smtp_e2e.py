"""SPEC §7 against the real daemon: smtplib and swaks deliver, a workflow sees the parsed mail;
550 / 552 / 451 and no relay; SIGKILL during an `smtp-source` run loses no acknowledged message."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import smtplib
import subprocess
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.daemon import RouterFactory, RouterProcess

CONFIG = """
[mailboxes.support]
address = ["support@example.com", "help@example.com"]

[mailboxes.sales]
address = "sales@example.com"

[[workflows]]
name = "store-mail"
listen = "mailboxes.support"

[[workflows.steps]]
action = "create_record"
record_type = "mail"
fields = { subject = "{{ __data.incoming_email.subject }}", text = "{{ __data.incoming_email.text }}", html = "{{ __data.incoming_email.html }}", from_email = "{{ __data.incoming_email.from_email }}", from_name = "{{ __data.incoming_email.from_name }}", att_name = "{{ __data.incoming_email.attachments[0].name }}", att_type = "{{ __data.incoming_email.attachments[0].content_type }}", att_size = "{{ __data.incoming_email.attachments[0].size }}", att_sha256 = "{{ __data.incoming_email.attachments[0].sha256 }}", mailer = "{{ __data.incoming_email.headers['x-mailer'] }}", channel = "{{ __data.__channel }}", source = "{{ __data.__source }}" }
"""

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"


def with_smtp(proc: RouterProcess, settings: str) -> RouterProcess:
    """Add keys to the harness's `[smtp]` table (it already holds `listen`)."""
    text = proc.config_path.read_text()
    proc.config_path.write_text(text.replace("[smtp]\n", f"[smtp]\n{settings}\n", 1))
    return proc


@pytest.fixture(scope="module")
def router(module_router_factory: RouterFactory, module_backend: str | None) -> Iterator[RouterProcess]:
    proc = with_smtp(
        module_router_factory(CONFIG, start=False, database_url=module_backend), 'max_message_size = "256KiB"'
    ).start()
    yield proc
    proc.stop()  # before the other backend's daemon starts


def records(router: RouterProcess, mailer: str) -> list[dict[str, str]]:
    rows = json.loads(router.cli("records", "list", "--json", "mail").stdout)
    return [r for r in rows if r.get("mailer") == mailer]


def wait_record(router: RouterProcess, mailer: str) -> dict[str, str]:
    rows = router.wait_for(lambda: records(router, mailer), timeout=20, interval=0.2)
    assert len(rows) == 1
    return rows[0]


def test_smtplib_multipart_with_attachment(router: RouterProcess) -> None:
    msg = EmailMessage()
    msg["From"] = "Alice Example <alice@example.org>"
    msg["To"] = "Support <support@example.com>"
    msg["Subject"] = "Invoice n° 42 — overdue"
    msg["Message-ID"] = "<smtplib-1@example.org>"
    msg["X-Mailer"] = "smtplib-test"
    msg.set_content("Please pay invoice 42.\n")
    msg.add_alternative("<p>Please pay <b>invoice 42</b>.</p>", subtype="html")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="invoice-42.pdf")
    with smtplib.SMTP("127.0.0.1", router.smtp_port, timeout=10) as client:
        assert client.send_message(msg) == {}
    rec = wait_record(router, "smtplib-test")
    assert rec["subject"] == "Invoice n° 42 — overdue"
    assert rec["text"].strip() == "Please pay invoice 42."
    assert rec["html"].strip() == "<p>Please pay <b>invoice 42</b>.</p>"
    assert (rec["from_email"], rec["from_name"]) == ("alice@example.org", "Alice Example")
    assert (rec["att_name"], rec["att_type"], str(rec["att_size"])) == (
        "invoice-42.pdf",
        "application/pdf",
        str(len(PDF)),
    )
    assert rec["att_sha256"] == hashlib.sha256(PDF).hexdigest()
    assert (rec["channel"], rec["source"]) == ("mailboxes", "mailboxes.support")
    stored = router.data_dir / "files" / rec["att_sha256"][:2] / rec["att_sha256"]
    assert stored.read_bytes() == PDF


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks (Debian package) not installed")
def test_swaks_multipart_with_attachment(router: RouterProcess, tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(PDF)
    result = subprocess.run(
        [
            "swaks",
            "--server",
            f"127.0.0.1:{router.smtp_port}",
            "--to",
            "help@example.com",
            "--from",
            "bob@example.net",
            "--header",
            "Subject: swaks report",
            "--header",
            "X-Mailer: swaks-test",
            "--attach-type",
            "text/plain",
            "--attach-body",
            "plain from swaks",
            "--attach-type",
            "text/html",
            "--attach-body",
            "<p>html from swaks</p>",
            "--attach-type",
            "application/pdf",
            "--attach",
            f"@{pdf}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"<-\s+250 2\.0\.0 OK: queued as", result.stdout)
    rec = wait_record(router, "swaks-test")
    assert rec["subject"] == "swaks report"
    assert rec["text"].strip() == "plain from swaks"
    assert rec["html"].strip() == "<p>html from swaks</p>"
    assert rec["att_name"] == "report.pdf" and rec["att_type"] == "application/pdf"
    assert rec["att_sha256"] == hashlib.sha256(PDF).hexdigest()


def test_refusals_550_552_and_no_relay(router: RouterProcess) -> None:
    with smtplib.SMTP("127.0.0.1", router.smtp_port, timeout=10) as c:
        c.ehlo("client.example")
        assert c.esmtp_features["size"] == str(256 * 1024)
        c.mail("mallory@example.net")
        code, text = c.rcpt("nobody@example.com")
        assert code == 550 and b"5.1.1" in text
        code, text = c.rcpt("victim@gmail.com")  # never an open relay
        assert code == 550 and b"5.7.1" in text
        c.rset()
        c.mail("mallory@example.net")
        assert c.rcpt("sales@example.com")[0] == 250
        code, text = c.data(b"Subject: huge\r\n\r\n" + (b"y" * 998 + b"\r\n") * 300)
        assert code == 552
    # an open-relay probe as a whole transaction: refused, nothing journaled
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        with smtplib.SMTP("127.0.0.1", router.smtp_port, timeout=10) as c:
            c.sendmail("a@example.com", ["someone@elsewhere.example"], b"Subject: relay\r\n\r\nx\r\n")
    sources = {s["source"] for s in router.signals()}
    assert "mailboxes.sales" not in sources


def test_one_signal_per_mailbox_and_message_id_dedup(router: RouterProcess) -> None:
    raw = b"From: c@example.org\r\nSubject: both\r\nMessage-ID: <both-1@example.org>\r\n\r\nhi\r\n"
    rcpts = ["support+tag@example.com", "sales@example.com"]
    for _ in range(2):  # the second delivery is a duplicate: acknowledged, not run again
        with smtplib.SMTP("127.0.0.1", router.smtp_port, timeout=10) as c:
            assert c.sendmail("c@example.org", rcpts, raw) == {}
    signals = [s for s in router.signals() if s["entity"].get("incoming_email", {}).get("subject") == "both"]
    assert sorted(s["source"] for s in signals) == ["mailboxes.sales", "mailboxes.support"]
    assert {s["dedup_key"] for s in signals} == {"<both-1@example.org>"}


def _set_immutable(path: Path, on: bool) -> None:
    subprocess.run(["chattr", "-R", "+i" if on else "-i", str(path)], check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("chattr") is None, reason="chattr (e2fsprogs) not installed")
def test_451_while_the_data_dir_is_read_only(router_factory) -> None:  # type: ignore[no-untyped-def]
    router = router_factory(CONFIG)
    raw = b"From: d@example.org\r\nSubject: later\r\nMessage-ID: <ro-1@example.org>\r\n\r\nhi\r\n"
    probe = subprocess.run(["chattr", "+i", str(router.data_dir)], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"chattr +i not supported here: {probe.stderr.decode().strip()}")
    # Immutable even for root: the open journal's next write (its commit) fails with EPERM.
    _set_immutable(router.data_dir, True)
    try:
        with smtplib.SMTP("127.0.0.1", router.smtp_port, timeout=20) as c:
            with pytest.raises(smtplib.SMTPDataError) as info:
                c.sendmail("d@example.org", ["sales@example.com"], raw)
        assert info.value.smtp_code == 451
    finally:
        _set_immutable(router.data_dir, False)
    # the sender retries: now it is accepted, exactly once
    with smtplib.SMTP("127.0.0.1", router.smtp_port, timeout=20) as c:
        assert c.sendmail("d@example.org", ["sales@example.com"], raw) == {}
    assert [s["dedup_key"] for s in router.signals() if s["source"] == "mailboxes.sales"] == [
        "<ro-1@example.org>"
    ]


@pytest.mark.skipif(shutil.which("smtp-source") is None, reason="smtp-source (Debian postfix) not installed")
@pytest.mark.usefixtures("any_backend")  # SQLite and PostgreSQL
def test_sigkill_during_smtp_source_loses_no_acknowledged_message(router_factory) -> None:  # type: ignore[no-untyped-def]
    router = router_factory("""
    [mailboxes.load]
    address = "load@example.com"
    """)
    # -v writes ~500 bytes per message: into a file, not a pipe nobody reads until the end (a full
    # pipe stalls smtp-source after ~130 messages, which looked like a stalled daemon).
    transcript = router.tmp / "smtp-source.log"
    out = transcript.open("wb")
    source = subprocess.Popen(
        [
            "smtp-source",
            "-v",
            "-s",
            "20",
            "-m",
            "100000",
            "-l",
            "2048",
            "-f",
            "load@sender.example",
            "-t",
            "load@example.com",
            f"127.0.0.1:{router.smtp_port}",
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    out.close()

    def journaled_load() -> int:
        return len(
            router.read(lambda tx: tx.list_signals(source="mailboxes.load", limit=100_000), default=[])
        )

    try:
        router.wait_for(lambda: journaled_load() > 100, timeout=30, interval=0.05)  # mid-load
    except AssertionError:
        source.kill()
        raise AssertionError(f"smtp-source said: {transcript.read_bytes()[-3000:]!r}") from None
    assert router.proc is not None
    router.proc.send_signal(signal.SIGKILL)
    router.proc.wait(10)
    source.wait(timeout=30)
    output = transcript.read_bytes()
    acked = re.findall(rb"<<< 250 2\.0\.0 OK: queued as ([0-9A-Z]{26})", output)
    assert len(acked) > 50, output[-2000:]
    journaled = {
        s.id for s in router.read(lambda tx: tx.list_signals(source="mailboxes.load", limit=100_000))
    }
    missing = {a.decode() for a in acked} - journaled
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged messages are not in the journal"
    # and the daemon starts again on that journal
    router.start()
    assert router.proc is not None and router.proc.poll() is None


def test_worker_restart_and_reload(router_factory) -> None:  # type: ignore[no-untyped-def]
    """The SMTP worker is supervised (killed → back within a second or two) and SIGHUP adds a mailbox."""
    router = router_factory(CONFIG)
    raw = b"From: e@example.org\r\nSubject: back\r\n\r\nhi\r\n"
    pid = int(re.findall(r"worker_pid=(\d+)", router.log())[-1])
    os.kill(pid, signal.SIGKILL)
    router.wait_for(lambda: len(re.findall(r"worker_pid=(\d+)", router.log())) == 2, timeout=15)

    def delivered() -> bool:
        try:
            with smtplib.SMTP("127.0.0.1", router.smtp_port, timeout=5) as c:
                return c.sendmail("e@example.org", ["sales@example.com"], raw) == {}
        except (OSError, smtplib.SMTPException):
            return False

    router.wait_for(delivered, timeout=15, interval=0.2)
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        with smtplib.SMTP("127.0.0.1", router.smtp_port, timeout=5) as c:
            c.sendmail("e@example.org", ["billing@example.com"], raw)
    router.config_path.write_text(
        router.config_path.read_text() + '\n[mailboxes.billing]\naddress = "billing@example.com"\n'
    )
    router.signal(signal.SIGHUP)

    def billing_accepted() -> bool:
        with smtplib.SMTP("127.0.0.1", router.smtp_port, timeout=5) as c:
            c.ehlo("x")
            c.mail("e@example.org")
            return c.rcpt("billing@example.com")[0] == 250

    router.wait_for(billing_accepted, timeout=10, interval=0.2)
