"""Issue 15 in a real headless Chromium against the real daemon: the dashboard as a request inspector.

Must-show 1: a bad signature and a bad API key appear in the refused list with reason and body.
Must-show 2: the inspector shows method, path, raw body and the answer body we sent.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.admin_support import TOKEN, Admin
from tests.browser_support import all_css, chromium, css, login, needs_chromium, shot, wait

pytestmark = needs_chromium

SECRET = "sig-secret-" + "k" * 32
CONFIG = f"""
[endpoints.hello]
return_type = "data"
return_data = '{{"hello": "{{{{ __data.name }}}}", "order": "{{{{ __data.order }}}}"}}'

[webhooks.signed]
signature = "github"
signing_secret = "{SECRET}"

[webhooks.plain]

[mailboxes.support]
address = "support@example.com"

[[workflows]]
name = "hello-log"
listen = "endpoints.hello"

[[workflows.steps]]
action = "log"
message = "hello {{{{ __data.name }}}}"
"""


def test_inspector_shows_request_raw_body_answer_and_refusals(router_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    router = router_factory(CONFIG)
    admin = Admin(router)
    hello = admin.source("endpoints.hello")["url"]
    raw = b'{"name":"ada",  "order": "ORD-4711",\n "note": "raw \\u00e9 spacing kept"}'
    r = httpx.post(hello + "?trace=on", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 200
    sid = admin.ok("GET", "/api/signals", params={"source": "endpoints.hello"})["items"][0]["id"]
    admin.wait_signal(sid, "done")
    # The whole raw body downloads as received.
    download = admin.get(f"/api/signals/{sid}/body")
    assert download.content == raw and "attachment" in download.headers["content-disposition"]

    plain = admin.source("webhooks.plain")["url"]
    httpx.post(plain.replace(plain.split("apiKey=")[1], "wrong-key"), json={"marker": "bad-key-body"})
    httpx.post(admin.source("webhooks.signed")["url"], content=b'{"marker": "bad-sig-body"}',
               headers={"content-type": "application/json", "X-Hub-Signature-256": "sha256=00"})

    with chromium(tmp_path / "profile") as driver:
        login(driver, admin.base, TOKEN)
        driver.get(f"{admin.base}/signals/{sid}")
        wait("the inspector", lambda: css(driver, "#request"))
        assert css(driver, "#req-method").text == "POST"
        first_hash = hello.split("/listener/")[1].split("/")[0]
        path = css(driver, "#req-path").text
        assert path.startswith("/listener/" + first_hash[:4]) and first_hash not in path
        assert css(driver, "#req-remote").text == "127.0.0.1"
        assert css(driver, "#raw-body").text == raw.decode()  # as received: spacing and escapes kept
        assert css(driver, "#answer-status").text == "200"
        assert json.loads(css(driver, "#answer-body").text) == {"hello": "ada", "order": "ORD-4711"}
        assert css(driver, "#raw-download").get_attribute("href").endswith(f"/api/signals/{sid}/body")
        shot(driver, "signal")

        driver.get(f"{admin.base}/refused")
        wait("the refused list", lambda: len(all_css(driver, "tr[data-refused]")) == 2)
        rows = [row.text for row in all_css(driver, "tr[data-refused]")]
        assert "invalid signature" in rows[0] and "webhooks.signed" in rows[0]
        assert "invalid API key" in rows[1] and "webhooks.plain" in rows[1]
        shot(driver, "refused")
        all_css(driver, "tr[data-refused] a")[1].click()
        wait("the refusal", lambda: css(driver, "#refused-body"))
        assert "bad-key-body" in css(driver, "#refused-body").text
        assert "invalid API key" in css(driver, "#refused-reason").text
        assert "wrong-key" not in driver.page_source
        driver.back()
        wait("the refused list", lambda: all_css(driver, "tr[data-refused] a"))
        all_css(driver, "tr[data-refused] a")[0].click()
        wait("the refusal", lambda: css(driver, "#refused-body"))
        assert "bad-sig-body" in css(driver, "#refused-body").text
        assert "invalid signature" in css(driver, "#refused-answer").text
    admin.close()


def test_email_signal_shows_its_headers(router_factory) -> None:  # type: ignore[no-untyped-def]
    import smtplib
    from email.message import EmailMessage

    router = router_factory(CONFIG)
    admin = Admin(router)
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ada@example.org", "support@example.com", "Help me"
    msg["X-Ticket"] = "T-99"
    msg.set_content("hello")
    with smtplib.SMTP("127.0.0.1", router.smtp_port, timeout=10) as smtp:
        smtp.send_message(msg)
    sid = wait_for_signal(admin, "mailboxes.support")
    page = admin.get(f"/signals/{sid}").text
    assert "No headers" not in page and "T-99" in page and "Help me" in page
    detail = admin.signal(sid)
    assert detail["view"]["headers"]["x-ticket"] == "T-99" and detail["request"]["method"] == "SMTP"
    admin.close()


def wait_for_signal(admin: Admin, source: str) -> str:
    from tests.browser_support import wait as _wait

    items = _wait(f"a signal from {source}",
                  lambda: admin.ok("GET", "/api/signals", params={"source": source})["items"])
    return str(items[0]["id"])
