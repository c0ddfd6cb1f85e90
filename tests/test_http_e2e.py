"""SPEC §6 over real sockets: every status code of endpoints and webhooks, with httpx and curl."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time

import httpx
import jwt
import pytest

SECRET = "s" * 40

CONFIG = f"""
[endpoints.data]
return_type = "data"
return_data = '{{"ok": true, "name": "{{{{ __data.name }}}}"}}'

[endpoints.page]
return_type = "html"
return_html = "<h1>Hello {{{{ __data.name }}}}</h1>"

[endpoints.go]
return_type = "redirect"
return_redirect = "https://example.com/thanks?n={{{{ __data.name }}}}"

[endpoints.invoices]
return_type = "continue"

[endpoints.quiet]
return_type = "continue"

[endpoints.slow]
return_type = "continue"
response_timeout = "1s"

[endpoints.secure]
return_type = "data"
return_data = '{{"jwt": {{{{ __data.__headers.__jwt_data[0] | json_encode }}}}}}'
add_authentication = true
endpoint_key = "billing"
endpoint_secret = "{SECRET}"
allow_cors = true
cors_domains = "https://app.example.com"

[endpoints.small]
return_type = "data"
return_data = "ok"
max_body = "1KiB"

[webhooks.payments]

[webhooks.off]
active = false

[[workflows]]
name = "invoice-raised"
listen = "endpoints.invoices"
run_mode = "sync"

[[workflows.steps]]
id = "has-email"
condition = {{ left = "{{{{ __data.customer_email }}}}", operator = "is_not_empty" }}

[[workflows.steps]]
parent = "has-email"
branch = "no"
action = "respond"
return_type = "data"
return_data = '{{"error": "email required"}}'

[[workflows.steps]]
id = "note"
parent = "has-email"
branch = "yes"
action = "create_record"
record_type = "note"
fields = {{ body = 'Invoice raised: {{{{ formatCurrency(__data.invoice_amount, "€") }}}}' }}

[[workflows.steps]]
parent = "note"
action = "respond"
return_type = "data"
return_data = '{{"status": "received"}}'

[[workflows]]
name = "quiet"
listen = "endpoints.quiet"
run_mode = "sync"

[[workflows.steps]]
action = "log"
message = "nothing to say"

[[workflows]]
name = "payments"
listen = "webhooks.payments"

[[workflows.steps]]
action = "store"
name = "seen"
value = "{{{{ __data.id }}}}"

[[workflows]]
name = "payments-copy"
listen = "webhooks.payments"

