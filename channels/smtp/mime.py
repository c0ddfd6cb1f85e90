"""A raw RFC 5322 message → `__data.incoming_email` (SPEC §5).

Parsed with the stdlib `email` package (policy=default): RFC 2047 headers decoded, bodies decoded
from quoted-printable / base64 and their charsets. The text and HTML bodies are the ones
`EmailMessage.get_body` picks; every other leaf part (attachments, inline images, extra text
parts, attached messages) is saved content-addressed and fsynced under the data dir and listed
in `attachments` with name, content type, size and sha256.

Mail in the wild is often malformed: nothing here raises on a bad header or part. A field that
cannot be decoded falls back to its raw text, so a message is never refused for its content.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from collections.abc import Iterator
from email import policy
from email.errors import MessageError
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import structlog

from channels.http.parsing import EMAIL_PARSER_BUGS, save_file

log = structlog.get_logger("router.smtp")

_PARSER = BytesParser(policy=policy.default)
_LENIENT_PARSER = BytesParser(EmailMessage, policy=policy.compat32)


def parse_email(raw: bytes, *, files_dir: Path | None, received_at: str) -> dict[str, Any]:
    """The `incoming_email` fields for one message; attachments are on disk when this returns."""
    try:
        return _parse_email(_PARSER, raw, files_dir=files_dir, received_at=received_at)
    except EMAIL_PARSER_BUGS:
        # policy.default's header parser raises on some malformed parameters (IndexError for
        # `Content-Type: text/plain; x*`); compat32's older rules read them. Bodies then come
        # from the raw payloads (no content manager), which _text already falls back to.
        return _parse_email(_LENIENT_PARSER, raw, files_dir=files_dir, received_at=received_at)


def _parse_email(
    parser: BytesParser[Any], raw: bytes, *, files_dir: Path | None, received_at: str
) -> dict[str, Any]:
    try:
        msg: EmailMessage = parser.parsebytes(raw)
    except RecursionError:
        # The stdlib parser recurses once per nested part: a message nested a few hundred levels
        # deep is kept with its top headers and its whole body as a single part.
        msg = parser.parsebytes(raw, headersonly=True)
    sender, to, cc = _addresses(msg, "from"), _addresses(msg, "to"), _addresses(msg, "cc")
    text_part = _body_part(msg, "plain")
    html_part = _body_part(msg, "html")
    attachments = [
        _attachment(part, index, files_dir)
        for index, part in enumerate(_leaves(msg))
        if part is not text_part and part is not html_part
    ]
    return {
        "from_email": sender[0]["email"] if sender else "",
        "from_name": sender[0]["name"] if sender else "",
        "to_emails": [a["email"] for a in to],
        "cc_emails": [a["email"] for a in cc],
        "to": to,
        "cc": cc,
        "reply_to": [a["email"] for a in _addresses(msg, "reply-to")],
        "subject": _header(msg, "subject"),
        "text": _lines(_text(text_part)),
        "html": _lines(_text(html_part)),
        "date": _date(msg),
        "date_received": received_at,
        "message_id": message_id(msg),
        "in_reply_to": _header(msg, "in-reply-to").strip(),
        "headers": _headers(msg),
        "attachments": attachments,
        "size": len(raw),
    }


def message_id(msg: Message) -> str:
    return _header(msg, "message-id").strip()


# -- headers ------------------------------------------------------------------------------------
# Headers are decoded from their raw text (unfold, RFC 2047, 8-bit as UTF-8) rather than through
# the policy's header objects: same result for what we keep, at a fraction of the cost.

_FOLD = re.compile(r"\r?\n(?=[ \t])")


def _decode(raw: str) -> str:
    value = _FOLD.sub("", raw).strip()
    if not value.isascii():  # 8-bit header bytes (SMTPUTF8 or sloppy senders) arrive surrogate-escaped
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if "=?" in value:
        try:
            return str(make_header(decode_header(value)))
        except (
            ValueError,
            LookupError,
            UnicodeError,
            MessageError,
        ):  # CharsetError: a non-ASCII charset name
            return value
    return value


def _raw_header(msg: Message, name: str) -> str | None:
    for key, value in msg.raw_items():
        if key.lower() == name:
            return str(value)
    return None


def _header(msg: Message, name: str) -> str:
    raw = _raw_header(msg, name)
    return "" if raw is None else _decode(raw)


def _headers(msg: Message) -> dict[str, Any]:
    """Header names lowercased; a repeated header (Received, …) becomes a list in order."""
    out: dict[str, Any] = {}
    for key, raw in msg.raw_items():
        name = key.lower()
        value = _decode(str(raw))
        if name in out:
            if not isinstance(out[name], list):
                out[name] = [out[name]]
            out[name].append(value)
        else:
            out[name] = value
    return out


# -- addresses ----------------------------------------------------------------------------------
# Addresses are what the stdlib's header registry (policy=default, RFC 5322 and 6532) makes of the
# header, keeping only real addr-specs (a local part and a domain: `<>`, a lone `foo` or the
# `@powerupdev.com` that `getaddresses` made of `tim@powerupdev.com concierge@powerupdev.com` are
# not addresses). The registry costs ~45 µs a header, so the shape most mail has — one dot-atom
# address, bare or in `<…>` after plain words — is read by a pattern that gives what the registry
# gives for it (tests/test_smtp_addresses.py checks that on generated headers and on a corpus).

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATEXT}(?:\.{_ATEXT})*"
_ADDR_SPEC = rf"{_DOT_ATOM}@{_DOT_ATOM}"
_PLAIN_ADDRESS = re.compile(
    rf"[ \t]*(?:(?P<bare>{_ADDR_SPEC})|(?P<words>{_ATEXT}(?:[ \t]+{_ATEXT})*)?[ \t]*<(?P<angle>{_ADDR_SPEC})>)[ \t]*"
)
# A registry that raises (IndexError on `foo@` or a trailing `<`, in CPython up to 3.13) leaves
# the header to this salvage: the address-shaped tokens in it, without names.
_SALVAGE = re.compile(rf"(?<![^\s<>,;:])({_ADDR_SPEC})(?![^\s<>,;:])")


def _utf8(value: str) -> str:
    """8-bit header bytes (SMTPUTF8 or sloppy senders) arrive surrogate-escaped: decode as UTF-8."""
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def addresses(name: str, raw: str) -> list[dict[str, str]]:
    """The addresses of one raw address header (`from`, `to`, `cc`, `reply-to`), in order."""
    value = raw.replace("\r", "").replace("\n", "")  # unfolded as policy.header_fetch_parse does
    plain = _PLAIN_ADDRESS.fullmatch(value) if "=?" not in value else None
    if plain:
        words = plain["words"]
        return [{"email": plain["bare"] or plain["angle"], "name": " ".join(words.split()) if words else ""}]
    try:
        header = policy.default.header_factory(name, value)
        found = [(a.addr_spec, a.display_name) for a in header.addresses if a.username and a.domain]
    except Exception:  # noqa: BLE001 - the registry's parser has crashing inputs; a message never fails
        found = [(addr, "") for addr in _SALVAGE.findall(value)]
    return [{"email": _utf8(addr), "name": _utf8(display)} for addr, display in found]


def _addresses(msg: Message, name: str) -> list[dict[str, str]]:
    raw = _raw_header(msg, name)
    return addresses(name, raw) if raw else []


def _date(msg: Message) -> str:
    raw = _header(msg, "date")
    if not raw:
        return ""
    try:
        return parsedate_to_datetime(raw).isoformat()
    except (TypeError, ValueError, IndexError):
        return raw


# -- parts --------------------------------------------------------------------------------------


def _leaves(part: Message) -> Iterator[Message]:
    """Every non-multipart part, depth first; an attached message (message/rfc822) is one leaf."""
    if part.get_content_maintype() == "multipart" and part.is_multipart():
        for sub in part.get_payload():
            if isinstance(sub, Message):
                yield from _leaves(sub)
    else:
        yield part


def _body_part(msg: EmailMessage, subtype: str) -> Message | None:
    try:
        part = msg.get_body(preferencelist=(subtype,))
    except Exception:  # noqa: BLE001
        return None
    if part is None or part.get_content_subtype() != subtype:
        return None
    return part


def _text(part: Message | None) -> str:
    if part is None:
        return ""
    try:
        content = part.get_content()  # type: ignore[attr-defined]
        if isinstance(content, str):
            return content
    except Exception:  # noqa: BLE001 - unknown charset, broken transfer encoding
        pass
    payload = _payload(part)
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except (LookupError, ValueError):  # unknown, not a text codec, `undefined`, NUL in the name
        return payload.decode("utf-8", "replace")


def _lines(text: str) -> str:
    """CRLF from the wire → "\n", as workflows and templates expect."""
    return text.replace("\r\n", "\n")


def _payload(part: Message) -> bytes:
    try:
        if part.get_content_maintype() == "message":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return inner[0].as_bytes()
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            return payload
        raw = part.get_payload()
        return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""
    except Exception:  # noqa: BLE001
        return b""


def _attachment(part: Message, index: int, files_dir: Path | None) -> dict[str, Any]:
    payload = _payload(part)
    ctype = part.get_content_type()
    try:
        name = part.get_filename() or ""
    except Exception:  # noqa: BLE001
        name = ""
    if not name:
        name = f"part-{index + 1}{mimetypes.guess_extension(ctype) or '.bin'}"
    if files_dir is not None:
        info: dict[str, Any] = save_file(files_dir, payload)
    else:
        info = {"sha256": hashlib.sha256(payload).hexdigest()}
    disposition = (part.get_content_disposition() or "").lower()
    content_id = _header(part, "content-id").strip().strip("<>")
    return {
        "name": name,
        "content_type": ctype,
        "size": len(payload),
        **info,
        "disposition": disposition or ("inline" if content_id else "attachment"),
        "content_id": content_id,
    }
