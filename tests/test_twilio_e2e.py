"""SPEC §5/§6 Twilio webhooks against the real daemon, signed by the twilio SDK's own validator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from twilio.request_validator import RequestValidator

from tests.daemon import RouterFactory, RouterProcess

TOKEN = "twilio-test-auth-token-0123456789"

CONFIG = f"""
[twilio]
auth_token = "{TOKEN}"

[sms.main]

[sms.sync]

[whatsapp.main]

[[workflows]]
name = "sms-store"
listen = "sms.main"

[[workflows.steps]]
action = "create_record"
record_type = "sms"
fields = {{ sender = "{{{{ __data.incoming_sms.sender_number }}}}", to = "{{{{ __data.incoming_sms.to_number }}}}", text = "{{{{ __data.incoming_sms.text }}}}", sid = "{{{{ __data.incoming_sms.message_sid }}}}", received = "{{{{ __data.incoming_sms.date_received }}}}", media = "{{{{ __data.incoming_sms.media | json_encode }}}}", raw_body = "{{{{ __data.Body }}}}" }}

[[workflows]]
name = "wa-store"
listen = "whatsapp.main"

[[workflows.steps]]
action = "create_record"
record_type = "wa"
fields = {{ sender = "{{{{ __data.incoming_whatsapp.sender_number }}}}", to = "{{{{ __data.incoming_whatsapp.to_number }}}}", text = "{{{{ __data.incoming_whatsapp.text }}}}", sid = "{{{{ __data.incoming_whatsapp.message_sid }}}}", profile = "{{{{ __data.incoming_whatsapp.profile_name }}}}", media = "{{{{ __data.incoming_whatsapp.media | json_encode }}}}" }}

[[workflows]]
name = "sms-reply"
listen = "sms.sync"
run_mode = "sync"

[[workflows.steps]]
id = "is-help"
condition = {{ left = "{{{{ __data.incoming_sms.text }}}}", operator = "equal", right = "help" }}

[[workflows.steps]]
parent = "is-help"
branch = "yes"
action = "reply"
message = "Hi {{{{ __data.incoming_sms.sender_number }}}}: reply STOP to stop & <more>"

