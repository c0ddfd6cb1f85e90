"""Issue 16 bug 2: `from_email`, `to_emails`, `reply_to` are what the stdlib's header registry
(`email`, policy=default) makes of the headers, on every message of a public MIME corpus
(tests/fixtures/mime_corpus/SOURCES.md), with only real addresses kept; against the real daemon too."""

from __future__ import annotations

import json
import re
import smtplib
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.smtp.mime import addresses, parse_email
from tests.daemon import RouterProcess

CORPUS = Path(__file__).parent / "fixtures" / "mime_corpus"
FILES = sorted(CORPUS.rglob("*.eml"))
STDLIB = BytesParser(policy=policy.default)
# An address the way RFC 5322 writes one, quoted local parts included; never `@domain` or `local@`.
ADDRESS = re.compile(r'^(?:[^@\s"]+|"(?:[^"\\]|\\.)*")@[^@\s]+$')


def utf8(value: str) -> str:
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def stdlib_addresses(msg: Any, name: str) -> list[str] | None:
    """What `email` with policy=default gives for a header: its addr-specs that have a local part
    and a domain (None where the stdlib's parser raises)."""
    try:
        header = msg[name]
    except Exception:  # noqa: BLE001
        return None
    if header is None:
        return []
    return [utf8(a.addr_spec) for a in header.addresses if a.username and a.domain]


def ours(raw: bytes) -> dict[str, Any]:
    return parse_email(raw, files_dir=None, received_at="2026-01-01T00:00:00.000Z")


def test_the_corpus_is_varied_and_noted() -> None:
    assert len(FILES) >= 30
    sources = (CORPUS / "SOURCES.md").read_text()
    for path in FILES:
        assert str(path.relative_to(CORPUS)) in sources, f"{path} is not listed in SOURCES.md"
    assert {p.relative_to(CORPUS).parts[0] for p in FILES} == {"mikel-mail", "mailparser"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(CORPUS)))
def test_addresses_agree_with_the_stdlib_header_registry(path: Path) -> None:
    raw = path.read_bytes()
    msg, email = STDLIB.parsebytes(raw), ours(raw)
    for header, got in (
        ("from", [email["from_email"]] if email["from_email"] else []),
        ("to", email["to_emails"]),
        ("cc", email["cc_emails"]),
        ("reply-to", email["reply_to"]),
    ):
        expected = stdlib_addresses(msg, header)
        if expected is None:  # the stdlib crashed on it: ours must still be addresses only
            assert all(ADDRESS.match(a) for a in got), (header, got)
            continue
        if header == "from":
            expected = expected[:1]
        assert got == expected, header
        assert all(ADDRESS.match(a) for a in got), (header, got)
    assert email["to_emails"] == [a["email"] for a in email["to"]]


def test_the_two_reproduced_headers() -> None:
    multiple = ours((CORPUS / "mikel-mail/plain_emails/raw_email_multiple_from.eml").read_bytes())
    # `From: tim@powerupdev.com concierge@powerupdev.com` (and the same To and Reply-To)
    assert multiple["from_email"] == "tim@powerupdev.com"
    assert multiple["to_emails"] == ["tim@powerupdev.com"] and multiple["reply_to"] == ["tim@powerupdev.com"]
    big_bug = ours((CORPUS / "mikel-mail/plain_emails/mix_caps_content_type.eml").read_bytes())
    # `From: Big Bug bb@bug.com`: the stdlib reads one local part of three words, quoted.
    assert big_bug["from_email"] == '"Big Bug bb"@bug.com'
    for raw in (
        b"From: tim@powerupdev.com concierge@powerupdev.com\r\n\r\n",
        b"From: Big Bug bb@bug.com\r\n\r\n",
    ):
        assert ours(raw)["from_email"] != "@powerupdev.com" and ADDRESS.match(ours(raw)["from_email"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("foo@", []),  # the registry raises IndexError on these (CPython 3.11-3.13)
        ("a@b.example, <", ["a@b.example"]),
        ("@powerupdev.com", []),
        ("<>", []),
        ("undisclosed-recipients:;", []),
        ("foo", []),
        ("Group: a@b.example, c@d.example;", ["a@b.example", "c@d.example"]),
        ('"Doe, Jane" <jane@example.com>, bob@example.com', ["jane@example.com", "bob@example.com"]),
        ("=?utf-8?q?J=C3=B6rg?= <j@x.example>", ["j@x.example"]),
        ("Jos\udcc3\udca9 <jos\udcc3\udca9@x.example>", ["josé@x.example"]),
    ],
)
def test_unusual_headers_never_crash_and_give_only_addresses(value: str, expected: list[str]) -> None:
    assert [a["email"] for a in addresses("to", value)] == expected


