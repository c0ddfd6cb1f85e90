"""Relay attempts against the real daemon's SMTP listener, with swaks (SPEC §7: never an open
relay): foreign domains, the percent hack, bang paths, source routes and quoted local parts are
refused with 550/553 even where a catch-all would take any local part, and nothing is journaled.
Hostile content in an accepted mail (a template in the subject, a traversal in an attachment
name) stays data."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import smtplib
import subprocess
from pathlib import Path

import pytest

from tests.daemon import RouterFactory, RouterProcess
from tests.security_support import journal_count, journal_entities

pytestmark = pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks (Debian package) not installed")

CONFIG = """
[mailboxes.support]
address = "support@example.com"

[mailboxes.catch]
address = "*@catch.example"

[[workflows]]
name = "keep"
listen = ["mailboxes.support", "mailboxes.catch"]

[[workflows.steps]]
action = "create_record"
record_type = "mail"
fields = { subject = "{{ __data.incoming_email.subject }}", to = "{{ __data.incoming_email.envelope.rcpt_to | json_encode }}", att = "{{ __data.incoming_email.attachments[0].name }}" }
"""


@pytest.fixture(scope="module")
def router(module_router_factory: RouterFactory) -> RouterProcess:
    return module_router_factory(CONFIG)


def swaks(router: RouterProcess, to: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "swaks",
            "--server",
            f"127.0.0.1:{router.smtp_port}",
            "--from",
            "mallory@evil.example",
            "--to",
            to,
            "--header",
            f"Subject: relay probe {to}",
            "--timeout",
            "10",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )


def mail_count(router: RouterProcess) -> int:
    return journal_count(router, "mailboxes.support") + journal_count(router, "mailboxes.catch")


def rcpt_reply(result: subprocess.CompletedProcess[str]) -> str:
    """The server's answer to RCPT TO, from swaks' transcript."""
    lines = result.stdout.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"\s*-> RCPT TO:", line):
            return lines[i + 1].strip()
    raise AssertionError(f"no RCPT in the transcript:\n{result.stdout}\n{result.stderr}")


RELAY_ATTEMPTS = {
    # a domain we do not serve
    "victim@gmail.com": "550 5.7.1",
    "support@example.com.evil.example": "550 5.7.1",
    "support@EXAMPLE.org": "550 5.7.1",
    # the percent hack and bang paths: routing hidden in the local part of one of our domains
    "victim%gmail.com@example.com": "553 5.7.1",
    "victim%gmail.com@catch.example": "553 5.7.1",
    "support%example.com@catch.example": "553 5.7.1",
    "gmail.com!victim@catch.example": "553 5.7.1",
    # source routes (RFC 5321 allows declining them): through us, or through us to outside
    "@catch.example:victim@gmail.com": "553 5.7.1",
    "@gmail.com:support@example.com": "553 5.7.1",
    # quoted local parts hiding another address
    '"victim@gmail.com"@catch.example': "553 5.7.1",
    '"victim%gmail.com"@catch.example': "553 5.7.1",
    '"victim@gmail.com"@example.com': "553 5.7.1",
}


@pytest.mark.parametrize("to", list(RELAY_ATTEMPTS), ids=list(RELAY_ATTEMPTS))
def test_relay_attempts_are_refused_and_nothing_is_journaled(router: RouterProcess, to: str) -> None:
    before = mail_count(router)
    result = swaks(router, to)
    assert result.returncode != 0, result.stdout
    reply = rcpt_reply(result)
    assert reply.startswith("<** " + RELAY_ATTEMPTS[to]), (to, reply)
    assert not re.search(r"<-\s+250 2\.0\.0", result.stdout)  # DATA never accepted
    assert mail_count(router) == before


def test_multi_hop_source_route_is_refused(router: RouterProcess) -> None:
    """swaks splits `--to` on commas, so this one goes through smtplib."""
    before = mail_count(router)
    with smtplib.SMTP("127.0.0.1", router.smtp_port, timeout=10) as client:
        client.ehlo("probe.example")
        client.mail("mallory@evil.example")
        # docmd: smtplib's rcpt() would parse the address and drop the route itself
        code, text = client.docmd("RCPT", "TO:<@catch.example,@example.com:x@catch.example>")
        assert (code, text[:5]) == (553, b"5.7.1"), text
        code, text = client.docmd("RCPT", "TO:<@example.com:victim@gmail.com>")
        assert (code, text[:5]) == (553, b"5.7.1"), text
        assert client.docmd("RCPT", "TO:<support@example.com>")[0] == 250  # the session is still fine
    assert mail_count(router) == before


def test_our_own_addresses_still_arrive(router: RouterProcess) -> None:
    """The control: plain, catch-all and quoted-but-harmless local parts are delivered."""
    before = mail_count(router)
    for to in (
        "support@example.com",
        "anyone@catch.example",
        '"support"@example.com',
        '"john doe"@catch.example',
    ):
        result = swaks(router, to)
        assert result.returncode == 0, (to, result.stdout)
        assert rcpt_reply(result).startswith("<-  250"), (to, result.stdout)
    router.wait_for(lambda: mail_count(router) == before + 4)


def test_hostile_content_in_accepted_mail_stays_data(router: RouterProcess, tmp_path: Path) -> None:
    attachment = tmp_path / "payload.bin"
    attachment.write_bytes(b"not really a passwd file\n")
    subject = "{{ ''.__class__.__mro__ }} {% for i in range(10**9) %}x{% endfor %}"
    result = swaks(
        router,
        "support@example.com",
        "--header",
        f"Subject: {subject}",
        "--attach-type",
        "application/octet-stream",
        "--attach-name",
        "../../../etc/passwd",
        "--attach",
        f"@{attachment}",
    )
    assert result.returncode == 0, result.stdout + result.stderr

    def stored() -> list[dict[str, str]]:
        rows = json.loads(router.cli("records", "list", "--json", "mail", "--limit", "1000").stdout)
        return [r for r in rows if r["subject"] == subject]

    rows = router.wait_for(stored, timeout=20, interval=0.3)
    assert rows[0]["att"] == "../../../etc/passwd"
    email = journal_entities(router, "mailboxes.support")[-1]["incoming_email"]
    info = email["attachments"][0]
    digest = hashlib.sha256(attachment.read_bytes()).hexdigest()
    files_dir = router.data_dir / "files"
    assert Path(info["path"]).resolve() == (files_dir / digest[:2] / digest).resolve()
    assert not (router.data_dir / "etc").exists() and not (router.tmp / "etc").exists()
