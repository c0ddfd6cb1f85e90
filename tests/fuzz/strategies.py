"""Hypothesis strategies for hostile HTTP bodies, shared by the in-process and daemon targets."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

CHARSETS = [
    "utf-8",
    "UTF-8",
    "latin-1",
    "iso-8859-1",
    "utf-16",
    "utf-32",
    "ascii",
    "cp1252",
    "koi8-r",
    "shift_jis",
    "utf-7",
    "x-nope",
    "",
    "utf-8\x00",
    "rot13",
    "base64",
    "hex",
    "idna",
    "punycode",
    "unicode_escape",
    "zlib",
    "bz2",
    "uu",
    "quopri",
    "mbcs",
    "undefined",
    "\u00e9",
    "utf-8'en'x",
]

MEDIA_TYPES = [
    "application/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "text/plain",
    "application/vnd.api+json",
    "+json",
    "application/octet-stream",
    "text/html",
    "application/xml",
    "multipart/mixed",
    "application/JSON",
    "",
    "*/*",
    "application/json+x",
    "json",
    "\x7f",
]

# Bytes that are never valid UTF-8, lone surrogates, overlongs, truncated sequences.
BAD_UTF8 = [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xf4\x90\x80\x80", b"\x80", b"\xfe\xff"]

header_safe = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=60
)


@st.composite
def content_types(draw: st.DrawFn) -> str:
    media = draw(st.sampled_from(MEDIA_TYPES) | header_safe)
    params = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["charset", "boundary", "Charset", "name", "charset*", ""]),
                st.sampled_from(CHARSETS) | header_safe,
            ),
            max_size=3,
        )
    )
    text = media + "".join(f"; {k}={v}" for k, v in params)
    return draw(st.sampled_from([text, text.upper(), f" {text} ", f"{text};", f'{text};;"']))


def nested(depth: int, *, kind: str = "[") -> bytes:
    """`depth` nested arrays (or objects), the classic parser stack exhaustion."""
    if kind == "[":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


@st.composite
def json_bodies(draw: st.DrawFn) -> bytes:
    """Valid, almost valid and hostile JSON documents."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return nested(
            draw(st.sampled_from([10, 500, 990, 1000, 5000, 100_000])), kind=draw(st.sampled_from("[{"))
        )
    if choice == 1:  # huge numbers: past CPython's 4300-digit int limit, float overflow, exponents
        digits = draw(st.integers(1, 10_000))
        number = draw(
            st.sampled_from(
                [
                    "9" * digits,
                    "-" + "1" * digits,
                    f"1e{digits}",
                    f"0.{'0' * digits}1",
                    "1" * digits + ".5",
                    "NaN",
                    "-Infinity",
                    "Infinity",
                ]
            )
        )
        return draw(st.sampled_from([number, f'{{"n": {number}}}', f"[{number}]"])).encode()
    if choice == 2:  # duplicate keys (the last wins in the stdlib; nothing may break)
        key = draw(st.text(max_size=8))
        values = draw(st.lists(json_values, min_size=2, max_size=4))
        return ("{" + ",".join(f"{json.dumps(key)}:{json.dumps(v)}" for v in values) + "}").encode()
    if choice == 3:  # invalid UTF-8 inside otherwise valid JSON
        bad = draw(st.sampled_from(BAD_UTF8))
        return b'{"s": "' + bad + b'"}'
    if choice == 4:  # other encodings of a valid document (json.loads sniffs UTF-16/32)
        enc = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32", "utf-8-sig", "latin-1"]))
        return json.dumps(draw(json_values), ensure_ascii=False).encode(enc, "replace")
    if choice == 5:  # truncated
        whole = _dumps(draw(json_values))
        return whole[: draw(st.integers(0, len(whole)))]
    if choice == 6:  # reserved and meta keys a caller should not be able to confuse us with
        keys = st.sampled_from(
            ["__proto__", "__headers", "__data", "__signal_id", "__files", "", "\x00", "constructor"]
        )
        return _dumps(draw(st.dictionaries(keys, json_values, max_size=4)))
    if choice == 7:
        return draw(st.binary(max_size=200))
    return _dumps(draw(json_values))


