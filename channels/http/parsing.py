"""Turn an HTTP request into the `__data` namespace (SPEC §5).

Body parsing, first match wins: form (urlencoded or multipart) merged with the query; JSON merged
with the query; any other body into `__body`; no body: the query alone. Body fields win over
query parameters.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from email.errors import MessageError
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from channels.http.asgi import Request, pairs_to_dict

# Credentials the caller sent are not kept in the journal; workflows see them masked.
MASKED_HEADERS = frozenset({"authorization", "x-api-key", "cookie", "token", "proxy-authorization"})
MASKED_QUERY = frozenset({"apikey", "api_key", "token"})
MASK = "***"
# Deeper documents parse, but templates, conditions and json_encode recurse through them and would
# fail at render time (a 500 for the caller's input); no real payload comes near this.
MAX_JSON_DEPTH = 128
MAX_MULTIPART_PARTS = 1000

# Names the daemon sets itself (SPEC §5): a body field or query parameter of the same name is
# dropped, so a caller cannot forge its address, headers, uploads or the signal's identity.
RESERVED_FIELDS = frozenset(
    {
        "__headers",
        "__method",
        "__path",
        "__query",
        "__remote_addr",
        "__request_id",
        "__files",
        "__body",
        "__json",
        "__signal_id",
        "__channel",
        "__source",
        "__received_at",
    }
)


class BadBody(Exception):
    """The body does not parse as its content type says; the message is safe to show."""


def is_json_type(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


def request_meta(request: Request) -> dict[str, Any]:
    headers = {k: (MASK if k in MASKED_HEADERS else v) for k, v in request.headers.items()}
    query = {k: (MASK if k.lower() in MASKED_QUERY else v) for k, v in request.query.items()}
    return {
        "__headers": headers,
        "__method": request.method,
        "__path": request.path,
        "__query": query,
        "__remote_addr": request.client,
        "__request_id": request.request_id,
    }


def mergeable_query(data: dict[str, Any]) -> dict[str, Any]:
    """Query parameters that join the body fields (credentials stay out)."""
    return caller_fields({k: v for k, v in data["__query"].items() if k.lower() not in MASKED_QUERY})


def caller_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The caller's fields without the names the daemon sets itself."""
    return {k: v for k, v in fields.items() if k not in RESERVED_FIELDS}