[[workflows.steps]]
action = "create_record"
record_type = "payment"
fields = {{ pid = "{{{{ __data.id }}}}" }}
"""


@pytest.fixture(scope="module")
def router(module_router_factory, module_backend):  # type: ignore[no-untyped-def]
    # debug: run lines
    proc = module_router_factory(CONFIG, router_extra='log_level = "debug"', database_url=module_backend)
    yield proc
    proc.stop()  # before the other backend's daemon starts


@pytest.fixture(scope="module")
def urls(router):  # type: ignore[no-untyped-def]
    return {
        k.split(".", 1)[1] if k.startswith("endpoints.") else k: v.get("url")
        for k, v in router.sources().items()
    }


def test_data_endpoint_renders_json(urls) -> None:  # type: ignore[no-untyped-def]
    r = httpx.post(urls["data"], json={"name": "Ann"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"ok": True, "name": "Ann"}
    assert r.headers["x-request-id"]


def test_html_and_redirect(urls) -> None:  # type: ignore[no-untyped-def]
    r = httpx.get(urls["page"], params={"name": "<b>x</b>"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.text == "<h1>Hello &lt;b&gt;x&lt;/b&gt;</h1>"  # html bodies autoescape caller data
    r = httpx.put(urls["go"], data={"name": "bo"})
    assert r.status_code == 302 and r.headers["location"] == "https://example.com/thanks?n=bo"


def test_methods_and_unknown(router, urls) -> None:  # type: ignore[no-untyped-def]
    assert httpx.delete(urls["data"]).status_code == 405
    assert httpx.patch(urls["data"]).headers["allow"] == "GET, HEAD, POST, PUT, OPTIONS"
    assert httpx.get(f"{router.base}/listener/{'a' * 40}/{'b' * 40}").status_code == 404
    assert httpx.get(f"{router.base}/nothing-here").status_code == 404


def test_flexie_example_continue_sync(router, urls) -> None:  # type: ignore[no-untyped-def]
    r = httpx.post(urls["invoices"], json={"invoice_amount": 2500, "customer_email": "john@example.com"})
    assert r.status_code == 200 and r.json() == {"status": "received"}
    notes = json.loads(router.cli("records", "list", "--json", "note").stdout)
    assert [n["body"] for n in notes] == ["Invoice raised: €2,500.00"]
    r = httpx.post(urls["invoices"], json={"invoice_amount": 10})
    assert r.json() == {"error": "email required"}
    assert len(json.loads(router.cli("records", "list", "--json", "note").stdout)) == 1


def test_continue_without_respond_is_204(urls) -> None:  # type: ignore[no-untyped-def]
    assert httpx.post(urls["quiet"], json={}).status_code == 204


def test_continue_without_listeners_is_204(urls) -> None:  # type: ignore[no-untyped-def]
    # No workflow listens to `slow`: the (empty) set of runs ends at once without a respond.
    r = httpx.post(urls["slow"], json={})
    assert r.status_code == 204  # nothing listens: the (empty) set of runs ended without a respond


def _token(**claims):  # type: ignore[no-untyped-def]
    now = int(time.time())
    base = {"iss": "billing", "iat": now, "exp": now + 60, "data": {"user": 7}}
    base.update(claims)
    return jwt.encode(base, SECRET, algorithm="HS256")


def test_jwt_statuses(urls) -> None:  # type: ignore[no-untyped-def]
    url = urls["secure"]
    assert httpx.post(url, json={}).status_code == 403
    ok = httpx.post(url, json={}, headers={"Authorization": f"Bearer {_token()}"})
    assert ok.status_code == 200 and ok.json() == {"jwt": {"user": 7}}
    assert httpx.post(url, json={}, headers={"token": _token()}).status_code == 200
    expired = httpx.post(url, headers={"Authorization": f"Bearer {_token(exp=int(time.time()) - 120)}"})
    assert expired.status_code == 401 and expired.json()["error"] == "token_expired"
    wrong_iss = httpx.post(url, headers={"Authorization": f"Bearer {_token(iss='other')}"})
    assert wrong_iss.status_code == 401 and wrong_iss.json()["error"] == "invalid_issuer"
    bad_sig = jwt.encode({"iss": "billing"}, "x" * 40, algorithm="HS256")
    assert httpx.post(url, headers={"Authorization": f"Bearer {bad_sig}"}).status_code == 401
    none_alg = jwt.encode({"iss": "billing"}, None, algorithm="none")
    r = httpx.post(url, headers={"Authorization": f"Bearer {none_alg}"})
    assert r.status_code == 401 and SECRET not in r.text
    # Within the 60 s leeway an expired token still passes.
    assert httpx.post(url, headers={"token": _token(exp=int(time.time()) - 30)}).status_code == 200


def test_cors_preflight_before_jwt(urls) -> None:  # type: ignore[no-untyped-def]
    url = urls["secure"]
    pre = httpx.options(
        url,
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "authorization" in pre.headers["access-control-allow-headers"]
    assert "Origin" in pre.headers["vary"]
    bad = httpx.options(
        url, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert bad.status_code == 403 and "access-control-allow-origin" not in bad.headers
    real = httpx.post(url, json={}, headers={"Origin": "https://app.example.com", "token": _token()})
    assert real.headers["access-control-allow-origin"] == "https://app.example.com"


def test_max_body_413_without_buffering(urls) -> None:  # type: ignore[no-untyped-def]
    r = httpx.post(urls["small"], content=b"x" * 5000)
    assert r.status_code == 413
    big = httpx.post(urls["small"], content=(b"y" * 65536 for _ in range(800)))  # 50 MB streamed, chunked
    assert big.status_code == 413


def test_webhook_statuses(router, urls) -> None:  # type: ignore[no-untyped-def]
    url = urls["webhooks.payments"]
    key = router.sources()["webhooks.payments"]["api_key"]
    base = url.split("?")[0]
    r = httpx.post(url, json={"id": "p1", "amount": 5})
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    assert httpx.post(base, json={}, headers={"X-Api-Key": key}).status_code == 200
    assert httpx.post(base, json={}).status_code == 401
    assert httpx.post(base + "?apiKey=" + "A" * 43, json={}).status_code == 401
    bad = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and "invalid JSON" in bad.json()["error"]
    assert httpx.post(url.replace("/payments?", "/nope?"), json={}).status_code == 404
    off = router.sources()["webhooks.off"]["url"]
    assert httpx.post(off, json={}).status_code == 404
    assert httpx.post(url, content=b"x" * (2 * 1024 * 1024)).status_code == 413
    assert len(key) == 43  # 32 bytes, base64url without padding


def test_webhook_fan_out(router, urls) -> None:  # type: ignore[no-untyped-def]
    r = httpx.post(urls["webhooks.payments"], json={"id": "fan-1"})
    sid = r.json()["signal_id"]

    def runs():  # type: ignore[no-untyped-def]
        sig = [s for s in router.signals("--source", "webhooks.payments") if s["id"] == sid]
        return sig and sig[0]["status"] == "done" and sorted(x["workflow"] for x in sig[0]["runs"])

    assert router.wait_for(runs) == ["payments", "payments-copy"]
    # Each run's log line carries the signal id and the request id the caller was given.
    assert f"signal_id={sid} request_id={r.headers['x-request-id']}" in router.log()


def test_idempotency_key_replays_original_ack(router, urls) -> None:  # type: ignore[no-untyped-def]
    url = urls["webhooks.payments"]
    first = httpx.post(url, json={"id": "idem"}, headers={"Idempotency-Key": "abc-1"})
    again = httpx.post(url, json={"id": "idem"}, headers={"Idempotency-Key": "abc-1"})
    assert first.status_code == again.status_code == 200
    assert again.json()["signal_id"] == first.json()["signal_id"]
    assert again.headers["idempotent-replayed"] == "true"
    matching = [s for s in router.signals("--source", "webhooks.payments") if s["entity"].get("id") == "idem"]
    assert len(matching) == 1


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_form_and_multipart(router, urls, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = subprocess.run(["curl", "-s", "-d", "name=Curly", urls["data"]], capture_output=True, text=True)
    assert json.loads(out.stdout) == {"ok": True, "name": "Curly"}
    f = tmp_path / "a.txt"
    f.write_bytes(b"hello file")
    out = subprocess.run(
        ["curl", "-s", "-F", "name=Multi", "-F", f"doc=@{f}", urls["data"]], capture_output=True, text=True
    )
    assert json.loads(out.stdout) == {"ok": True, "name": "Multi"}
    sig = router.signals("--source", "endpoints.data", "--limit", "1")[0]
    doc = sig["entity"]["__files"]["doc"]
    assert doc["sha256"] == hashlib.sha256(b"hello file").hexdigest()
    assert doc["name"] == "a.txt" and doc["size"] == 10


def test_keep_alive_survives_rejections(urls) -> None:  # type: ignore[no-untyped-def]
    """STACK-NOTES trap 1: rejected and accepted requests on one keep-alive connection."""
    with httpx.Client(timeout=5) as client:
        for i in range(60):
            if i % 3 == 0:
                assert client.post(urls["secure"], json={"i": i}).status_code == 403
            elif i % 3 == 1:
                assert client.request("DELETE", urls["data"], content=b"{}").status_code == 405
            else:
                assert client.post(urls["data"], json={"name": str(i)}).status_code == 200