@st.composite
def urlencoded_bodies(draw: st.DrawFn) -> bytes:
    pieces = draw(
        st.lists(
            st.sampled_from(
                [
                    "a=1",
                    "a[]=1",
                    "a[]=2",
                    "a=",
                    "=",
                    "&",
                    "&&",
                    "==",
                    "%",
                    "%zz",
                    "%ff",
                    "%c3%28",
                    "a=%00",
                    "+",
                    "a+b=c+d",
                    "%E2%82%AC=%E2%82%AC",
                    "a[=1",
                    "a]]=2",
                    "[]=x",
                    ";",
                    "a;b=c",
                    "a=1=2",
                    "\xe9=\xe9",
                    "a" * 300 + "=1",
                ]
            )
            | st.text(max_size=20),
            max_size=15,
        )
    )
    sep = draw(st.sampled_from(["&", ";", "&amp;", ""]))
    raw = sep.join(pieces).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        raw += draw(st.sampled_from(BAD_UTF8))
    return raw


def query_strings() -> st.SearchStrategy[str]:
    """What goes after `?`; httpx percent-encodes anything a URL cannot carry."""
    return st.lists(
        st.sampled_from(
            [
                "a=1",
                "a=2",
                "a[]=x",
                "b",
                "=",
                "%",
                "%zz",
                "%ff",
                "token=t",
                "apiKey=x",
                "api_key=y",
                "__data=z",
                "__query=1",
                "x=%00",
                "&",
                "a=%E2%82%AC",
                "q=" + "z" * 100,
            ]
        )
        | st.text(max_size=12),
        max_size=8,
    ).map("&".join)


@st.composite
def multipart_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    """(Content-Type header, body): well formed, truncated and malformed multipart."""
    boundary = draw(
        st.sampled_from(["XyZ", "----b", "a" * 70, "a b", '"q"', "", "=", "--", "\xe9"])
        | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20)
    )
    header_boundary = draw(st.sampled_from([boundary, f'"{boundary}"', boundary + "x", ""]))
    ctype = draw(
        st.sampled_from(
            [
                f"multipart/form-data; boundary={header_boundary}",
                f"multipart/form-data;boundary={header_boundary};charset=x-nope",
                "multipart/form-data",
                "multipart/form-data; boundary=",
                f"Multipart/Form-Data; BOUNDARY={header_boundary}",
                f"multipart/form-data; boundary={header_boundary}; x*",
            ]
        )
    )
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        disposition = draw(
            st.sampled_from(
                [
                    'form-data; name="f"',
                    'form-data; name="up"; filename="a.txt"',
                    "form-data",
                    'form-data; name=""',
                    "form-data; name*=utf-8''%E2%82%AC",
                    "form-data; name*=x-nope''a",
                    "form-data; name*=''",
                    'form-data; name="a',
                    "form-data; name=\"f\"; filename*=utf-8''%ff%fe",
                    'form-data; filename="../../etc/passwd"; name="p"',
                    'attachment; name="f"',
                    "",
                    'form-data; name="f"; x*',
                    "form-data; name*=",
                    'form-data; name="f"; =',
                ]
            )
        )
        part_headers = [f"Content-Disposition: {disposition}"]
        if draw(st.booleans()):
            part_headers.append("Content-Type: " + draw(content_types()))
        if draw(st.booleans()):
            part_headers.append(
                "Content-Transfer-Encoding: "
                + draw(
                    st.sampled_from(
                        ["base64", "quoted-printable", "8bit", "binary", "x-uuencode", "nope", "7bit"]
                    )
                )
            )
        payload = draw(
            st.binary(max_size=60)
            | st.sampled_from([b"hi", b"!!!===", b"=E9=", b"begin 644 a\n`\nend", b"\xff\xfe"])
        )
        parts.append("\r\n".join(part_headers).encode("latin-1", "replace") + b"\r\n\r\n" + payload)
    delimiter = b"--" + boundary.encode("latin-1", "replace")
    body = b"".join(delimiter + b"\r\n" + p + b"\r\n" for p in parts) + delimiter + b"--\r\n"
    if draw(st.booleans()):  # truncated anywhere, or with junk spliced in
        body = body[: draw(st.integers(0, len(body)))]
    if draw(st.integers(0, 4)) == 0:
        body += draw(st.binary(max_size=40))
    return ctype, body
