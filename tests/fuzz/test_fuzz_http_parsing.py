"""Fuzz the HTTP body parsers in process: any body either becomes `__data` that journals and
reloads, or is refused with `BadBody` (a 400 with a safe message). Nothing else may escape."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from channels.http.asgi import Request
from channels.http.parsing import (
    MAX_JSON_DEPTH,
    MAX_MULTIPART_PARTS,
    BadBody,
    build_data,
    parse_json,
    parse_multipart,
)
from channels.http.pipeline import Refused, parse_json_now
from engine.entity import Entity
from tests.fuzz import strategies as fs
from tests.fuzz.profiles import examples


@pytest.fixture(scope="module")
def files_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fuzz-files-") as tmp:
        yield Path(tmp)


async def _no_receive() -> dict[str, Any]:
    raise AssertionError("the body is already read")


def make_request(body: bytes, content_type: str | None, query: str = "", method: str = "POST") -> Request:
    headers = {"host": "127.0.0.1"}
    if content_type is not None:
        headers["content-type"] = content_type
    return Request(
        scope={},
        receive=_no_receive,
        method=method,
        path="/listener/a/b",
        query_string=query,
        headers=headers,
        client="127.0.0.1",
        request_id="fuzz",
        body=body,
        body_read=True,
    )


def assert_journals(data: dict[str, Any], request: Request) -> None:
    """What was accepted must survive the journal (serialized, then read back on recovery) and
    the names the daemon sets must be the daemon's, whatever the caller sent."""
    entity = Entity("endpoints", "endpoints.fuzz", data)
    again = json.loads(entity.to_json())
    assert (again["__signal_id"], again["__source"], again["__channel"]) == (
        entity.id,
        "endpoints.fuzz",
        "endpoints",
    )
    assert (again["__remote_addr"], again["__method"], again["__path"]) == (
        request.client,
        request.method,
        request.path,
    )
    assert again["__headers"].get("host") == request.headers.get("host")


def check_build(request: Request, files: Path | None) -> None:
    try:
        data = build_data(request, files)
    except BadBody as exc:
        assert str(exc)
        return
    assert data["__method"] == request.method
    assert_journals(data, request)


@examples(450)
@given(
    body=fs.json_bodies(),
    ctype=st.sampled_from(["application/json", "application/ld+json", None, ""]),
    query=fs.query_strings(),
)
@example(body=fs.nested(100_000), ctype="application/json", query="")
@example(body=fs.nested(100_000, kind="{"), ctype=None, query="")
@example(body=fs.nested(990), ctype="application/json", query="")
@example(body=fs.nested(128), ctype="application/json", query="")
@example(body=fs.nested(129, kind="{"), ctype="application/json", query="")
@example(body=b"9" * 5000, ctype="application/json", query="")
@example(body=b'{"n": 1e999999}', ctype="application/json", query="")
@example(body=b'{"s": "\xed\xa0\x80"}', ctype="application/json", query="")
def test_json_bodies(body: bytes, ctype: str | None, query: str) -> None:
    check_build(make_request(body, ctype, query), None)


@examples(300)
@given(body=fs.json_bodies(), query=fs.query_strings())
@example(body=fs.nested(100_000), query="")
@example(body=b"-" + b"1" * 4301, query="")
@example(body=b'{"__signal_id": null, "__remote_addr": "10.0.0.1", "__headers": {}}', query="__source=x")
def test_webhook_json(body: bytes, query: str) -> None:
    request = make_request(body, "application/json", query)
    try:
        data = parse_json_now(request)
    except Refused as refused:
        assert refused.response.status == 400
        return
    assert_journals(data, request)


