"""Outbound actions against local stand-ins: webhook (HTTP target), send_email (aiosmtpd sink),
send_sms / send_whatsapp (the real twilio client against a Twilio API stand-in)."""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import trio

from config import OutboundSmtpSettings, TwilioSettings
from engine.actions.base import REGISTRY, ActionContext, ActionError, Services
from engine.actions.outbound import SendEmail, SendSms, SendWhatsapp, Webhook, WebhookError
from tests.standins import free_port
from tests.standins.http_target import HttpTarget, Scripted
from tests.standins.smtp_sink import SmtpSink
from tests.standins.twilio_api import TwilioStandin

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "twilio-test-auth-token-0123456789"

# -- a tiny stand-in for the template engine: {{ dotted.path }} only -----------------------

_EXPR = re.compile(r"\{\{\s*([\w.]+)\s*\}\}")


def _lookup(data: dict[str, Any], path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def make_ctx(data: dict[str, Any] | None = None, with_html: bool = True, **services: Any) -> ActionContext:
    data = data if data is not None else {}
    logs: list[tuple[str, str]] = []

    def render(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            value = _lookup(data, match.group(1))
            return "" if value is None else str(value)

        return _EXPR.sub(one, text)

    def render_value(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: render_value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [render_value(v) for v in value]
        if isinstance(value, str):
            match = _EXPR.fullmatch(value.strip())
            return _lookup(data, match.group(1)) if match else render(value)
        return value

    def render_html(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            value = _lookup(data, match.group(1))
            return "" if value is None else html.escape(str(value))

        return _EXPR.sub(one, text)

    ctx = ActionContext(
        step_id="step",
        data=data,
        render=render,
        render_value=render_value,
        render_html=render_html if with_html else None,
        services=Services(db=None, **services),  # type: ignore[arg-type]
        log=lambda level, message: logs.append((level, message)),
    )
    ctx.logs = logs  # type: ignore[attr-defined]
    return ctx


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def target() -> Iterator[HttpTarget]:
    with HttpTarget() as server:
        yield server


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


@pytest.fixture
def twilio() -> Iterator[TwilioStandin]:
    with TwilioStandin(credentials=(SID, TOKEN)) as server:
        yield server


def smtp_settings(sink: SmtpSink, **kw: Any) -> OutboundSmtpSettings:
    return OutboundSmtpSettings(host=sink.host, port=sink.port, timeout=5, **kw)


def twilio_settings(base: str, **kw: Any) -> TwilioSettings:
    values: dict[str, Any] = {
        "account_sid": SID,
        "auth_token": TOKEN,
        "api_base": base,
        "from_number": "+15550001111",
        "whatsapp_from": "+15550002222",
    }
    values.update(kw)
    return TwilioSettings(**values)


webhook = Webhook()
send_email = SendEmail()
send_sms = SendSms()
send_whatsapp = SendWhatsapp()


def test_registered() -> None:
    for name in ("webhook", "send_email", "send_sms", "send_whatsapp"):
        assert name in REGISTRY
    assert Webhook.required == {"url"}
    assert SendEmail.required == {"to"}


# -- webhook -------------------------------------------------------------------------------


async def test_webhook_json_body_and_headers_arrive_exactly(target: HttpTarget) -> None:
    data = {"order": {"id": 42, "items": [{"sku": "A", "qty": 2}], "note": 'say "hi"'}}
    options = {
        "url": target.url("/hook/{{ order.id }}"),
        "headers": {"X-Signature": "sig-{{ order.id }}", "Authorization": "Bearer abc"},
        "json": {
            "id": "{{ order.id }}",
            "label": "Order {{ order.id }}",
            "items": "{{ order.items }}",
            "note": "{{ order.note }}",
            "missing": "{{ order.nothing }}",
            "static": 5,
            "nested": {"flag": True, "list": ["{{ order.id }}", "x"]},
        },
    }
    result = await webhook.execute(options, make_ctx(data))
    [req] = target.requests
    assert req.method == "POST"
    assert req.path == "/hook/42"
    assert req.header("Content-Type") == "application/json"
    assert req.header("X-Signature") == "sig-42"
    assert req.header("Authorization") == "Bearer abc"
    assert req.json == {
        "id": 42,
        "label": "Order 42",
        "items": [{"sku": "A", "qty": 2}],
        "note": 'say "hi"',
        "missing": None,
        "static": 5,
        "nested": {"flag": True, "list": [42, "x"]},
    }
    stored = result.store["webhook"]
    assert set(stored) == {"ok", "status", "headers", "body", "json"}
    assert stored["ok"] is True and stored["status"] == 200
    assert stored["headers"]["content-type"] == "application/json"
    assert all(k == k.lower() for k in stored["headers"])
    assert json.loads(stored["body"]) == stored["json"]
    assert stored["json"]["headers"]["x-signature"] == "sig-42"
    key = result.output.pop("idempotency_key")
    assert result.output == {"method": "POST", "url": target.url("/hook/42"), "status": 200, "attempts": 1}
    assert key == req.header("Idempotency-Key") and key.startswith("run:")  # no signal: one key for its tries


async def test_webhook_json_string_forms(target: HttpTarget) -> None:
    data = {"payload": {"a": 1, "b": [True, None]}, "name": "Zoë"}
    await webhook.execute({"url": target.url(), "json": "{{ payload }}"}, make_ctx(data))
    await webhook.execute({"url": target.url(), "json": '{"who": "{{ name }}", "n": 3}'}, make_ctx(data))
    await webhook.execute({"url": target.url(), "json": "{{ name }}"}, make_ctx(data))
    assert [r.json for r in target.requests] == [{"a": 1, "b": [True, None]}, {"who": "Zoë", "n": 3}, "Zoë"]
    with pytest.raises(ActionError) as info:
        await webhook.execute({"url": target.url(), "json": "not {{ name }} json"}, make_ctx(data))
    assert info.value.retryable is False
    assert len(target.requests) == 3


async def test_webhook_form_body(target: HttpTarget) -> None:
    data = {"email": "a+b@example.com", "tags": ["x", "y z"]}
    options = {
        "url": target.url("/form"),
        "method": "put",
        "form": {"email": "{{ email }}", "tag": "{{ tags }}", "ok": True, "n": 3, "empty": "{{ nope }}"},
    }
    result = await webhook.execute(options, make_ctx(data))
    [req] = target.requests
    assert req.method == "PUT"
    assert req.header("Content-Type") == "application/x-www-form-urlencoded"
    assert req.form == {
        "email": ["a+b@example.com"],
        "tag": ["x", "y z"],
        "ok": ["true"],
        "n": ["3"],
        "empty": [""],
    }
    assert result.output["method"] == "PUT"


async def test_webhook_raw_body_and_content_type(target: HttpTarget) -> None:
    data = {"id": "7"}
    xml = "<order id='{{ id }}'>ünïcode</order>"
    await webhook.execute(
        {"url": target.url("/raw"), "body": xml, "headers": {"content-type": "application/xml"}},
        make_ctx(data),
    )
    await webhook.execute({"url": target.url("/plain"), "body": "hello {{ id }}"}, make_ctx(data))
    await webhook.execute({"url": target.url("/get?x=1"), "method": "GET"}, make_ctx(data))
    raw, plain, get = target.requests
    assert raw.body == "<order id='7'>ünïcode</order>".encode()
    assert raw.header("Content-Type") == "application/xml"
    assert plain.body == b"hello 7"
    assert plain.header("Content-Type") == "text/plain; charset=utf-8"
    assert get.method == "GET" and get.body == b"" and get.query == {"x": ["1"]}


async def test_webhook_non_json_answer(target: HttpTarget) -> None:
    target.answer(Scripted(201, "created", {"Content-Type": "text/plain", "X-Thing": "1"}))
    result = await webhook.execute({"url": target.url()}, make_ctx())
    assert result.store["webhook"] == {
        "ok": True,
        "status": 201,
        "headers": result.store["webhook"]["headers"],
        "body": "created",
        "json": None,
    }
    assert result.store["webhook"]["headers"]["x-thing"] == "1"


async def test_webhook_retries_then_succeeds(target: HttpTarget) -> None:
    target.answer(Scripted(503, "busy"), Scripted(500, "oops"))
    ctx = make_ctx()
    result = await webhook.execute(
        {"url": target.url(), "json": {"a": 1}, "retries": 3, "retry_backoff": 0.01}, ctx
    )
    assert len(target.requests) == 3
    assert all(r.json == {"a": 1} for r in target.requests)
    assert result.output["attempts"] == 3
    assert result.store["webhook"]["status"] == 200
    assert len(ctx.logs) == 2  # type: ignore[attr-defined]


async def test_webhook_honours_retry_after(target: HttpTarget) -> None:
    target.answer(Scripted(429, "slow down", {"Retry-After": "1"}))
    start = trio.current_time()
    result = await webhook.execute({"url": target.url(), "retries": 1, "retry_backoff": 0.01}, make_ctx())
    assert trio.current_time() - start >= 0.9
    assert result.output["attempts"] == 2


async def test_webhook_4xx_is_not_retried_and_keeps_the_answer(target: HttpTarget) -> None:
    target.answer(Scripted(422, '{"error": "bad"}', {"Content-Type": "application/json"}))
    with pytest.raises(WebhookError) as info:
        await webhook.execute({"url": target.url(), "retries": 3, "retry_backoff": 0.01}, make_ctx())
    assert len(target.requests) == 1
    err = info.value
    assert isinstance(err, ActionError)
    assert err.retryable is False and err.status == 422
    assert "422" in str(err)
    assert err.store["webhook"]["ok"] is False
    assert err.store["webhook"]["status"] == 422
    assert err.store["webhook"]["json"] == {"error": "bad"}


async def test_webhook_5xx_exhausted_is_retryable(target: HttpTarget) -> None:
    target.answer(*[Scripted(502, "bad gateway")] * 3)
    with pytest.raises(WebhookError) as info:
        await webhook.execute({"url": target.url(), "retries": 2, "retry_backoff": 0.01}, make_ctx())
    assert len(target.requests) == 3
    assert info.value.retryable is True
    assert info.value.store["webhook"]["body"] == "bad gateway"
    assert "502" in str(info.value) and "3 attempts" in str(info.value)


async def test_webhook_timeout(target: HttpTarget) -> None:
    target.answer(Scripted(200, "late", delay=5))
    start = trio.current_time()
    with pytest.raises(ActionError) as info:
        await webhook.execute({"url": target.url(), "timeout": 0.3}, make_ctx())
    assert trio.current_time() - start < 2
    assert info.value.retryable is True
    assert not isinstance(info.value, WebhookError)


async def test_webhook_timeout_then_retry_succeeds(target: HttpTarget) -> None:
    target.answer(Scripted(200, "late", delay=5))
    result = await webhook.execute({"url": target.url(), "timeout": "0.3", "retries": "1"}, make_ctx())
    assert result.output["attempts"] == 2


async def test_webhook_connection_refused_is_retryable() -> None:
    url = f"http://127.0.0.1:{free_port()}/x?apiKey=s3cret"
    with pytest.raises(ActionError) as info:
        await webhook.execute({"url": url, "retries": 1, "retry_backoff": 0.01}, make_ctx())
    assert info.value.retryable is True
    assert "s3cret" not in str(info.value)  # query strings may hold keys: never in messages


async def test_webhook_uses_shared_client(target: HttpTarget) -> None:
    async with httpx.AsyncClient(headers={"X-From-Owner": "yes"}) as client:
        await webhook.execute({"url": target.url()}, make_ctx(http=client))
    assert target.requests[0].header("X-From-Owner") == "yes"


async def test_webhook_caps_the_stored_body(target: HttpTarget) -> None:
    big = "[" + ",".join(["1"] * 800_000) + "]"  # 1.6 MB of JSON
    target.answer(Scripted(200, big, {"Content-Type": "application/json"}))
    result = await webhook.execute({"url": target.url()}, make_ctx())
    assert len(result.store["webhook"]["body"]) == 1024 * 1024
    assert result.store["webhook"]["json"] is None


async def test_webhook_rejects_bad_rendered_input(target: HttpTarget) -> None:
    cases: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({"url": "{{ u }}"}, {"u": "ftp://example.com/x"}),
        ({"url": "{{ u }}"}, {"u": "not a url"}),
        ({"url": target.url(), "headers": {"X-A": "{{ v }}"}}, {"v": "a\r\nX-Injected: 1"}),
        ({"url": target.url(), "method": "{{ m }}"}, {"m": "BREW"}),
        ({"url": target.url(), "timeout": "{{ t }}"}, {"t": "soon"}),
    ]
    for options, data in cases:
        with pytest.raises(ActionError) as info:
            await webhook.execute(options, make_ctx(data))
        assert info.value.retryable is False, options
    assert target.requests == []


def test_webhook_validate() -> None:
    assert webhook.validate({"url": "https://x.test/", "json": {"a": 1}}) == []
    assert webhook.validate({"url": "{{ __data.url }}", "method": "{{ m }}", "timeout": "{{ t }}"}) == []
    problems = webhook.validate({"url": "https://x.test/", "json": {"a": 1}, "form": {"b": 2}})
    assert any("only one of json, form or body" in p for p in problems)
    assert webhook.validate({"url": "ftp://x.test/"})
    assert webhook.validate({"url": "https://x.test/", "method": "FETCH"})
    assert webhook.validate({"url": "https://x.test/", "retries": -1})
    assert webhook.validate({"url": "https://x.test/", "retries": 1.5})
    assert webhook.validate({"url": "https://x.test/", "timeout": 0})
    assert webhook.validate({"url": "https://x.test/", "headers": "X-A: 1"})
    assert webhook.validate({"url": "https://x.test/", "form": "a=1"})


# -- send_email ----------------------------------------------------------------------------


async def test_send_email_multipart_alternative_reaches_the_sink(sink: SmtpSink) -> None:
    data = {"customer": {"email": "ana@example.com", "name": "Ana"}, "n": 3}
    options = {
        "to": "{{ customer.name }} <{{ customer.email }}>, ops@example.com",
        "cc": ["cc@example.com"],
        "bcc": "hidden@example.com",
        "reply_to": "help@example.com",
        "from": "Billing <billing@example.com>",
        "subject": "Invoice #{{ n }} for {{ customer.name }}",
        "text": "Hello {{ customer.name }}",
        "html": "<p>Hello <b>{{ customer.name }}</b></p>",
        "headers": {"X-Campaign": "inv-{{ n }}"},
    }
    result = await send_email.execute(options, make_ctx(data, smtp=smtp_settings(sink)))
    [captured] = sink.messages
    assert captured.mail_from == "billing@example.com"
    assert captured.rcpt_tos == ["ana@example.com", "ops@example.com", "cc@example.com", "hidden@example.com"]
    msg = captured.message
    assert msg["Subject"] == "Invoice #3 for Ana"
    assert msg["From"] == "Billing <billing@example.com>"
    assert msg["To"] == "Ana <ana@example.com>, ops@example.com"
    assert msg["Cc"] == "cc@example.com"
    assert msg["Reply-To"] == "help@example.com"
    assert msg["Bcc"] is None
    assert msg["X-Campaign"] == "inv-3"
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content().strip() == "Hello Ana"
    assert parts[1].get_content().strip() == "<p>Hello <b>Ana</b></p>"
    assert result.output["message_id"] == msg["Message-ID"]
    assert result.output["refused"] == {}
    assert result.output["recipients"] == captured.rcpt_tos


async def test_send_email_text_only_default_from_and_safe_subject(sink: SmtpSink) -> None:
    data = {"who": "ops@example.com", "title": "Line one\r\nBcc: victim@example.com"}
    settings = smtp_settings(sink, from_address="Router <router@example.org>")
    options = {"to": ["{{ who }}"], "subject": "{{ title }}", "text": "plain ünïcode"}
    await send_email.execute(options, make_ctx(data, smtp=settings))
    [captured] = sink.messages
    msg = captured.message
    assert captured.mail_from == "router@example.org"
    assert captured.rcpt_tos == ["ops@example.com"]
    assert msg["From"] == "Router <router@example.org>"
    assert msg["Subject"] == "Line one Bcc: victim@example.com"
    assert msg["Bcc"] is None
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content().strip() == "plain ünïcode"


async def test_send_email_recipients_from_a_list_in_the_data(sink: SmtpSink) -> None:
    data = {"team": ["a@example.com", '"Bo, Jr" <b@example.com>']}
    await send_email.execute({"to": "{{ team }}", "text": "x"}, make_ctx(data, smtp=smtp_settings(sink)))
    assert sink.messages[0].rcpt_tos == ["a@example.com", "b@example.com"]
    assert sink.messages[0].message["To"] == 'a@example.com, "Bo, Jr" <b@example.com>'


async def test_send_email_html_only_autoescapes_caller_data(sink: SmtpSink) -> None:
    data = {"name": "<script>x</script> & co"}
    options = {"to": "a@example.com", "subject": "{{ name }}", "html": "<h1>Hi {{ name }}</h1>"}
    await send_email.execute(options, make_ctx(data, smtp=smtp_settings(sink)))
    # without render_html (a runner that does not offer it) the body is rendered as text
    await send_email.execute(options, make_ctx(data, with_html=False, smtp=smtp_settings(sink)))
    escaped, plain = (m.message for m in sink.messages)
    assert escaped.get_content_type() == "text/html"
    assert escaped.get_content().strip() == "<h1>Hi &lt;script&gt;x&lt;/script&gt; &amp; co</h1>"
    assert escaped["Subject"] == "<script>x</script> & co"
    assert plain.get_content().strip() == "<h1>Hi <script>x</script> & co</h1>"


async def test_send_email_permanent_refusal_is_not_retryable(sink: SmtpSink) -> None:
    sink.rcpt_reply = "550 5.1.1 No such user"
    with pytest.raises(ActionError) as info:
        await send_email.execute(
            {"to": "nobody@example.com", "text": "x"}, make_ctx(smtp=smtp_settings(sink))
        )
    assert info.value.retryable is False
    assert "550" in str(info.value)
    assert sink.messages == []


async def test_send_email_temporary_failure_is_retryable(sink: SmtpSink) -> None:
    sink.data_replies.append("451 4.3.0 Try again later")
    with pytest.raises(ActionError) as info:
        await send_email.execute({"to": "a@example.com", "text": "x"}, make_ctx(smtp=smtp_settings(sink)))
    assert info.value.retryable is True
    assert "451" in str(info.value)
    sink.rcpt_reply = "450 4.2.1 Mailbox busy"
    with pytest.raises(ActionError) as info:
        await send_email.execute({"to": "a@example.com", "text": "x"}, make_ctx(smtp=smtp_settings(sink)))
    assert info.value.retryable is True


async def test_send_email_partial_refusal_succeeds(sink: SmtpSink) -> None:
    sink.rcpt_replies["bad@example.com"] = "550 5.1.1 No such user"
    ctx = make_ctx(smtp=smtp_settings(sink))
    result = await send_email.execute({"to": "good@example.com, bad@example.com", "text": "x"}, ctx)
    assert sink.messages[0].rcpt_tos == ["good@example.com"]
    assert result.output["recipients"] == ["good@example.com"]
    assert result.output["refused"] == {"bad@example.com": "550 5.1.1 No such user"}


async def test_send_email_auth() -> None:
    with SmtpSink(credentials=("mailer", "pw-123")) as sink:
        settings = smtp_settings(sink, username="mailer", password="pw-123")
        await send_email.execute({"to": "a@example.com", "text": "x"}, make_ctx(smtp=settings))
        assert sink.messages[0].auth == "mailer"
        bad = smtp_settings(sink, username="mailer", password="wrong")
        with pytest.raises(ActionError) as info:
            await send_email.execute({"to": "a@example.com", "text": "x"}, make_ctx(smtp=bad))
        assert info.value.retryable is False
        assert "535" in str(info.value)


async def test_send_email_connection_refused_is_retryable() -> None:
    settings = OutboundSmtpSettings(host="127.0.0.1", port=free_port(), timeout=2)
    with pytest.raises(ActionError) as info:
        await send_email.execute({"to": "a@example.com", "text": "x"}, make_ctx(smtp=settings))
    assert info.value.retryable is True


async def test_send_email_bad_addresses_are_not_retryable(sink: SmtpSink) -> None:
    for options in [
        {"to": "{{ nothing }}", "text": "x"},
        {"to": "not-an-address", "text": "x"},
        {"to": "a@example.com", "from": "x@y.test, z@y.test", "text": "x"},
    ]:
        with pytest.raises(ActionError) as info:
            await send_email.execute(options, make_ctx(smtp=smtp_settings(sink)))
        assert info.value.retryable is False, options
    assert sink.messages == []


def test_send_email_validate() -> None:
    assert send_email.validate({"to": "a@example.com", "subject": "s", "text": "t"}) == []
    assert send_email.validate({"to": 5})
    assert send_email.validate({"to": "a@example.com", "headers": {"Subject": "x"}})
    assert send_email.validate({"to": "a@example.com", "from": ["a@x.test"]})


# -- send_sms / send_whatsapp --------------------------------------------------------------


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_send_sms_through_the_real_twilio_client(twilio: TwilioStandin) -> None:
    data = {"incoming_sms": {"sender_number": "+355690000001"}, "name": "Ana"}
    options = {
        "to": "{{ incoming_sms.sender_number }}",
        "body": "Hi {{ name }}, got it ✓",
        "media_url": ["https://example.com/a.png", "https://example.com/b.png"],
    }
    result = await send_sms.execute(options, make_ctx(data, twilio=twilio_settings(twilio.base_url)))
    [req] = twilio.requests
    assert req.method == "POST"
    assert req.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert req.authorization == _basic(SID, TOKEN)
    assert req.form == {
        "To": ["+355690000001"],
        "From": ["+15550001111"],
        "Body": ["Hi Ana, got it ✓"],
        "MediaUrl": ["https://example.com/a.png", "https://example.com/b.png"],
    }
    assert req.headers["content-type"] == "application/x-www-form-urlencoded"
    assert result.output["sid"].startswith("SM")
    assert result.output["status"] == "queued"
    assert result.output["to"] == "+355690000001"


async def test_send_sms_explicit_from_and_single_media(twilio: TwilioStandin) -> None:
    options = {"to": "+15551234567", "from": "+15557654321", "media_url": "https://example.com/x.jpg"}
    await send_sms.execute(options, make_ctx(twilio=twilio_settings(twilio.base_url)))
    assert twilio.requests[0].form == {
        "To": ["+15551234567"],
        "From": ["+15557654321"],
        "MediaUrl": ["https://example.com/x.jpg"],
    }


async def test_send_sms_media_urls_from_the_data(twilio: TwilioStandin) -> None:
    data = {"pics": ["https://example.com/1.png", "https://example.com/2.png"]}
    options = {"to": "+15551234567", "body": "see", "media_url": "{{ pics }}"}
    result = await send_sms.execute(options, make_ctx(data, twilio=twilio_settings(twilio.base_url)))
    assert twilio.requests[0].form["MediaUrl"] == data["pics"]
    assert result.output["num_media"] == 2


async def test_send_whatsapp_adds_prefix(twilio: TwilioStandin) -> None:
    ctx = make_ctx(twilio=twilio_settings(twilio.base_url))
    result = await send_whatsapp.execute({"to": "+15551234567", "body": "hello"}, ctx)
    await send_whatsapp.execute(
        {"to": "whatsapp:+15551234567", "from": "whatsapp:+15559990000", "body": "b"}, ctx
    )
    first, second = twilio.requests
    assert first.form == {
        "To": ["whatsapp:+15551234567"],
        "From": ["whatsapp:+15550002222"],
        "Body": ["hello"],
    }
    assert second.field("To") == "whatsapp:+15551234567"
    assert second.field("From") == "whatsapp:+15559990000"
    assert result.output["to"] == "whatsapp:+15551234567"
    assert result.output["status"] == "queued"


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [(400, 21211, False), (404, 20404, False), (429, 20429, True), (500, 20500, True), (503, None, True)],
)
async def test_twilio_errors(twilio: TwilioStandin, status: int, code: int | None, retryable: bool) -> None:
    twilio.fail_next(status, code=code, message="The 'To' number is not valid")
    with pytest.raises(ActionError) as info:
        await send_sms.execute(
            {"to": "+1555", "body": "x"}, make_ctx(twilio=twilio_settings(twilio.base_url))
        )
    assert info.value.retryable is retryable
    assert str(status) in str(info.value)
    assert TOKEN not in str(info.value)


async def test_twilio_wrong_credentials_are_not_retryable(twilio: TwilioStandin) -> None:
    settings = twilio_settings(twilio.base_url, auth_token="wrong-token")
    with pytest.raises(ActionError) as info:
        await send_sms.execute({"to": "+15551234567", "body": "x"}, make_ctx(twilio=settings))
    assert info.value.retryable is False
    assert "401" in str(info.value)


async def test_twilio_unreachable_is_retryable() -> None:
    settings = twilio_settings(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ActionError) as info:
        await send_sms.execute({"to": "+15551234567", "body": "x"}, make_ctx(twilio=settings))
    assert info.value.retryable is True


async def test_twilio_misconfiguration_is_not_retryable(twilio: TwilioStandin) -> None:
    cases: list[tuple[dict[str, Any], TwilioSettings]] = [
        ({"to": "+1555", "body": "x"}, TwilioSettings()),
        ({"to": "+1555", "body": "x"}, twilio_settings(twilio.base_url, from_number=None)),
        ({"to": "{{ nothing }}", "body": "x"}, twilio_settings(twilio.base_url)),
        ({"to": "+1555", "body": "{{ nothing }}"}, twilio_settings(twilio.base_url)),
        ({"to": "+1555", "media_url": "file:///etc/passwd"}, twilio_settings(twilio.base_url)),
    ]
    for options, settings in cases:
        with pytest.raises(ActionError) as info:
            await send_sms.execute(options, make_ctx(twilio=settings))
        assert info.value.retryable is False, options
    assert twilio.requests == []


def test_twilio_validate() -> None:
    assert send_sms.validate({"to": "+1555", "body": "x"}) == []
    assert send_whatsapp.validate({"to": "+1555", "media_url": ["https://x.test/a.png"]}) == []
    assert send_sms.validate({"to": "+1555"})
    assert send_sms.validate({"to": "+1555", "body": "x", "media_url": 5})
