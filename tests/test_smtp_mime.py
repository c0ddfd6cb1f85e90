"""MIME → `incoming_email` on the shapes mail really has (SPEC §5)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from channels.smtp.mime import parse_email


def parse(raw: bytes, files_dir: Path | None = None) -> dict:  # type: ignore[type-arg]
    return parse_email(raw, files_dir=files_dir, received_at="2026-01-01T00:00:00.000Z")


def test_charsets_quoted_printable_base64_and_rfc2047(tmp_path: Path) -> None:
    raw = (
        b"From: =?iso-8859-1?q?J=F6rg_M=FCller?= <jorg@example.de>\r\n"
        b'To: "Doe, Jane" <jane@example.com>, bob@example.com\r\n'
        b"Cc: =?utf-8?b?w4lsb2RpZQ==?= <elodie@example.fr>\r\n"
        b"Subject: =?utf-8?q?R=C3=A9sum=C3=A9?=\r\n =?utf-8?q?_attached?=\r\n"
        b"Date: Mon, 2 Mar 2026 09:30:00 +0100\r\n"
        b"Message-ID: <abc.123@example.de>\r\n"
        b"Received: from a\r\nReceived: from b\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
        b'--outer\r\nContent-Type: multipart/alternative; boundary="alt"\r\n\r\n'
        b"--alt\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"Gr=FC=DFe\r\nsoft=\r\nbreak\r\n"
        b"--alt\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"PHA+R3LDvMOfZTwvcD4=\r\n--alt--\r\n"
        b"--outer\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Disposition: inline\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n"
        b'--outer\r\nContent-Type: text/csv; name="r\xc3\xa9sum\xc3\xa9.csv"\r\n'
        b"Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.csv\r\n\r\na,b\r\n1,2\r\n"
        b"--outer--\r\n"
    )
    email = parse(raw, tmp_path)
    assert (email["from_email"], email["from_name"]) == ("jorg@example.de", "Jörg Müller")
    assert email["to"] == [
        {"email": "jane@example.com", "name": "Doe, Jane"},
        {"email": "bob@example.com", "name": ""},
    ]
    assert email["cc_emails"] == ["elodie@example.fr"] and email["cc"][0]["name"] == "Élodie"
    assert email["subject"] == "Résumé attached"
    assert email["text"] == "Grüße\nsoftbreak"  # the CRLF before a boundary belongs to it
    assert email["html"] == "<p>Grüße</p>"
    assert email["date"] == "2026-03-02T09:30:00+01:00"
    assert email["date_received"] == "2026-01-01T00:00:00.000Z"
    assert email["message_id"] == "<abc.123@example.de>"
    assert email["headers"]["received"] == ["from a", "from b"]
    logo, csv = email["attachments"]
    assert (logo["content_type"], logo["disposition"], logo["content_id"]) == (
        "image/png",
        "inline",
        "logo@x",
    )
    assert logo["size"] == 8 and logo["sha256"] == hashlib.sha256(b"\x89PNG\r\n\x1a\n").hexdigest()
    assert (csv["name"], csv["content_type"], csv["disposition"]) == ("résumé.csv", "text/csv", "attachment")
    assert Path(csv["path"]).read_bytes() == b"a,b\r\n1,2"


def test_plain_single_part_and_missing_headers() -> None:
    email = parse(b"Subject: hi\r\n\r\nline one\r\nline two\r\n")
    assert email["text"] == "line one\nline two\n" and email["html"] == ""
    assert email["from_email"] == "" and email["to_emails"] == [] and email["message_id"] == ""
    assert email["attachments"] == []


def test_html_only_and_broken_input_never_raise() -> None:
    html = parse(b"Content-Type: text/html; charset=utf-8\r\n\r\n<b>x</b>\r\n")
    assert html["html"] == "<b>x</b>\n" and html["text"] == ""
    junk = parse(b"\xff\xfe garbage\r\nContent-Type: multipart/mixed\r\n\r\nno boundary at all\r\n")
    assert isinstance(junk["text"], str)
    bogus = parse(b"From: <a@b.c>\r\nContent-Type: text/plain; charset=x-unknown\r\n\r\ncaf\xc3\xa9\r\n")
    assert bogus["text"] == "café\n"
    eight_bit = parse("From: Zoë <zoe@example.com>\r\nSubject: Grüße\r\n\r\nx\r\n".encode())
    assert (eight_bit["from_name"], eight_bit["subject"]) == ("Zoë", "Grüße")


def test_attached_message_is_one_attachment(tmp_path: Path) -> None:
    inner = b"From: x@y.z\r\nSubject: inner\r\n\r\ninner body\r\n"
    raw = (
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n'
        b"--b\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"--b--\r\n"
    )
    email = parse(raw, tmp_path)
    assert email["text"] == "see attached"
    [att] = email["attachments"]
    assert att["content_type"] == "message/rfc822" and att["name"].endswith(".eml")
    assert b"inner body" in Path(att["path"]).read_bytes()
