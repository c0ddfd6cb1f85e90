"""Hostile HTTP input against the real daemon, over raw sockets where a client library would
clean the input up first: header injection through redirects, 64 KB headers, path traversal in
upload file names."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.daemon import RouterFactory, RouterProcess
from tests.security_support import journal_count, journal_entities

CONFIG = """
[endpoints.go]
return_type = "redirect"
return_redirect = "https://example.com/next?n={{ __data.name }}"

[endpoints.flow]
return_type = "continue"

[endpoints.headers]
return_type = "continue"

[endpoints.upload]
return_type = "data"
return_data = "{{ __data.__files.doc.sha256 }}"

[forms.signup]
redirect = "https://example.com/thanks?n={{ __data.name }}"

[[workflows]]
name = "flow"
listen = "endpoints.flow"
run_mode = "sync"

[[workflows.steps]]
action = "respond"
return_type = "redirect"
return_redirect = "https://example.com/r?n={{ __data.name }}"

[[workflows]]
name = "headers"
listen = "endpoints.headers"
run_mode = "sync"

[[workflows.steps]]
action = "respond"
return_data = "ok"
headers = { "X-Name" = "{{ __data.name }}" }
"""

INJECTIONS = [
    "a\r\nSet-Cookie: evil=1\r\nX-Injected: yes",
    "a\nSet-Cookie: evil=1",
    "a\rSet-Cookie: evil=1",
    "a\r\n\r\n<script>alert(1)</script>",
    "a\x00Set-Cookie: evil=1",
    "a\u0085Set-Cookie: evil=1",  # NEL, a line break to some parsers
    "a\u2028Set-Cookie: evil=1",
    "caf\u00e9 \u20ac",
]


@pytest.fixture(scope="module")
def router(module_router_factory: RouterFactory) -> RouterProcess:
    return module_router_factory(CONFIG)


@pytest.fixture(scope="module")
def urls(router: RouterProcess) -> dict[str, str]:
    return {k: str(v["url"]) for k, v in router.sources().items()}


def raw_exchange(port: int, request: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes, read until the server closes (requests ask for Connection: close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading it all: read that answer
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def form_post(url: str, body: bytes, content_type: str = "application/x-www-form-urlencoded") -> bytes:
    parts = urlsplit(url)
    assert parts.port is not None
    head = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nOrigin: https://example.com\r\nConnection: close\r\n\r\n"
    )
    return raw_exchange(parts.port, head.encode() + body)


def split_response(raw: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip().lower(), value.strip()))
    return status, headers, body


# ---------------------------------------------------------------------------------- redirects


@pytest.mark.parametrize(
    "source, status", [("endpoints.go", 302), ("endpoints.flow", 302), ("forms.signup", 303)]
)
def test_redirect_location_is_encoded_never_split(
    router: RouterProcess, urls: dict[str, str], source: str, status: int
) -> None:
    for payload in INJECTIONS:
        raw = form_post(urls[source], urlencode({"name": payload}).encode())
        code, headers, body = split_response(raw)
        names = [n for n, _ in headers]
        assert code == status, (payload, raw[:500])
        assert "set-cookie" not in names and "x-injected" not in names, (payload, raw[:500])
        assert names.count("location") == 1 and b"<script>" not in body
        location = dict(headers)["location"]
        assert re.fullmatch(r"[\x21-\x7e]+", location), location  # visible ASCII only
        # The payload survives as data: decoding the query gives back exactly what was sent.
        assert parse_qs(urlsplit(location).query)["n"] == [payload], (payload, location)
    assert b"X-Request-Id" not in b"".join(p.encode("utf-8") for p in INJECTIONS)
    assert "Traceback" not in router.log()


def test_respond_header_built_from_data_fails_cleanly(router: RouterProcess, urls: dict[str, str]) -> None:
    """A `respond` header value that HTTP cannot carry fails the step with a clear error (the
    caller gets no reply from that step), and never reaches the wire."""
    ok = form_post(urls["endpoints.headers"], b"name=plain")
    code, headers, body = split_response(ok)
    assert (code, dict(headers)["x-name"], body) == (200, "plain", b"ok")
    for payload in INJECTIONS[:6] + ["\u20ac"]:
        raw = form_post(urls["endpoints.headers"], urlencode({"name": payload}).encode())
        code, headers, _ = split_response(raw)
        names = [n for n, _ in headers]
        assert code == 204, (payload, raw[:300])  # every run ended without a respond
        assert "x-name" not in names and "set-cookie" not in names and "x-injected" not in names
    signals = router.signals("--source", "endpoints.headers")
    failed = [s for s in signals if s["status"] == "failed"]
    assert len(failed) == 7
    assert all("illegal character" in json.dumps(s["runs"]) for s in failed)
    assert "Traceback" not in router.log()


# --------------------------------------------------------------------------------- huge heads


def request_with_headers(port: int, headers: list[tuple[str, str]], path: str = "/healthz") -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: 127.0.0.1",
        *(f"{k}: {v}" for k, v in headers),
        "Connection: close",
    ]
    return raw_exchange(port, ("\r\n".join(lines) + "\r\n\r\n").encode())


def test_64k_headers_get_431_and_the_daemon_keeps_serving(
    router: RouterProcess, urls: dict[str, str]
) -> None:
    port = router.http_port
    cases = {
        "one 64 KiB header": [("X-Big", "a" * 64 * 1024)],
        "many small headers": [(f"X-H{i}", "b" * 30) for i in range(2000)],
        "one 100 KiB header": [("X-Big", "c" * 100 * 1024)],
        "one 1 MiB header": [("X-Huge", "c" * 1024 * 1024)],
    }
    for label, headers in cases.items():
        raw = request_with_headers(port, headers)
        assert raw.startswith(b"HTTP/1.1 431 "), (label, raw[:200])
    huge_path = "/listener/" + "x" * 70_000
    raw = raw_exchange(port, f"GET {huge_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert raw[:12] in (b"HTTP/1.1 431", b"HTTP/1.1 414"), raw[:200]
    # Just under the limit is a normal request, journaled with its (big) header.
    parts = urlsplit(urls["endpoints.go"])
    raw = request_with_headers(port, [("X-Big", "d" * 60_000)], path=f"{parts.path}?name=big")
    assert raw.startswith(b"HTTP/1.1 302 "), raw[:200]
    assert journal_entities(router, "endpoints.go")[-1]["__headers"]["x-big"] == "d" * 60_000
    assert httpx.get(f"{router.base}/healthz", timeout=5).status_code == 200
    assert router.proc is not None and router.proc.poll() is None


# ---------------------------------------------------------------------------- upload names

TRAVERSALS = [
    "../../etc/passwd",
    "..\\..\\x",
    "/etc/passwd",
    "C:\\Windows\\System32\\drivers\\etc\\hosts",
    "....//....//x",
    "a\x00b.txt",
    "\x00",
    "../" * 50 + "deep",
    "x" * 4096 + ".txt",
    "caf\u00e9/../../\u20ac.txt",
    ".",
    "..",
    "~/.ssh/authorized_keys",
]


def multipart(filename_param: str, payload: bytes, boundary: str = "XyZ-boundary-42") -> tuple[bytes, str]:
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="note"\r\n\r\nhello\r\n'
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="doc"; {filename_param}\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def quoted(name: str) -> str:
    return 'filename="' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def snapshot(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def test_upload_names_are_data_and_files_stay_in_the_upload_area(
    router: RouterProcess, urls: dict[str, str]
) -> None:
    root = router.tmp
    files_dir = router.data_dir / "files"
    before = snapshot(root)
    sent: list[tuple[str, bytes]] = []
    forms = [quoted(name) for name in TRAVERSALS]
    forms.append("filename*=UTF-8''..%2F..%2Fescaped%00.txt")
    expected_names = [*TRAVERSALS, "../../escaped\x00.txt"]
    for i, param in enumerate(forms):
        payload = f"upload {i} ".encode() + os.urandom(16)
        body, ctype = multipart(param, payload)
        raw = form_post(urls["endpoints.upload"], body, ctype)
        code, _, answer = split_response(raw)
        assert code == 200, (param[:100], raw[:300])
        assert answer.decode() == hashlib.sha256(payload).hexdigest()
        sent.append((expected_names[i], payload))
    entities = journal_entities(router, "endpoints.upload")[-len(sent) :]
    for (name, payload), entity in zip(sent, entities, strict=True):
        info = entity["__files"]["doc"]
        assert info["name"] == name  # the original name is kept, as data
        digest = hashlib.sha256(payload).hexdigest()
        stored = Path(info["path"]).resolve()
        assert stored == (files_dir / digest[:2] / digest).resolve()
        assert stored.read_bytes() == payload
    created = snapshot(root) - before
    outside = [
        p for p in created if files_dir not in p.parents and p != files_dir and p.parent != router.data_dir
    ]  # the journal's own files live in the data dir
    assert outside == [], outside
    for path in created:
        if files_dir in path.parents and path.is_file():
            assert re.fullmatch(r"[0-9a-f]{64}", path.name) and path.parent.name == path.name[:2], path
    for bad in ("passwd", "x", "deep", "hosts", "authorized_keys", "escaped"):
        assert not any(p.name.startswith(bad) for p in created), bad
    assert journal_count(router, "endpoints.upload") >= len(sent)


def test_upload_name_in_a_form_too(router: RouterProcess, urls: dict[str, str]) -> None:
    body, ctype = multipart(quoted("../../../../tmp/evil.sh"), b"#!/bin/sh\necho pwned\n")
    body = body.replace(b'name="note"', b'name="name"')
    started = time.time()
    code, headers, _ = split_response(form_post(urls["forms.signup"], body, ctype))
    assert code == 303 and parse_qs(urlsplit(dict(headers)["location"]).query)["n"] == ["hello"]
    entity = journal_entities(router, "forms.signup")[-1]
    assert entity["__files"]["doc"]["name"] == "../../../../tmp/evil.sh"
    assert not (Path("/tmp/evil.sh").exists() and Path("/tmp/evil.sh").stat().st_mtime >= started)
