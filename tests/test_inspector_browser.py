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
    httpx.post(
        admin.source("webhooks.signed")["url"],
        content=b'{"marker": "bad-sig-body"}',
        headers={"content-type": "application/json", "X-Hub-Signature-256": "sha256=00"},
    )

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

    items = _wait(
        f"a signal from {source}", lambda: admin.ok("GET", "/api/signals", params={"source": source})["items"]
    )
    return str(items[0]["id"])


LIST_CONFIG = """
[webhooks.orders]

[webhooks.forward]

[[workflows]]
name = "orders-log"
listen = "webhooks.orders"

[[workflows.steps]]
action = "log"
message = "order {{ __data.n }}"

[[workflows]]
name = "forward"
listen = "webhooks.forward"
max_attempts = 1

[[workflows.steps]]
id = "post"
action = "webhook"
url = "{target}/hook"
json = { n = "{{ __data.n }}" }
"""


def test_list_pages_searches_narrows_shares_and_replays_by_filter(router_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from urllib.parse import parse_qs, urlsplit

    from tests.standins.http_target import HttpTarget, Scripted
    from tests.test_signal_search import send_many

    with HttpTarget() as target:
        router = router_factory(LIST_CONFIG.replace("{target}", target.base_url))
        admin = Admin(router)
        ids = send_many(
            admin.source("webhooks.orders")["url"], 1000, lambda i: {"n": i, "ref": f"REF-{i:04d}-Q"}
        )
        wait(
            "1000 done",
            lambda: admin.ok("GET", "/api/signals/count", params={"status": "done"})["count"] == 1000,
            timeout=60,
        )
        target.answer(*[Scripted(500, "down")] * 12)
        forward = admin.source("webhooks.forward")["url"]
        failed = send_many(forward, 12, lambda i: {"n": i})
        wait(
            "12 failed",
            lambda: admin.ok("GET", "/api/signals/count", params={"status": "failed"})["count"] == 12,
        )

        with chromium(tmp_path / "profile") as driver:
            login(driver, admin.base, TOKEN)
            # Paging reaches the first signal.
            driver.get(f"{admin.base}/signals?source=webhooks.orders")
            pages = 1
            while all_css(driver, "#older"):
                before = driver.current_url
                css(driver, "#older").click()
                pages += 1
                wait(
                    "the next page",
                    lambda before=before: driver.current_url != before and all_css(driver, "#newer"),
                )
            rows = all_css(driver, "#signal-rows tr[data-signal]")
            assert rows[-1].get_attribute("data-signal") == min(ids) and pages == 10
            last = driver.current_url
            css(driver, "#newer").click()
            wait("the newer page", lambda: driver.current_url != last and all_css(driver, "#older"))
            assert len(all_css(driver, "#signal-rows tr")) == 100

            # A search for a value inside one payload finds exactly that signal.
            driver.get(f"{admin.base}/signals")
            box = css(driver, "#f-q")
            box.send_keys("REF-0733-Q")
            css(driver, "#apply-filters").click()
            wait("the search", lambda: "q=REF-0733-Q" in driver.current_url)
            found = [r.get_attribute("data-signal") for r in all_css(driver, "#signal-rows tr")]
            assert found == [ids[733]]

            # A time range narrows the list; the URL of the view reopens the same view.
            cut = admin.signal(ids[960])["received_at"]
            expected = admin.ok(
                "GET", "/api/signals/count", params={"since": cut, "source": "webhooks.orders"}
            )["count"]
            driver.get(f"{admin.base}/signals")
            css(driver, "#f-since").send_keys(cut)
            css(driver, "#f-source").send_keys("webhooks.orders")
            css(driver, "#apply-filters").click()
            wait("the range", lambda: "since=" in driver.current_url)
            shown = [r.get_attribute("data-signal") for r in all_css(driver, "#signal-rows tr")]
            assert 0 < len(shown) == expected < 1000
            shared = driver.current_url
            assert parse_qs(urlsplit(shared).query)["source"] == ["webhooks.orders"]
            driver.get(f"{admin.base}/signals")
            driver.get(shared)
            assert [r.get_attribute("data-signal") for r in all_css(driver, "#signal-rows tr")] == shown
            assert css(driver, "#f-since").get_attribute("value") == cut

            # Bulk replay of "failed, source forward, last hour": the count shown is the count replayed.
            driver.get(f"{admin.base}/signals?status=failed&source=webhooks.forward&since=1h")
            css(driver, "#replay-matching").click()
            n = wait("the count", lambda: css(driver, "#replay-n").text)
            assert n == "12" and "12 of 12 matching" in css(driver, "#replay-count").text
            shot(driver, "replay-dialog")
            css(driver, "#replay-confirm").click()
            wait("the flash", lambda: "12 signals queued for replay" in css(driver, "#toast").text)
            wait("the replays", lambda: all(admin.signal(s)["status"] == "done" for s in failed))

            # Replaying a done signal from its inspector records a new run, and its webhook is called again.
            done_id = failed[0]

            def calls() -> int:
                with target.lock:
                    return len([r for r in target.requests if r.json in ({"n": 0}, {"n": "0"})])

            before_calls = calls()
            driver.get(f"{admin.base}/signals/{done_id}")
            css(driver, "#replay-button").click()
            wait(
                "the new run",
                lambda: len(admin.signal(done_id)["runs"]) == 3 and admin.signal(done_id)["status"] == "done",
            )
            assert calls() == before_calls + 1
            driver.get(f"{admin.base}/signals/{done_id}")
            runs = all_css(driver, "#runs article.run")
            assert len(runs) == 3 and "attempt 3" in runs[0].text  # newest first
        admin.close()
