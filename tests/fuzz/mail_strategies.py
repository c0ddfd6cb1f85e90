"""Hypothesis strategies for malformed mail: bad boundaries, encodings, charsets, headers, nesting."""

from __future__ import annotations

from email.message import EmailMessage

from hypothesis import strategies as st

from tests.fuzz.strategies import BAD_UTF8, CHARSETS

HEADER_NAMES = [
    "From",
    "To",
    "Cc",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "Content-ID",
    "X-Mailer",
    "Received",
    "Content-Disposition",
    "MIME-Version",
    "Sender",
    "Bcc",
    "X-\u00e9",
]
HEADER_VALUES = [
    "a@example.com",
    "Ann <ann@example.com>",
    '"Doe, J" <j@example.com>, b@example.com',
    "<>",
    "@",
    "<a@b",
    "a@b>",
    "=?utf-8?B?SGVsbG8=?=",
    "=?utf-8?B?!!!?=",
    "=?x-nope?Q?abc?=",
    "=?utf-8?Q?=FF=FE?=",
    "=?utf-8*en?Q?a?=",
    "=?base64?B?YQ==?=",
    "=?utf-8?X?a?=",
    "=??B?YQ==?=",
    "=?utf-8?Q?" + "a" * 500 + "?=",
    "Tue, 31 Feb 2026 99:99:99 +9999",
    "Mon, 01 Jan 0001 00:00:00 -0000",
    "not a date",
    "\u00e9\u00e8",
    "<id@example.com>",
    "<" * 50,
    "(comment (nested",
    "undisclosed-recipients:;",
    "group: a@b.c, d@e.f;",
    "a@b.c" * 50,
    "",
    " ",
    "\t",
    "x\r\n continued",
    "\x00",
]

_PRINTABLE = st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp"))

CTES = [
    "base64",
    "quoted-printable",
    "7bit",
    "8bit",
    "binary",
    "x-uuencode",
    "uuencode",
    "nope",
    "BASE64",
    "",
]


@st.composite
def headers(draw: st.DrawFn) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(
            st.sampled_from(HEADER_NAMES)
            | st.text(
                st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"),
                min_size=1,
                max_size=10,
            )
        )
        value = draw(st.sampled_from(HEADER_VALUES) | st.text(max_size=30))
        raw = f"{name}: {value}".encode("utf-8", "surrogatepass")
        if draw(st.integers(0, 5)) == 0:
            raw += draw(st.sampled_from(BAD_UTF8))
        lines.append(raw)
    return b"\r\n".join(lines)


def content_type(draw: st.DrawFn, maintype: str) -> bytes:
    charset = draw(st.sampled_from(CHARSETS))
    if maintype == "multipart":
        sub = draw(
            st.sampled_from(["mixed", "alternative", "related", "signed", "digest", "report", "x-nope", ""])
        )
        extra = draw(st.sampled_from(["", "; x*", "; charset=x-nope", "; =", "; boundary*=utf-8''b1"]))
        return f"Content-Type: multipart/{sub}{extra}; boundary=".encode()
    media = draw(
        st.sampled_from(
            [
                "text/plain",
                "text/html",
                "application/pdf",
                "image/png",
                "message/rfc822",
                "message/delivery-status",
                "text",
                "/",
                "text/plain/extra",
                "application/octet-stream",
            ]
        )
    )
    name = draw(
        st.sampled_from(
            [
                "",
                '; name="a.pdf"',
                "; name*=utf-8''%E2%82%AC.txt",
                "; name*=x-nope''a",
                '; name="=?utf-8?B?!!?="',
                "; name*0=a; name*1=b",
                "; name*0*=utf-8''%ff",
                "; x*",
                "; x*=",
                "; =x",
                '; name="a"; *',
                "; name*1=b",
            ]
        )
    )
    return f"Content-Type: {media}; charset={charset}{name}".encode("utf-8", "surrogatepass")