_ATEXT = st.text(alphabet="abcXYZ019!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=6)
_DOT_ATOM = st.lists(_ATEXT, min_size=1, max_size=3).map(".".join)
_SPACE = st.sampled_from([" ", "  ", "\t", ""])
_NOISE = st.sampled_from(["", " ", ".", ",", "<", ">", "@", '"', "(", ")", "=?", ";", ":", "\\", "é", "[x]"])


@st.composite
def header_values(draw: st.DrawFn) -> str:
    addr = f"{draw(_DOT_ATOM)}@{draw(_DOT_ATOM)}"
    words = draw(st.lists(_ATEXT, max_size=3))
    form = draw(st.sampled_from(["bare", "angle"]))
    value = addr if form == "bare" else " ".join(words) + draw(_SPACE) + f"<{addr}>"
    cut = draw(st.integers(0, len(value)))
    value = value[:cut] + draw(_NOISE) + value[cut:]  # sometimes breaks the plain shape
    return draw(_SPACE) + value + draw(_SPACE)


@settings(max_examples=3000, deadline=None)
@given(header_values())
def test_the_shortcut_for_plain_headers_gives_what_the_registry_gives(value: str) -> None:
    """`addresses` reads the commonest shape with a pattern: the result must be the registry's."""
    try:
        header = policy.default.header_factory("from", value)
        expected = [
            {"email": utf8(a.addr_spec), "name": utf8(a.display_name)}
            for a in header.addresses
            if a.username and a.domain
        ]
    except Exception:  # noqa: BLE001 - registry crash: salvage, checked above
        return
    assert addresses("from", value) == expected


# -- against the real daemon ---------------------------------------------------------------------

CONFIG = """
[mailboxes.support]
address = "support@example.com"

[[workflows]]
name = "store-mail"
listen = "mailboxes.support"

[[workflows.steps]]
action = "create_record"
record_type = "mail"
fields = { subject = "{{ __data.incoming_email.subject }}", from_email = "{{ __data.incoming_email.from_email }}", to_emails = "{{ __data.incoming_email.to_emails }}", reply_to = "{{ __data.incoming_email.reply_to }}" }
"""


def test_the_daemon_journals_real_addresses(router_factory) -> None:  # type: ignore[no-untyped-def]
    router: RouterProcess = router_factory(CONFIG)
    sent = {
        "multiple": b"From: tim@powerupdev.com concierge@powerupdev.com\r\n"
        b"To: tim@powerupdev.com concierge@powerupdev.com\r\n"
        b"Reply-To: tim@powerupdev.com concierge@powerupdev.com\r\n",
        "big-bug": b"From: Big Bug bb@bug.com\r\nTo: support@example.com\r\nReply-To: <>, Big Bug <bb@bug.com>\r\n",
    }
    with smtplib.SMTP("127.0.0.1", router.smtp_port, timeout=10) as client:
        for subject, head in sent.items():
            client.sendmail(
                "sender@example.org",
                ["support@example.com"],
                head + b"Subject: " + subject.encode() + b"\r\n\r\nhello\r\n",
            )

    def stored() -> dict[str, dict[str, Any]]:
        rows = json.loads(router.cli("records", "list", "mail", "--json").stdout)
        return {r["subject"]: r for r in rows} if len(rows) == 2 else {}

    rows = router.wait_for(stored)
    assert (rows["multiple"]["from_email"], rows["multiple"]["to_emails"], rows["multiple"]["reply_to"]) == (
        "tim@powerupdev.com",
        ["tim@powerupdev.com"],
        ["tim@powerupdev.com"],
    )
    assert (rows["big-bug"]["from_email"], rows["big-bug"]["to_emails"], rows["big-bug"]["reply_to"]) == (
        '"Big Bug bb"@bug.com',
        ["support@example.com"],
        ["bb@bug.com"],
    )


PLAIN_CASES = [
    "<a@b.c>",
    "<a@b.c> SIZE=2048",
    " <john.doe+tag@mail.example.com>  BODY=8BITMIME",
    "<a@b.c>(comment)",
    "<a%b@c>",
    "<a!b@c>",
    '<"q"@c>',
    "<@r:a@b>",
    "<a@[1.2.3.4]>",
    "<a..b@c>",
    "<.a@c>",
    "<a@b.c>\t SMTPUTF8",
    "<A_B~{x}@EX-AMPLE.com>",
    "<a@b.c>x",
    "<ü@b.c>",
    "<a@b.>",
    "<a@b.c> (x) SIZE=1",
    "<a@b.c>\r\n",
]


@pytest.mark.parametrize("arg", PLAIN_CASES)
def test_the_plain_address_fast_path_agrees_with_the_parser(arg: str) -> None:
    """MAIL FROM / RCPT TO `<local@host>` skip the header parser: same address, same rest, and
    never an address whose routing the parser would have refused (percent hack, bang path, route)."""
    from email._header_value_parser import get_angle_addr

    from channels.smtp.protocol import plain_angle_addr, routing_in

    fast = plain_angle_addr(arg)
    if fast is None:
        return  # the parser's business, as before
    address, rest = get_angle_addr(arg)
    assert (fast[0], fast[1], routing_in(address)) == (address.addr_spec, rest, None)


@given(st.from_regex(r"\A[ \t]?<[a-zA-Z0-9.%!_+-]{1,12}@[a-zA-Z0-9.-]{1,12}>[ \t]?[A-Z=0-9 ]{0,10}\Z"))
@settings(max_examples=300, deadline=None)
def test_the_plain_address_fast_path_agrees_with_the_parser_generated(arg: str) -> None:
    test_the_plain_address_fast_path_agrees_with_the_parser(arg)