@examples(450)
@given(
    body=fs.urlencoded_bodies(),
    query=fs.query_strings(),
    ctype=st.sampled_from(
        ["application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=latin-1"]
    ),
)
@example(body=b"a=%ff&b=\xff", query="", ctype="application/x-www-form-urlencoded")
@example(body=b"a[]=1&a=2&a[]=3", query="a=0", ctype="application/x-www-form-urlencoded")
@example(
    body=b"__method=GET&__files=x", query="__remote_addr=1.2.3.4", ctype="application/x-www-form-urlencoded"
)
def test_urlencoded_bodies(body: bytes, query: str, ctype: str) -> None:
    check_build(make_request(body, ctype, query), None)


@examples(600)
@given(case=fs.multipart_bodies())
@example(
    case=(
        "multipart/form-data; boundary=XX",
        b'--XX\r\nContent-Disposition: form-data; name="a"\r\nContent-Type: text/plain; charset=nope\r\n\r\n'
        b"hi\r\n--XX--\r\n",
    )
)
@example(
    case=(
        "multipart/form-data; boundary=XX",
        b'--XX\r\nContent-Disposition: form-data; name="a"\r\nContent-Type: text/plain; charset=utf-8\x00\r\n'
        b"\r\nhi\r\n--XX--\r\n",
    )
)
@example(
    case=(
        "multipart/form-data; boundary=b; x*",
        b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--b--",
    )
)
@example(
    case=(
        "multipart/form-data; boundary=b",
        b'--b\r\nContent-Disposition: form-data; name="a"; x*\r\n\r\nx\r\n--b--',
    )
)
def test_multipart_bodies(case: tuple[str, bytes], files_dir: Path) -> None:
    ctype, body = case
    check_build(make_request(body, ctype), files_dir)
    try:
        fields, files = parse_multipart(ctype, body, None)
    except BadBody:
        return
    assert all(isinstance(name, str) for name in fields)
    for info in files.values():
        assert len(info["sha256"]) == 64


@examples(450)
@given(
    body=st.binary(max_size=300) | fs.json_bodies() | fs.urlencoded_bodies(),
    ctype=fs.content_types(),
    query=fs.query_strings(),
    method=st.sampled_from(["POST", "PUT", "GET", "OPTIONS"]),
)
def test_any_content_type(body: bytes, ctype: str, query: str, method: str) -> None:
    """Whatever the content type claims, the request's own view of it must be a clean outcome."""
    check_build(make_request(body, ctype, query, method), None)


@examples(300)
@given(
    raw_headers=st.lists(st.tuples(st.binary(min_size=1, max_size=20), st.binary(max_size=60)), max_size=8),
    query=st.binary(max_size=100),
    path=st.text(max_size=40),
)
def test_request_from_scope(raw_headers: list[tuple[bytes, bytes]], query: bytes, path: str) -> None:
    """hypercorn hands over raw header bytes and query bytes: never a reason to fail."""
    scope = {"type": "http", "method": "post", "path": path, "query_string": query, "headers": raw_headers}
    request = Request.from_scope(scope, _no_receive, "fuzz")
    assert isinstance(request.query, dict)
    assert isinstance(request.content_type, str)
    request.body, request.body_read = b"x", True
    check_build(request, None)


def test_multipart_part_limit() -> None:
    part = b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\nx\r\n'
    fields, _ = parse_multipart(
        "multipart/form-data; boundary=b", part * MAX_MULTIPART_PARTS + b"--b--", None
    )
    assert len(fields["a"]) == MAX_MULTIPART_PARTS
    for ctype in ("multipart/form-data; boundary=b", 'multipart/form-data; boundary="b"'):
        with pytest.raises(BadBody, match="more than"):
            parse_multipart(ctype, part * 19_000 + b"--b--", None)


def test_parse_json_nesting_limit() -> None:
    assert parse_json(fs.nested(MAX_JSON_DEPTH)) == parse_json(fs.nested(MAX_JSON_DEPTH))
    for depth in (MAX_JSON_DEPTH + 1, 990, 100_000):
        with pytest.raises(BadBody, match="nested"):
            parse_json(fs.nested(depth))
