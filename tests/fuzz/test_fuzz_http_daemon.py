"""Fuzz the real daemon over HTTP (httpx): a `data` endpoint, a JWT endpoint, a webhook, a form
and a Twilio SMS source, all in one daemon for the module.

Invariants: never a 500 (nor any 5xx: nothing here overloads it); a bad body gets exactly the 4xx
the in-process parser predicts for that body and content type; the daemon still answers after
the run, logged no traceback, and its RSS stayed within a sane bound.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from channels.http.asgi import Request
from channels.http.forms import FORM_TYPES
from channels.http.parsing import BadBody, build_data, is_json_type, parse_json
from tests.daemon import RouterFactory, RouterProcess
from tests.fuzz import strategies as fs
from tests.fuzz.profiles import examples
from tests.fuzz.test_fuzz_http_parsing import make_request
from tests.fuzz.test_fuzz_jwt import ISSUER, SECRET, claims, headers, sign
from tests.fuzz.test_fuzz_twilio import TOKEN, params_strategy

CONFIG = f"""
[twilio]
auth_token = "{TOKEN}"

[endpoints.data]
return_type = "data"
return_data = '{{"ok": true, "name": "{{{{ __data.name }}}}"}}'

[endpoints.secure]
return_type = "data"
return_data = '{{"jwt": {{{{ __data.__headers.__jwt_data[0] | json_encode }}}}}}'
add_authentication = true
endpoint_key = "{ISSUER}"
endpoint_secret = "{SECRET}"

[endpoints.cors]
return_type = "data"
return_data = "ok"
allow_cors = true
cors_domains = "https://app.example.com"

[webhooks.hook]

[forms.guarded]
allowed_origins = ["https://www.example.com"]

[forms.contact]
redirect = "https://example.com/thanks?who={{{{ __data.name | url_encode }}}}"

[sms.main]

[[workflows]]
name = "look"
listen = ["endpoints.data", "webhooks.hook", "forms.contact"]

[[workflows.steps]]
id = "named"
condition = {{ left = "{{{{ __data.name }}}}", operator = "is_not_empty" }}

