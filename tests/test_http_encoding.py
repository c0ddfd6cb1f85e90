"""Issue 16 bug 5 against the real daemon: request bodies with `Content-Encoding: gzip` or
`deflate` are decoded as they arrive, `max_body` bounding the decoded size (a zip bomb is a 413
and the daemon's RSS barely moves); other codings get 415; HEAD is answered like GET, no body."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import zlib
from pathlib import Path

import httpx
import pytest

from tests.daemon import RouterFactory, RouterProcess

LIMIT = 1024 * 1024
CONFIG = """
[webhooks.in]
max_body = "1MiB"

[endpoints.page]
return_type = "data"
return_data = '{"hello": "{{ __data.name }}", "method": "{{ __data.__method }}"}'

[forms.signup]

[[workflows]]
name = "noop"
listen = "webhooks.in"

[[workflows.steps]]
action = "log"
message = "got {{ __data.n }}"
"""


@pytest.fixture(scope="module")
def router(module_router_factory: RouterFactory) -> RouterProcess:
    return module_router_factory(CONFIG)


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def post(url: str, body: bytes, encoding: str | None, **headers: str) -> httpx.Response:
    if encoding:
        headers["content-encoding"] = encoding
    return httpx.post(url, content=body, headers={"content-type": "application/json", **headers}, timeout=30)


def journaled(router: RouterProcess, n: int) -> dict[str, object]:
    rows = router.wait_for(
        lambda: [s for s in router.signals("--source", "webhooks.in") if s["entity"].get("n") == n]
    )
    assert len(rows) == 1
    return rows[0]["entity"]  # type: ignore[no-any-return]


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def test_gzip_and_deflate_bodies_are_decoded(router: RouterProcess) -> None:
    url = router.url("webhooks.in")
    cases = [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", raw_deflate),
        ("GZIP, identity", gzip.compress),
    ]
    for n, (coding, pack) in enumerate(cases, start=1):
        body = json.dumps({"n": n, "text": "héllo " * 50}).encode()
        r = post(url, pack(body), coding)
        assert r.status_code == 200, (coding, r.text)
        assert journaled(router, n)["text"] == "héllo " * 50
    # Two gzip members one after the other are one body (RFC 1952 §2.2).
    body = json.dumps({"n": 99, "text": "two members"}).encode()
    assert post(url, gzip.compress(body[:10]) + gzip.compress(body[10:]), "gzip").status_code == 200
    assert journaled(router, 99)["text"] == "two members"


def test_unknown_broken_and_truncated_encodings(router: RouterProcess) -> None:
    url = router.url("webhooks.in")
    before = len(router.signals("--source", "webhooks.in"))
    body = json.dumps({"n": 1}).encode()
    for coding in ("br", "zstd", "gzip, gzip", "compress"):
        r = post(url, body, coding)
        assert r.status_code == 415, (coding, r.text)
        assert r.headers["accept-encoding"] == "gzip, deflate" and "gzip" in r.json()["error"]
    r = post(url, b"not gzip at all", "gzip")
    assert r.status_code == 400 and "not valid gzip" in r.json()["error"]
    r = post(url, gzip.compress(body)[:-6], "gzip")
    assert r.status_code == 400 and "truncated" in r.json()["error"]
    r = post(url, gzip.compress(body) + b"junk", "gzip")
    assert r.status_code == 400
    r = post(url, zlib.compress(body) + b"junk", "deflate")
    assert r.status_code == 400 and "after the end" in r.json()["error"]
    # A form and an SMS source read their bodies the same way.
    r = httpx.post(
        router.url("forms.signup"),
        content=b"a=1",
        headers={"content-type": "application/x-www-form-urlencoded", "content-encoding": "br"},
    )
    assert r.status_code == 415 and r.headers["content-type"].startswith("text/html")
    assert len(router.signals("--source", "webhooks.in")) == before


def padded(size: int) -> bytes:
    """A JSON object of exactly `size` bytes."""
    head = b'{"n": 7, "pad": "'
    return head + b"x" * (size - len(head) - 2) + b'"}'


def test_max_body_applies_to_the_decoded_size(router: RouterProcess) -> None:
    url = router.url("webhooks.in")
    assert len(padded(LIMIT)) == LIMIT
    r = post(url, gzip.compress(padded(LIMIT)), "gzip")
    assert r.status_code == 200, r.text
    assert len(journaled(router, 7)["pad"]) == LIMIT - 19  # type: ignore[arg-type]
    r = post(url, gzip.compress(padded(LIMIT + 1)), "gzip")
    assert r.status_code == 413 and r.json() == {
        "error": f"decompressed request body exceeds the limit of {LIMIT} bytes",
        "limit": LIMIT,
    }


def bomb(decoded: int) -> bytes:
    packer = zlib.compressobj(9, wbits=16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    return b"".join([*(packer.compress(zeros) for _ in range(decoded // len(zeros))), packer.flush()])


def test_a_zip_bomb_is_refused_without_the_memory(router: RouterProcess) -> None:
    assert router.proc is not None
    pid = router.proc.pid
    url = router.url("webhooks.in")
    small, large = bomb(10 * 1024 * 1024), bomb(1024 * 1024 * 1024)  # 10 MB and 1 GB of zeros
    assert len(small) < 20_000 and len(large) < LIMIT
    post(url, b'{"n": 0}', None)  # warm: the first request of a route allocates a little
    idle = status_kb(pid, "VmRSS")
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    for body in (small, large, small):
        r = post(url, body, "gzip")
        assert r.status_code == 413, r.text
        assert r.json()["error"].startswith("decompressed request body exceeds")
    peak = status_kb(pid, "VmHWM")
    assert peak - idle < 20 * 1024, (
        f"peak RSS {peak} kB is {(peak - idle) / 1024:.1f} MB above idle {idle} kB"
    )
    # Ten bombs at once, each on its own connection: still bounded (10 x the 1 MB limit).
    errors: list[str] = []

    def one() -> None:
        r = post(url, small, "gzip")
        if r.status_code != 413:
            errors.append(r.text)

    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert httpx.get(f"{router.base}/healthz", timeout=5).status_code == 200


# -- HEAD ------------------------------------------------------------------------------------------


def raw_head(router: RouterProcess, path: str) -> bytes:
    """A HEAD over a bare socket, then a GET on the same connection: the HEAD must carry no body
    (a body would be read as the start of the next answer)."""
    with socket.create_connection(("127.0.0.1", router.http_port), timeout=10) as sock:
        host = f"127.0.0.1:{router.http_port}"
        sock.sendall(
            f"HEAD {path} HTTP/1.1\r\nHost: {host}\r\n\r\nGET /healthz HTTP/1.1\r\nHost: {host}\r\n"
            f"Connection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_head_is_answered_like_get_without_a_body(router: RouterProcess) -> None:
    page = router.url("endpoints.page") + "?name=ann"
    get = httpx.get(page, timeout=10)
    head = httpx.head(page, timeout=10)
    assert (get.status_code, head.status_code) == (200, 200)
    assert get.json() == {"hello": "ann", "method": "GET"}
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert int(head.headers["content-length"]) == len(b'{"hello": "ann", "method": "HEAD"}')
    raw = raw_head(router, page.removeprefix(router.base))
    first, _, rest = raw.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200") and rest.startswith(b"HTTP/1.1 200"), raw
    assert b'{"status":"ok"}' in rest
    health = httpx.head(f"{router.base}/healthz", timeout=10)
    assert (health.status_code, health.content, health.headers["content-length"]) == (200, b"", "15")
    # Where GET is not allowed, neither is HEAD.
    r = httpx.head(router.url("webhooks.in"), timeout=10)
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert httpx.patch(page, timeout=10).headers["allow"] == "GET, HEAD, POST, PUT, OPTIONS"