@st.composite
def parts(draw: st.DrawFn, depth: int = 0) -> bytes:
    """One MIME entity: a leaf or a multipart of further parts, with random damage."""
    extra = draw(headers())
    if depth < 3 and draw(st.integers(0, 2)) == 0:
        boundary = draw(
            st.sampled_from(["b1", "b" * 80, "", " ", "a b", '"q"', "==", "--", "\u00e9"])
            | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12)
        )
        children = draw(st.lists(parts(depth + 1), max_size=3))
        declared = draw(st.sampled_from([boundary, f'"{boundary}"', boundary + "x", ""]))
        head = content_type(draw, "multipart") + declared.encode("utf-8") + b"\r\n" + extra
        delim = b"--" + boundary.encode("utf-8")
        body = b"".join(delim + b"\r\n" + child + b"\r\n" for child in children)
        if draw(st.booleans()):
            body += delim + b"--\r\n"
        return head + b"\r\n\r\n" + body
    head = content_type(draw, "leaf")
    if draw(st.booleans()):
        head += b"\r\nContent-Transfer-Encoding: " + draw(st.sampled_from(CTES)).encode()
    if draw(st.booleans()):
        head += b"\r\nContent-Disposition: " + draw(
            st.sampled_from(
                [
                    b"attachment",
                    b'attachment; filename="x.bin"',
                    b"attachment; x*",
                    b"inline; filename*=",
                    b"inline",
                    b"attachment; filename*=utf-8''%ff%fe",
                    b'attachment; filename="\xff\xfe"',
                    b"nope; filename=",
                    b'attachment; filename="a\r\n b"',
                ]
            )
        )
    payload = draw(
        st.binary(max_size=80)
        | st.sampled_from(
            [
                b"SGVsbG8=",
                b"!!!",
                b"=E9=\r\n=",
                b"begin 644 a\r\n#86)C\r\n`\r\nend",
                b"Subject: inner\r\n\r\nbody",
                b"\xff\xfe",
            ]
        )
    )
    return head + b"\r\n" + extra + b"\r\n\r\n" + payload


@st.composite
def emails(draw: st.DrawFn) -> bytes:
    choice = draw(st.integers(0, 5))
    if choice == 0:
        return draw(st.binary(max_size=400))
    if choice == 1:  # a well-formed message, then damaged: truncated or with bytes flipped
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = (
            "a@example.com",
            "support@example.com",
            draw(st.text(_PRINTABLE, max_size=20)),
        )
        msg.set_content(draw(st.text(max_size=60)))
        if draw(st.booleans()):
            msg.add_alternative("<p>hi</p>", subtype="html")
        msg.add_attachment(
            draw(st.binary(max_size=40)), maintype="application", subtype="octet-stream", filename="f.bin"
        )
        for n, part in enumerate(msg.walk()):  # fixed boundaries: the email package draws them from random
            if part.is_multipart():
                part.set_boundary(f"=fuzz{n}=")
        raw = bytearray(msg.as_bytes())
        for _ in range(draw(st.integers(0, 6))):
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
        return bytes(raw[: draw(st.integers(0, len(raw)))])
    top = draw(headers()) + b"\r\n" + b"MIME-Version: 1.0\r\n"
    return top + draw(parts())


def nested_multipart(depth: int) -> bytes:
    """`depth` multiparts inside each other: parser and walker recursion."""
    head = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(depth)
    )
    return (
        b"From: a@example.com\r\nTo: support@example.com\r\nMIME-Version: 1.0\r\n"
        + head
        + b"Content-Type: text/plain\r\n\r\nleaf\r\n"
    )


def nested_rfc822(depth: int) -> bytes:
    """Messages attached inside messages."""
    inner = b"Subject: leaf\r\n\r\nbody\r\n"
    for _ in range(depth):
        inner = b"Content-Type: message/rfc822\r\n\r\n" + inner
    return b"From: a@example.com\r\nMIME-Version: 1.0\r\n" + inner