[[workflows.steps]]
parent = "named"
branch = "yes"
action = "log"
message = "got {{{{ __data | json_encode }}}}"
"""

RSS_GROWTH_LIMIT_KIB = 150 * 1024  # bodies are at most 1 MiB (max_body); a leak would be far past this
TIMEOUT = httpx.Timeout(30.0)
SLOW_ANSWER = 8.0  # seconds; generous for 2 shared cores


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class Target:
    def __init__(self, router: RouterProcess) -> None:
        self.router = router
        sources = router.sources()
        self.data = sources["endpoints.data"]["url"]
        self.secure = sources["endpoints.secure"]["url"]
        self.api_key = sources["webhooks.hook"]["api_key"]
        self.webhook = f"{router.base}/webhooks/incoming/hook"
        self.form = f"{router.base}/forms/contact"
        self.guarded = f"{router.base}/forms/guarded"
        self.cors = sources["endpoints.cors"]["url"]
        self.sms = f"{router.base}/sms/main"
        self.client = httpx.Client(timeout=TIMEOUT)  # one keep-alive connection, as senders do
        self.statuses: dict[int, int] = {}

    def send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        started = time.monotonic()
        response = self.client.request(method, url, **kwargs)
        # Nothing here is slow work: seconds mean the event loop was held (a hang for everyone).
        assert time.monotonic() - started < SLOW_ANSWER, (method, url, time.monotonic() - started)
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (
            response.status_code,
            response.text[:500],
            self.router.log()[-3000:],
        )
        return response


@pytest.fixture(scope="module")
def target(module_router_factory: RouterFactory) -> Iterator[Target]:
    router = module_router_factory(CONFIG)
    target = Target(router)
    assert router.proc is not None
    target.send("POST", target.data, json={"warm": "up"})
    target.rss_before = rss_kib(router.proc.pid)  # type: ignore[attr-defined]
    yield target
    target.client.close()


def on_the_wire(value: str) -> str:
    """A header value as HTTP/1.1 can carry it: no control characters, no blanks at either end
    (h11 refuses to send anything else, and hypercorn would refuse to receive it)."""
    latin1 = value.encode("latin-1", "replace").decode("latin-1")
    return "".join(ch for ch in latin1 if ch == "\t" or " " <= ch != "\x7f").strip(" \t")


def ctype_header(ctype: str | None) -> dict[str, bytes]:
    return {} if ctype is None else {"content-type": on_the_wire(ctype).encode("latin-1")}


def expected_parse_status(body: bytes, ctype: str | None) -> int:
    """What the in-process parser says about this body: 200 or a 400."""
    request: Request = make_request(body, None if ctype is None else on_the_wire(ctype))
    try:
        build_data(request, None)
    except BadBody:
        return 400
    return 200


bodies = fs.json_bodies() | fs.urlencoded_bodies() | st.binary(max_size=200)
ctypes = st.sampled_from(["application/json", "application/x-www-form-urlencoded", None]) | fs.content_types()


@examples(300)
@given(
    body=bodies,
    ctype=ctypes,
    query=fs.query_strings(),
    method=st.sampled_from(["POST", "PUT", "GET", "POST"]),
)
@example(body=fs.nested(100_000), ctype="application/json", query="", method="POST")
@example(body=b'{"name": ' + fs.nested(900) + b"}", ctype="application/json", query="", method="POST")
@example(body=b'{"name": ' + fs.nested(127) + b"}", ctype="application/json", query="", method="POST")
@example(body=b"9" * 5000, ctype="application/json", query="", method="POST")
@example(body=b'{"__remote_addr": "10.9.9.9", "name": "x"}', ctype=None, query="__source=x", method="POST")
@example(body=b"a=%ff&name=\xff", ctype="application/x-www-form-urlencoded", query="", method="PUT")
def test_data_endpoint(target: Target, body: bytes, ctype: str | None, query: str, method: str) -> None:
    response = target.send(method, target.data, params=query, content=body, headers=ctype_header(ctype))
    assert response.status_code == expected_parse_status(body, ctype), response.text[:300]


MANY_PARTS = b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\nx\r\n' * 19_000 + b"--b--\r\n"  # ~1 MB


@examples(180)
@given(case=fs.multipart_bodies(), query=fs.query_strings())
@example(
    case=(
        "multipart/form-data; boundary=XX",
        b'--XX\r\nContent-Disposition: form-data; name="name"\r\nContent-Type: text/plain; charset=nope\r\n\r\n'
        b"hi\r\n--XX--\r\n",
    ),
    query="",
)
@example(case=("multipart/form-data; boundary=b", MANY_PARTS), query="")
def test_data_endpoint_multipart(target: Target, case: tuple[str, bytes], query: str) -> None:
    ctype, body = case
    response = target.send("POST", target.data, params=query, content=body, headers=ctype_header(ctype))
    assert response.status_code == expected_parse_status(body, ctype), response.text[:300]


@examples(240)
@given(
    body=bodies,
    ctype=st.sampled_from(["application/json", "application/cloudevents+json", None]) | fs.content_types(),
    key_in=st.sampled_from(["query", "header", "wrong", "none"]),
    query=fs.query_strings(),
)
@example(body=fs.nested(100_000), ctype="application/json", key_in="query", query="")
@example(body=b"-" + b"1" * 4301, ctype="application/json", key_in="header", query="")
def test_webhook(target: Target, body: bytes, ctype: str | None, key_in: str, query: str) -> None:
    params: dict[str, str] | str = query
    headers: dict[str, Any] = ctype_header(ctype)
    if key_in == "query":
        params = urlencode({"apiKey": target.api_key})
    elif key_in == "header":
        headers["x-api-key"] = target.api_key
    elif key_in == "wrong":
        headers["x-api-key"] = "A" * 43
    response = target.send("POST", target.webhook, params=params, content=body, headers=headers)
    if key_in in ("wrong", "none") and "apikey" not in query.lower():
        assert response.status_code == 401
        return
    if key_in == "query" or (key_in == "header" and "apikey" not in query.lower()):  # ?apiKey= wins
        media = on_the_wire(ctype).split(";", 1)[0].strip().lower() if ctype else ""
        bad = (media and not is_json_type(media)) or not body.strip()
        if not bad:
            try:
                parse_json(body)
            except BadBody:
                bad = True
        assert response.status_code == (400 if bad else 200), response.text[:300]


@examples(240)
@given(
    body=fs.urlencoded_bodies() | bodies,
    ctype=st.sampled_from(list(FORM_TYPES)) | ctypes,
    origin=st.sampled_from([None, "null", "https://x.example", "\xe9", "http://[::1"]),
)
@example(body=b"name=a&website=", ctype="application/x-www-form-urlencoded", origin=None)
@example(body=b"name=%ff&website=bot", ctype="application/x-www-form-urlencoded", origin=None)
def test_form(target: Target, body: bytes, ctype: str | None, origin: str | None) -> None:
    headers: dict[str, Any] = ctype_header(ctype)
    if origin is not None:
        headers["origin"] = origin.encode("latin-1")
    response = target.send("POST", target.form, content=body, headers=headers)
    media = on_the_wire(ctype).split(";", 1)[0].strip().lower() if ctype else ""
    expected = 400 if media not in FORM_TYPES else expected_parse_status(body, ctype)
    if expected == 200:
        assert response.status_code in (200, 303)
    else:
        assert response.status_code == expected, response.text[:300]
    if response.status_code != 303:
        assert response.headers["content-type"].startswith("text/html")


@examples(180)
@given(
    header=headers, body=claims, right_secret=st.booleans(), where=st.sampled_from(["bearer", "token", "raw"])
)
@example(header={"alg": "HS256", "kid": 1}, body={"iss": ISSUER}, right_secret=True, where="bearer")
@example(header={"alg": "none"}, body={"iss": ISSUER}, right_secret=True, where="token")
def test_jwt_endpoint(target: Target, header: Any, body: Any, right_secret: bool, where: str) -> None:
    token = sign(header, body, SECRET if right_secret else "w" * 40)
    sent = {
        "bearer": {"authorization": f"Bearer {token}"},
        "token": {"token": token},
        "raw": {"authorization": token},
    }[where]
    response = target.send("POST", target.secure, json={"a": 1}, headers=sent)
    assert response.status_code in (200, 401, 403)
    if where == "raw":
        assert response.status_code == 403


@examples(180)
@given(
    params=params_strategy,
    signature=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30),
    sign_right=st.booleans(),
    algorithm=st.sampled_from([None, "HMAC_SHA256", "md5"]),
)
def test_twilio(
    target: Target, params: dict[str, str], signature: str, sign_right: bool, algorithm: str | None
) -> None:
    headers = {"x-twilio-signature": on_the_wire(signature)}
    if algorithm is not None:
        headers["x-twilio-webhooks-signature-settings"] = f"algorithm={algorithm}"
    valid = sign_right and algorithm != "md5"
    if valid:
        headers["x-twilio-signature"] = RequestValidator(TOKEN).compute_signature(
            target.sms, params, algorithm
        )
    response = target.send(
        "POST",
        target.sms,
        content=urlencode(params).encode(),
        headers={**headers, "content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == (200 if valid else 403), response.text[:300]
    if valid:
        assert response.headers["content-type"].startswith("text/xml")


# What h11 lets through in a header value: no controls, no blanks at either end; obs-text is fine.
header_values = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40
).map(lambda v: v.strip(" ")) | st.sampled_from(
    [
        "null",
        "http://[::1",
        "https://www.example.com",
        "https://www.example.com/",
        "https://www.example.com:99999",
        "https://WWW.EXAMPLE.COM",
        "//www.example.com",
        "https://www.example.com@evil.example",
        "http://[::1]:80/x",
        "https://app.example.com",
        "*",
        "\xe9",
    ]
)


@examples(240)
@given(
    origin=st.none() | header_values,
    referer=st.none() | header_values,
    key=st.none() | header_values,
    request_id=st.none() | header_values,
)
@example(origin="http://[::1", referer=None, key=None, request_id=None)
@example(origin=None, referer="http://[::1/form", key=None, request_id=None)
@example(origin="https://www.example.com:99999", referer=None, key=None, request_id=None)
def test_form_origins(
    target: Target, origin: str | None, referer: str | None, key: str | None, request_id: str | None
) -> None:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    for name, value in (
        ("origin", origin),
        ("referer", referer),
        ("idempotency-key", key),
        ("x-request-id", request_id),
    ):
        if value is not None:
            headers[name] = value
    sent = {k: v.encode("latin-1") for k, v in headers.items()}
    response = target.send("POST", target.guarded, content=b"name=a", headers=sent)
    assert response.status_code in (200, 403), response.text[:300]
    if (origin or "").lower().rstrip("/") == "https://www.example.com":
        assert response.status_code == 200


@examples(180)
@given(
    origin=st.none() | header_values,
    method=header_values,
    requested=st.none() | header_values,
    preflight=st.booleans(),
)
def test_cors(
    target: Target, origin: str | None, method: str, requested: str | None, preflight: bool
) -> None:
    headers: dict[str, bytes] = {}
    if origin is not None:
        headers["origin"] = origin.encode("latin-1")
    if preflight:
        headers["access-control-request-method"] = method.encode("latin-1")
        if requested is not None:
            headers["access-control-request-headers"] = requested.encode("latin-1")
    response = target.send("OPTIONS" if preflight else "POST", target.cors, headers=headers, content=b"{}")
    allowed = (origin or "").rstrip("/").lower() == "https://app.example.com"
    if preflight:
        assert response.status_code == (204 if allowed else 403)
    else:
        assert response.status_code == 200
        assert ("access-control-allow-origin" in response.headers) == allowed


@examples(120)
@given(
    path=st.lists(
        st.text(max_size=12)
        | st.sampled_from(
            ["listener", "webhooks", "incoming", "forms", "sms", "whatsapp", "..", "%ff", "%00", ""]
        ),
        max_size=4,
    )
)
def test_random_paths(target: Target, path: list[str]) -> None:
    raw_path = "/" + "/".join(quote(p.encode("utf-8", "surrogatepass"), safe="%") for p in path)
    url = httpx.URL(target.router.base).copy_with(raw_path=raw_path.encode("ascii"))
    response = target.send("POST", url, content=b"{}")
    assert response.status_code in (200, 400, 401, 403, 404, 405), response.text[:300]


def test_daemon_survived(target: Target) -> None:
    """Runs last in this module: same daemon, still answering, no traceback, memory bounded."""
    router = target.router
    assert router.proc is not None and router.proc.poll() is None
    assert httpx.get(f"{router.base}/healthz", timeout=5).status_code == 200
    assert target.send("POST", target.data, json={"name": "after"}).json()["name"] == "after"
    rss_after = rss_kib(router.proc.pid)
    growth = rss_after - target.rss_before  # type: ignore[attr-defined]
    print(
        f"fuzz daemon RSS before {target.rss_before} KiB, after {rss_after} KiB; statuses {target.statuses}"
    )  # type: ignore[attr-defined]
    assert growth < RSS_GROWTH_LIMIT_KIB, (target.rss_before, rss_after)  # type: ignore[attr-defined]
    # The workflow runs of the last requests have finished (and logged).
    router.wait_for(
        lambda: (s := router.status()["signals"])["pending"] == 0 and s["running"] == 0, timeout=30
    )
    log = router.log()
    assert "Traceback" not in log and "request failed" not in log, log[-4000:]