[[workflows.steps]]
parent = "is-help"
branch = "no"
action = "log"
message = "not a help request"
"""


@pytest.fixture(scope="module")
def router(module_router_factory: RouterFactory, module_backend: str | None) -> Iterator[RouterProcess]:
    proc = module_router_factory(CONFIG, database_url=module_backend)
    yield proc
    proc.stop()  # before the other backend's daemon starts


def post(
    router: RouterProcess,
    path: str,
    params: dict[str, str],
    *,
    signed_url: str | None = None,
    headers: dict[str, str] | None = None,
    algorithm: str | None = None,
) -> httpx.Response:
    url = f"{router.base}{path}"
    signature = RequestValidator(TOKEN).compute_signature(signed_url or url, params, algorithm)
    return httpx.post(
        url, data=params, headers={"X-Twilio-Signature": signature, **(headers or {})}, timeout=20
    )


def records(router: RouterProcess, kind: str) -> list[dict[str, Any]]:
    return json.loads(router.cli("records", "list", "--json", kind).stdout)


def as_list(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def sms_params(sid: str, body: str = "Hello there", **extra: str) -> dict[str, str]:
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": "+15551230001",
        "To": "+15559870002",
        "Body": body,
        "NumMedia": "0",
        "NumSegments": "1",
        **extra,
    }


def test_sms_with_media_creates_the_entity(router: RouterProcess) -> None:
    params = sms_params(
        "SM" + "1" * 32,
        NumMedia="2",
        MediaUrl0="https://api.twilio.com/media/ME1",
        MediaContentType0="image/jpeg",
        MediaUrl1="https://api.twilio.com/media/ME2",
        MediaContentType1="application/pdf",
    )
    response = post(router, "/sms/main", params)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert response.text == '<?xml version="1.0" encoding="UTF-8"?><Response />'
    [rec] = router.wait_for(lambda: records(router, "sms"))
    assert (rec["sender"], rec["to"], rec["text"], rec["sid"]) == (
        "+15551230001",
        "+15559870002",
        "Hello there",
        "SM" + "1" * 32,
    )
    assert rec["raw_body"] == "Hello there" and rec["received"].endswith("Z")
    assert as_list(rec["media"]) == [
        {"url": "https://api.twilio.com/media/ME1", "content_type": "image/jpeg"},
        {"url": "https://api.twilio.com/media/ME2", "content_type": "application/pdf"},
    ]


def test_whatsapp_with_media_strips_prefixes(router: RouterProcess) -> None:
    params = {
        "MessageSid": "SM" + "2" * 32,
        "AccountSid": "AC" + "0" * 32,
        "From": "whatsapp:+355691112233",
        "To": "whatsapp:+14155238886",
        "Body": "Foto",
        "ProfileName": "Arta",
        "WaId": "355691112233",
        "NumMedia": "1",
        "MediaUrl0": "https://api.twilio.com/media/ME3",
        "MediaContentType0": "image/png",
    }
    response = post(router, "/whatsapp/main", params)
    assert response.status_code == 200 and "<Response" in response.text
    [rec] = router.wait_for(lambda: records(router, "wa"))
    assert (rec["sender"], rec["to"], rec["profile"], rec["text"]) == (
        "+355691112233",
        "+14155238886",
        "Arta",
        "Foto",
    )
    assert as_list(rec["media"]) == [{"url": "https://api.twilio.com/media/ME3", "content_type": "image/png"}]


def test_bad_signatures_get_403(router: RouterProcess) -> None:
    params = sms_params("SM" + "3" * 32)
    url = f"{router.base}/sms/main"
    assert httpx.post(url, data=params, timeout=10).status_code == 403  # no signature
    assert (
        httpx.post(url, data=params, headers={"X-Twilio-Signature": "bm9wZQ=="}, timeout=10).status_code
        == 403
    )
    other_url = post(router, "/sms/main", params, signed_url=f"{router.base}/sms/other")
    assert other_url.status_code == 403
    tampered = RequestValidator(TOKEN).compute_signature(url, params)
    changed = httpx.post(
        url, data={**params, "Body": "changed"}, headers={"X-Twilio-Signature": tampered}, timeout=10
    )
    assert changed.status_code == 403
    wrong_token = RequestValidator("not-the-token").compute_signature(url, params)
    assert (
        httpx.post(url, data=params, headers={"X-Twilio-Signature": wrong_token}, timeout=10).status_code
        == 403
    )
    assert not [s for s in router.signals() if s["dedup_key"] == "SM" + "3" * 32]


def test_hmac_sha256_signature_settings(router: RouterProcess) -> None:
    params = sms_params("SM" + "4" * 32, body="sha256")
    ok = post(
        router,
        "/sms/main",
        params,
        algorithm="HMAC_SHA256",
        headers={"X-Twilio-Webhooks-Signature-Settings": "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256"},
    )
    assert ok.status_code == 200
    sha1_sig = post(
        router,
        "/sms/main",
        params,
        headers={"X-Twilio-Webhooks-Signature-Settings": "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256"},
    )
    assert sha1_sig.status_code == 403


def test_sync_workflow_reply_is_twiml(router: RouterProcess) -> None:
    response = post(router, "/sms/sync", sms_params("SM" + "5" * 32, body="help"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert response.text == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Message>'
        "Hi +15551230001: reply STOP to stop &amp; &lt;more&gt;</Message></Response>"
    )
    quiet = post(router, "/sms/sync", sms_params("SM" + "6" * 32, body="hello"))
    assert quiet.text == '<?xml version="1.0" encoding="UTF-8"?><Response />'


def test_message_sid_dedup_replays_the_same_twiml(router: RouterProcess) -> None:
    params = sms_params("SM" + "7" * 32, body="help")
    first = post(router, "/sms/sync", params)
    again = post(router, "/sms/sync", params)
    assert again.status_code == 200 and again.text == first.text and "<Message>" in again.text
    assert len([s for s in router.signals() if s["dedup_key"] == "SM" + "7" * 32]) == 1


def test_unknown_source_and_method(router: RouterProcess) -> None:
    assert post(router, "/sms/nope", sms_params("SM" + "8" * 32)).status_code == 404
    assert httpx.put(f"{router.base}/sms/main", timeout=10).status_code == 405


def test_trust_proxy_rebuilds_the_public_url(router_factory) -> None:  # type: ignore[no-untyped-def]
    proc: RouterProcess = router_factory(CONFIG, start=False)
    text = proc.config_path.read_text().replace("[router]\n", "[router]\ntrust_proxy = true\n", 1)
    proc.config_path.write_text(text)
    proc.start()
    params = sms_params("SM" + "9" * 32)
    public = "https://sms.example.com/sms/main"
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "sms.example.com"}
    assert post(proc, "/sms/main", params, signed_url=public, headers=forwarded).status_code == 200
    # the same signature without the proxy headers does not match the URL the daemon sees
    assert post(proc, "/sms/main", params, signed_url=public).status_code == 403