def parse_json(body: bytes) -> Any:
    try:
        parsed = json.loads(body)
    except UnicodeDecodeError as exc:
        raise BadBody("body is not valid UTF-8 JSON") from exc
    except json.JSONDecodeError as exc:
        raise BadBody(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError as exc:  # the stdlib parser recurses once per level of nesting
        raise BadBody("invalid JSON: nested too deeply") from exc
    except ValueError as exc:  # CPython refuses integers of more than 4300 digits
        raise BadBody(f"invalid JSON: {exc}") from exc
    # Fewer brackets than the limit cannot nest past it: most bodies skip the walk.
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and _nested_deeper_than(parsed, MAX_JSON_DEPTH):
        raise BadBody(f"invalid JSON: nested deeper than {MAX_JSON_DEPTH} levels")
    return parsed


def _nested_deeper_than(value: Any, limit: int) -> bool:
    """Level by level, so the check cannot run out of stack (json.loads only makes dicts and lists)."""
    level = [value] if type(value) in (dict, list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below = []
        for item in level:
            for child in item.values() if type(item) is dict else item:
                if type(child) is dict or type(child) is list:
                    below.append(child)
        level = below
    return False


def build_data(request: Request, files_dir: Path | None) -> dict[str, Any]:
    """The entity's `__data` for an HTTP request whose body has been read."""
    data: dict[str, Any] = request_meta(request)
    query = mergeable_query(data)
    body = request.body
    ctype = request.content_type
    if body and ctype == "application/x-www-form-urlencoded":
        try:
            fields = pairs_to_dict(
                parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
            )
        except UnicodeDecodeError as exc:
            raise BadBody("form body is not valid UTF-8") from exc
        data.update(query)
        data.update(caller_fields(fields))
    elif body and ctype == "multipart/form-data":
        fields, files = parse_multipart(request.headers.get("content-type", ""), body, files_dir)
        data.update(query)
        data.update(caller_fields(fields))
        data["__files"] = files
    elif body and (is_json_type(ctype) or (not ctype and body.lstrip()[:1] in (b"{", b"["))):
        parsed = parse_json(body)
        data.update(query)
        if isinstance(parsed, dict):
            data.update(caller_fields(parsed))
        else:
            data["__json"] = parsed
            data["__body"] = body.decode("utf-8", "replace")
    elif body:
        data.update(query)
        data["__body"] = body.decode("utf-8", "replace")
    else:
        data.update(query)
    return data


def parse_multipart(
    content_type: str, body: bytes, files_dir: Path | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    if "boundary=" not in content_type:
        raise BadBody("multipart/form-data without a boundary")
    try:
        parts = _read_parts(content_type, body)
    except EMAIL_PARSER_BUGS as exc:
        raise BadBody("multipart body could not be parsed") from exc
    pairs: list[tuple[str, str]] = []
    files: dict[str, Any] = {}
    for part in parts:
        if part.filename is not None:
            info = (
                save_file(files_dir, part.payload)
                if files_dir is not None
                else {"sha256": _sha256(part.payload)}
            )
            files[part.name] = {
                "name": part.filename,
                "content_type": part.content_type,
                "size": len(part.payload),
                **info,
            }
        else:
            pairs.append((part.name, _decode_text(part.payload, part.charset)))
    return pairs_to_dict(pairs), files


# The stdlib header parser has edge cases that raise instead of registering a defect, e.g.
# IndexError for `boundary=b; x*`; headers are parsed lazily, so every read can raise.
EMAIL_PARSER_BUGS = (IndexError, KeyError, TypeError, AttributeError, ValueError, LookupError, MessageError)


@dataclass
class _Part:
    name: str
    filename: str | None
    content_type: str
    charset: str
    payload: bytes


def _read_parts(content_type: str, body: bytes) -> list[_Part]:
    head = b"Content-Type: " + content_type.encode("latin-1") + b"\r\nMIME-Version: 1.0\r\n\r\n"
    parser = BytesParser(policy=HTTP)
    # The email parser costs ~0.3-1 ms per part, on the event loop: a 1 MiB body of 19,000 empty
    # parts held every request for 8-25 s. Count delimiters first (the boundary as the full
    # parse will read it); more than MAX_MULTIPART_PARTS is refused, as Starlette and Werkzeug do.
    boundary = parser.parsebytes(head, headersonly=True).get_boundary()
    if boundary and body.count(b"--" + boundary.encode("utf-8", "surrogateescape")) > MAX_MULTIPART_PARTS + 1:
        raise BadBody(f"multipart body has more than {MAX_MULTIPART_PARTS} parts")
    message = parser.parsebytes(head + body)
    if not message.is_multipart():
        raise BadBody("multipart body could not be parsed")
    parts: list[_Part] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        raw = part.get_payload(decode=True)
        parts.append(
            _Part(
                name=str(name),
                filename=part.get_filename(),
                content_type=part.get_content_type(),
                charset=part.get_content_charset() or "utf-8",
                payload=raw if isinstance(raw, bytes) else b"",
            )
        )
    return parts


def _decode_text(payload: bytes, charset: str) -> str:
    """A field's text in the charset its part names; an unknown or unusable one (not a codec,
    a bytes-to-bytes codec, `undefined`, a NUL in the name) falls back to UTF-8."""
    try:
        return payload.decode(charset, "replace")
    except (LookupError, ValueError):
        return payload.decode("utf-8", "replace")


def _sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def save_file(files_dir: Path, payload: bytes) -> dict[str, str]:
    """Content-addressed and fsynced: on disk before the signal that names it is acknowledged."""
    digest = _sha256(payload)
    target = files_dir / digest[:2] / digest
    if not target.exists():
        if not target.parent.is_dir():
            target.parent.mkdir(parents=True, exist_ok=True)
            _fsync_dir(target.parent.parent)
        tmp = target.with_suffix(
            f".tmp{os.getpid()}.{threading.get_ident()}"
        )  # concurrent savers of one file
        with open(tmp, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)  # the rename itself must survive a power cut too
    return {"sha256": digest, "path": str(target)}


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
