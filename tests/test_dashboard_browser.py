"""Issue 7, must-show 1: the dashboard in a real headless Chromium (Selenium + Debian chromedriver).

Log in with the token, see the demo sources, deactivate one and get 404 from its URL, watch a new
signal appear live (SSE, no reload), open its trace, replay a failed signal. Screenshots go to
test-artifacts/ (gitignored).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.admin_support import TOKEN, Admin, demo_config
from tests.browser_support import all_css, chromium, css, needs_chromium, wait
from tests.browser_support import shot as browser_shot
from tests.standins.http_target import HttpTarget, Scripted

pytestmark = needs_chromium


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    with chromium(tmp_path / "chromium-profile", 1440, 900, browser_log=True) as driver:  # a laptop screen
        yield driver


def shot(driver: Any, name: str) -> None:
    browser_shot(driver, name, prefix="dashboard")


def test_dashboard_in_headless_chromium(router_factory, browser) -> None:  # type: ignore[no-untyped-def]
    with HttpTarget() as target:
        router = router_factory(demo_config(target.base_url))
        admin = Admin(router)
        try:
            _walk_through(browser, router, admin, target)
        except BaseException:
            shot(browser, "failure")
            raise
        finally:
            admin.close()


def _walk_through(driver: Any, router: Any, admin: Admin, target: HttpTarget) -> None:
    base = admin.base
    # -- log in ----------------------------------------------------------------------------
    driver.get(base + "/")
    wait("the login page", lambda: "/login" in driver.current_url)
    css(driver, "#token").send_keys("not-the-token")
    css(driver, "#login-button").click()
    wait("the refusal", lambda: "not right" in css(driver, "#login-error").text)
    css(driver, "#token").send_keys(TOKEN)
    shot(driver, "01-login")
    css(driver, "#login-button").click()
    wait("the sources page", lambda: all_css(driver, 'tr[data-source="endpoints.hello"]'))

    # -- the demo sources, with copy-URL buttons ----------------------------------------------
    rows = {r.get_attribute("data-source"): r for r in all_css(driver, "tr[data-source]")}
    assert {
        "endpoints.hello",
        "endpoints.orders",
        "webhooks.payments",
        "webhooks.forward",
        "forms.signup",
        "mailboxes.support",
        "schedules.nightly",
    } <= set(rows)
    orders_url = admin.source("endpoints.orders")["url"]
    copy = rows["endpoints.orders"].find_element("css selector", "button[data-copy]")
    assert copy.get_attribute("data-copy") == orders_url
    pay_row = rows["webhooks.payments"]
    assert "apiKey=•••" in pay_row.text and admin.source("webhooks.payments")["api_key"] not in pay_row.text
    driver.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"origin": base, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
    )
    copy.click()
    wait("the copy confirmation", lambda: copy.text == "Copied")
    clip = driver.execute_async_script(
        "const done = arguments[arguments.length - 1]; navigator.clipboard.readText().then(done, e => done('ERR ' + e));"
    )
    assert clip == orders_url
    shot(driver, "02-sources")

    # -- deactivate one: its URL answers 404 ---------------------------------------------------
    assert httpx.post(orders_url, json={}).status_code == 200
    css(driver, 'tr[data-source="endpoints.orders"] button[data-action="deactivate"]').click()
    wait(
        "the row to show inactive",
        lambda: css(driver, 'tr[data-source="endpoints.orders"]').get_attribute("data-active") == "false",
    )
    assert "inactive" in css(driver, 'tr[data-source="endpoints.orders"] .state').text
    assert httpx.post(orders_url, json={}).status_code == 404
    shot(driver, "03-deactivated")

    # -- a new signal appears live -----------------------------------------------------------
    driver.get(base + "/signals")
    wait("the live stream", lambda: css(driver, "#live").get_attribute("data-state") == "live")
    driver.execute_script("window.__sameDocument = true;")
    hello = admin.source("endpoints.hello")["url"]
    r = httpx.post(
        hello, json={"name": "ada", "card": {"last4": "4242"}}, headers={"Authorization": "Bearer s3cret"}
    )
    assert r.status_code == 200
    signal_id = admin.ok("GET", "/api/signals", params={"source": "endpoints.hello"})["items"][0]["id"]
    row = wait("the new row", lambda: all_css(driver, f'tr[data-signal="{signal_id}"]'))[0]
    wait(
        "its status to turn done",
        lambda: css(driver, f'tr[data-signal="{signal_id}"]').get_attribute("data-status") == "done",
    )
    assert driver.execute_script("return window.__sameDocument === true;"), "the page reloaded"
    assert "endpoints.hello" in row.text
    shot(driver, "04-live-signal")

    # -- its inspector: payload, masked headers, the trace step by step -----------------------------
    css(driver, f'tr[data-signal="{signal_id}"] a').click()
    wait("the inspector", lambda: all_css(driver, "#runs article.run"))
    assert '"ada"' in css(driver, "#payload").text and "4242" in css(driver, "#payload").text
    headers = css(driver, "#headers").text
    assert "authorization" in headers and "s3cret" not in driver.page_source
    run = css(driver, "#runs article.run")
    assert "hello-log" in run.text and "done" in run.text
    steps = run.find_elements("css selector", "ol.trace li.step")
    assert len(steps) == 1 and "log" in steps[0].text
    steps[0].find_element("css selector", "summary").click()
    wait("the step details", lambda: "hello ada" in steps[0].text)
    shot(driver, "05-inspector")

    # -- replay a failed signal -------------------------------------------------------------
    target.answer(Scripted(500, "down for maintenance"))
    forward = admin.source("webhooks.forward")["url"]
    failed_id = httpx.post(forward, json={"n": 42}).json()["signal_id"]
    admin.wait_signal(failed_id, "failed")
    driver.get(base + "/failed")
    row = wait("the failed row", lambda: all_css(driver, f'tr[data-signal="{failed_id}"]'))[0]
    assert "forward" in row.text
    assert css(driver, "#nav-failed").text == "1"
    shot(driver, "06-failed")
    row.find_element("css selector", "button[data-replay]").click()
    wait(
        "the replay to be queued",
        lambda: css(driver, f'tr[data-signal="{failed_id}"] button[data-replay]').text == "Queued",
    )
    done = admin.wait_signal(failed_id, "done")
    assert [r["status"] for r in done["runs"]] == ["failed", "done"]
    driver.get(f"{base}/signals/{failed_id}")
    runs = wait(
        "both runs",
        lambda: len(all_css(driver, "#runs article.run")) == 2 and all_css(driver, "#runs article.run"),
    )
    assert "done" in runs[0].text and "failed" in runs[1].text  # newest first
    shot(driver, "07-replayed")

    # -- schedules with next fire times, records, audit ----------------------------------------------
    driver.get(base + "/schedules")
    nightly = css(driver, 'tr[data-source="schedules.nightly"]')
    assert "0 2 * * *" in nightly.text and "Europe/Tirane" in nightly.text
    assert len(nightly.find_elements("css selector", "li.mono")) == 5  # the next five fire times
    shot(driver, "08-schedules")
    payments = admin.source("webhooks.payments")["url"]
    note_signal = httpx.post(payments, json={"amount": 900}).json()["signal_id"]
    admin.wait_signal(note_signal, "done")
    driver.get(base + "/records/note")
    (row,) = wait("the note", lambda: all_css(driver, "tr[data-record]"))
    assert "big payment 900" in row.text
    shot(driver, "09-records")
    row.find_element("css selector", "button[data-delete-record]").click()
    driver.switch_to.alert.accept()  # "Delete note 1? Workflows listening to deletions.note will run."
    wait("the row to go", lambda: not all_css(driver, "tr[data-record]"))
    deletion = admin.ok("GET", "/api/signals", params={"source": "deletions.note"})["items"]
    assert len(deletion) == 1
    driver.get(base + "/audit")
    audit = css(driver, "#audit").text
    assert "source.deactivate" in audit and "signal.replay" in audit and "session.login" in audit
    assert "record.delete" in audit
    shot(driver, "10-audit")

    # No script errors anywhere (a CSP violation would show up here too).
    errors = [
        e
        for e in driver.get_log("browser")
        if e["level"] == "SEVERE" and not ("/login" in e["message"] and "401" in e["message"])
    ]  # the wrong token, on purpose
    assert errors == [], errors
    log = router.log()
    assert "action=source.deactivate target=endpoints.orders result=ok who=session:" in log
    assert f"action=signal.replay target={failed_id} result=ok who=session:" in log


def test_rotation_with_a_grace_in_the_dashboard(router_factory, browser) -> None:  # type: ignore[no-untyped-def]
    """Issue 16, must-show 4 in the dashboard: rotate with a grace chosen on the page; the dialog
    shows the new key once and says when the old one stops; the row shows it afterwards."""
    router = router_factory(demo_config())
    admin = Admin(router)
    driver = browser
    try:
        old = admin.source("webhooks.payments")
        driver.get(admin.base + "/")
        wait("the login page", lambda: "/login" in driver.current_url)
        css(driver, "#token").send_keys(TOKEN)
        css(driver, "#login-button").click()
        wait("the sources page", lambda: all_css(driver, 'tr[data-source="webhooks.payments"]'))
        css(driver, '#rotate-grace option[value="1h"]').click()
        css(driver, 'tr[data-source="webhooks.payments"] button[data-action="rotate"]').click()
        driver.switch_to.alert.accept()  # "Rotate webhooks.payments? … or after the grace chosen above."
        wait("the new credentials", lambda: css(driver, "#rotated").get_attribute("open") is not None)
        new = admin.source("webhooks.payments")
        assert new["api_key"] != old["api_key"] and css(driver, "#rotated-key").text == new["api_key"]
        assert "keeps working until" in css(driver, "#rotated-notice").text
        shot(driver, "11-rotated-with-grace")
        css(driver, "#rotated-close").click()
        tag = wait(
            "the expiry on the row", lambda: css(driver, 'tr[data-source="webhooks.payments"] .tag.grace')
        )
        assert "works until" in tag.text and "in 59m" in tag.text
        assert new["previous"]["api_key"] == old["api_key"]
        assert httpx.post(old["url"], json={"amount": 1}).status_code == 200  # the old key, within the grace
        assert httpx.post(new["url"], json={"amount": 1}).status_code == 200
    except BaseException:
        shot(driver, "rotation-failure")
        raise
    finally:
        admin.close()
