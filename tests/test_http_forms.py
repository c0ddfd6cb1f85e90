"""`/forms/{name}` against the real daemon: urlencoded and multipart, 303, honeypot, origins, pages."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest

CONFIG = """
[forms.signup]
redirect = "https://example.com/thanks?who={{ __data.name | url_encode }}"
allowed_origins = ["https://www.example.com", "http://shop.example.org:8000"]

[forms.plain]

[forms.small]
max_body = "2KiB"

[forms.traps]
honeypot = "fax"
redirect = "/done"

[[workflows]]
name = "signup"
listen = "forms.signup"

[[workflows.steps]]
action = "create_record"
record_type = "lead"
fields = { name = "{{ __data.name }}", email = "{{ __data.email }}" }

[[workflows]]
name = "plain"
listen = ["forms.plain", "forms.traps"]

[[workflows.steps]]
action = "log"
message = "form {{ __data.__source }}"
"""

ORIGIN = {"Origin": "https://www.example.com"}


@pytest.fixture(scope="module")
def router(module_router_factory):  # type: ignore[no-untyped-def]
    return module_router_factory(CONFIG)


@pytest.fixture(scope="module")
def urls(router):  # type: ignore[no-untyped-def]
    return {k: v.get("url") for k, v in router.sources().items()}


def _signals(router, source: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return list(router.signals("--source", source))


def test_urlencoded_post_redirects_303_and_journals(router, urls) -> None:  # type: ignore[no-untyped-def]
    url = urls["forms.signup"]
    r = httpx.post(url, data={"name": "Ann Lee", "email": "ann@example.com", "website": ""}, headers=ORIGIN)
    assert r.status_code == 303
    assert r.headers["location"] == "https://example.com/thanks?who=Ann%20Lee"
    assert r.headers["x-request-id"]
    sig = router.wait_for(lambda: [s for s in _signals(router, "forms.signup") if s["status"] == "done"])[0]
    assert sig["entity"]["name"] == "Ann Lee" and sig["entity"]["__channel"] == "forms"
    assert "website" not in sig["entity"]  # the empty honeypot is not part of the data
    leads = json.loads(router.cli("records", "list", "--json", "lead").stdout)
    assert [(x["name"], x["email"]) for x in leads] == [("Ann Lee", "ann@example.com")]


def test_multipart_with_file_and_thanks_page(router, urls, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = urls["forms.plain"]
    r = httpx.post(url, data={"name": "Bo"}, files={"cv": ("cv.txt", b"my cv", "text/plain")})
    assert r.status_code == 200  # no redirect configured: a small built-in page
    assert r.headers["content-type"].startswith("text/html") and "Thank you" in r.text
    sig = router.wait_for(lambda: _signals(router, "forms.plain"))[0]
    cv = sig["entity"]["__files"]["cv"]
    assert cv["sha256"] == hashlib.sha256(b"my cv").hexdigest() and cv["name"] == "cv.txt" and cv["size"] == 5


def test_honeypot_pretends_success_but_journals_nothing(router, urls) -> None:  # type: ignore[no-untyped-def]
    url = urls["forms.traps"]
    before = len(_signals(router, "forms.traps"))
    r = httpx.post(
        url, data={"name": "spam", "fax": "http://spam.example"}, files={"f": ("x.bin", b"spam-file")}
    )
    assert r.status_code == 303 and r.headers["location"] == "/done"
    assert len(_signals(router, "forms.traps")) == before
    assert "form honeypot filled" in router.log()
    # The bot's upload was never written to the data dir.
    digest = hashlib.sha256(b"spam-file").hexdigest()
    assert not (router.data_dir / "files" / digest[:2] / digest).exists()
    # A person (honeypot left empty) gets the same answer and is journaled.
    r = httpx.post(url, data={"name": "human", "fax": ""})
    assert r.status_code == 303
    assert len(_signals(router, "forms.traps")) == before + 1


def test_origin_check(router, urls) -> None:  # type: ignore[no-untyped-def]
    url = urls["forms.signup"]
    bad = httpx.post(url, data={"name": "x"}, headers={"Origin": "https://evil.example"})
    assert bad.status_code == 403 and bad.headers["content-type"].startswith("text/html")
    assert "https://evil.example" in bad.text and "<h1>" in bad.text
    # Referer is used when a browser sends no Origin; its path does not matter.
    ok = httpx.post(
        url, data={"name": "Ref"}, headers={"Referer": "http://shop.example.org:8000/contact?x=1"}
    )
    assert ok.status_code == 303
    assert (
        httpx.post(
            url, data={"name": "x"}, headers={"Referer": "http://shop.example.org/contact"}
        ).status_code
        == 403
    )
    assert httpx.post(url, data={"name": "x"}, headers={"Origin": "null"}).status_code == 403
    nothing = httpx.post(url, data={"name": "x"})
    assert nothing.status_code == 403 and "no Origin or Referer" in nothing.text
    # No allowed_origins: any origin may post.
    assert (
        httpx.post(
            urls["forms.plain"], data={"a": "1"}, headers={"Origin": "https://any.example"}
        ).status_code
        == 200
    )


def test_errors_are_readable_pages(router, urls) -> None:  # type: ignore[no-untyped-def]
    url = urls["forms.plain"]
    r = httpx.post(url, json={"name": "json is not a form"})
    assert r.status_code == 400 and r.headers["content-type"].startswith("text/html")
    assert "application/json" in r.text and "urlencoded" in r.text
    r = httpx.post(url, content=b"--x\r\n", headers={"content-type": "multipart/form-data"})
    assert r.status_code == 400 and "boundary" in r.text
    r = httpx.post(urls["forms.small"], data={"big": "x" * 5000})
    assert r.status_code == 413 and r.headers["content-type"].startswith("text/html")
    assert "2048" in r.text
    r = httpx.get(url)
    assert (
        r.status_code == 405
        and r.headers["allow"] == "POST"
        and r.headers["content-type"].startswith("text/html")
    )
    assert httpx.post(f"{router.base}/forms/nope", data={"a": "1"}).status_code == 404


def test_idempotency_key_answers_the_same_once(router, urls) -> None:  # type: ignore[no-untyped-def]
    url = urls["forms.signup"]
    headers = {**ORIGIN, "Idempotency-Key": "form-double-click"}
    first = httpx.post(url, data={"name": "Twice"}, headers=headers)
    again = httpx.post(url, data={"name": "Twice"}, headers=headers)
    assert first.status_code == again.status_code == 303
    assert again.headers["location"] == first.headers["location"]
    assert len([s for s in _signals(router, "forms.signup") if s["entity"].get("name") == "Twice"]) == 1
