"""A real browser: headless Chromium (Debian's `chromium` + `chromium-driver`, installed by
.ci/run) on a page served from another origin calls a JWT + CORS endpoint with `fetch` and shows
the JSON reply. Passing means the preflight was answered before the JWT check and the token was
verified (SPEC §6). A screenshot is saved under test-artifacts/."""

from __future__ import annotations

import json
import shutil
import time
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.standins import ThreadedServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None, reason="chromium and chromium-driver are not installed"
)

SECRET = "browser-secret-" + "b" * 32
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>cors + jwt</title></head>
<body>
<h1>router from another origin</h1>
<pre id="out"></pre>
<pre id="anon"></pre>
<script>
const url = %(url)s;
const token = %(token)s;
function show(id, value) { document.getElementById(id).textContent = value; }
fetch(url, {
  method: "POST",
  headers: {"Authorization": "Bearer " + token, "Content-Type": "application/json"},
  body: JSON.stringify({hello: "from the browser"}),
})
  .then(r => r.json().then(body => show("out", JSON.stringify({status: r.status, body: body}))))
  .catch(e => show("out", "ERROR " + e));
fetch(url, {method: "POST", headers: {"Content-Type": "application/json"}, body: "{}"})
  .then(r => r.json().then(body => show("anon", JSON.stringify({status: r.status, body: body}))))
  .catch(e => show("anon", "ERROR " + e));
</script>
</body></html>
"""


class _PageHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = self.server.owner.page.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class PageServer(ThreadedServer):
    handler_class = _PageHandler
    page = ""


def _browser(tmp_path: Path) -> Any:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=900,600",
    ):
        options.add_argument(arg)
    # An explicit driver path: Selenium never tries to download a driver or a browser.
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)


def _wait_text(driver: Any, element_id: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = str(driver.find_element("id", element_id).text)
        if text:
            return text
        time.sleep(0.1)
    raise AssertionError(f"#{element_id} stayed empty; page:\n{driver.page_source[:2000]}")


def test_browser_fetch_from_another_origin_with_jwt(router_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("selenium")
    with PageServer() as allowed_page, PageServer() as other_page:
        config = f"""
        [endpoints.api]
        return_type = "data"
        return_data = '{{"user": {{{{ __data.__headers.__jwt_data[0] | json_encode }}}}, "hello": "{{{{ __data.hello }}}}"}}'
        add_authentication = true
        endpoint_key = "spa"
        endpoint_secret = "{SECRET}"
        allow_cors = true
        cors_domains = "{allowed_page.base_url}"
        """
        router = router_factory(config)
        url = router.url("endpoints.api")
        now = int(time.time())
        token = jwt.encode({"iss": "spa", "iat": now, "exp": now + 300, "data": {"id": 42}}, SECRET, "HS256")
        page = PAGE % {"url": json.dumps(url), "token": json.dumps(token)}
        allowed_page.page = other_page.page = page

        driver = _browser(tmp_path)
        try:
            driver.get(allowed_page.url("/index.html"))
            out = json.loads(_wait_text(driver, "out"))
            anon = json.loads(_wait_text(driver, "anon"))
            ARTIFACTS.mkdir(exist_ok=True)
            driver.save_screenshot(str(ARTIFACTS / "browser-cors-jwt.png"))
            # Preflight passed (a Bearer header and a JSON body force one), the JWT was checked and its
            # data claim reached the template; the reply is readable by the page (CORS headers).
            assert out == {"status": 200, "body": {"user": {"id": 42}, "hello": "from the browser"}}
            # Without a token: 403, and the page can read why (CORS headers on errors too).
            assert anon["status"] == 403 and anon["body"]["error"] == "forbidden"

            # The same page from an origin that is not listed: the browser blocks the call.
            driver.get(other_page.url("/index.html"))
            blocked = _wait_text(driver, "out")
            assert blocked.startswith("ERROR"), blocked
        finally:
            driver.quit()
    assert (ARTIFACTS / "browser-cors-jwt.png").stat().st_size > 1000
    sigs = router.signals("--source", "endpoints.api")
    assert [s["entity"]["__headers"]["__jwt_data"] for s in sigs] == [[{"id": 42}]]
