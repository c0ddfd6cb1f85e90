"""Issue 15: refused requests are kept for inspection, bounded (the real daemon, real clients).

A bad signature, a bad API key, a malformed body, a body over the limit, an unknown URL: each
leaves a row (time, method, masked path and headers, the first 16 KiB of the body, status,
reason, our answer), listed by the admin API, `router refused` and counted in /metrics by reason.
A flood of 10,000 to one source keeps at most N rows, grows the data dir by less than 10 MB and
costs the journal at most about one write a second.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from pathlib import Path

import httpx

from tests.admin_support import Admin

SECRET = "sig-secret-" + "k" * 32
CONFIG = f"""
[webhooks.signed]
signature = "github"
signing_secret = "{SECRET}"

[webhooks.plain]
max_body = "4KiB"

[endpoints.hello]
return_data = "ok"

[mailboxes.support]
address = "support@example.com"

[[workflows]]
name = "log"
listen = "webhooks.*"

[[workflows.steps]]
action = "log"
message = "got one"
"""


def _wait(what: str, predicate, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def test_refused_requests_are_kept_listed_and_counted(router_factory) -> None:  # type: ignore[no-untyped-def]
    router = router_factory(CONFIG)
    admin = Admin(router)
    signed, plain = admin.source("webhooks.signed")["url"], admin.source("webhooks.plain")["url"]
    hello = admin.source("endpoints.hello")["url"]
    key = plain.split("apiKey=")[1]
    signed_key = signed.split("apiKey=")[1]

    body = json.dumps({"order": "sig-body-marker"}).encode()
    wrong = "sha256=" + hmac.new(b"not-the-secret", body, hashlib.sha256).hexdigest()
    r1 = httpx.post(
        signed,
        content=body,
        headers={
            "content-type": "application/json",
            "X-Hub-Signature-256": wrong,
            "Authorization": "Bearer caller-secret",
        },
    )
    assert r1.status_code == 401
    r2 = httpx.post(plain.replace(key, "wrong-key"), json={"order": "key-body-marker"})
    assert r2.status_code == 401
    r3 = httpx.post(plain, content=b'{"broken": ', headers={"content-type": "application/json"})
    assert r3.status_code == 400
    r4 = httpx.post(plain, content=b"x" * 5000, headers={"content-type": "application/json"})
    assert r4.status_code == 413
    r5 = httpx.post(f"{router.base}/webhooks/incoming/nope", content=b"who am I")
    assert r5.status_code == 404
    r6 = httpx.request("DELETE", hello)
    assert r6.status_code == 405
    ok = httpx.post(
        signed,
        content=body,
        headers={
            "content-type": "application/json",
            "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
        },
    )
    assert ok.status_code == 200  # accepted: not a refusal

    items = _wait(
        "six refusals", lambda: (i := admin.ok("GET", "/api/refused")["items"]) and len(i) >= 6 and i
    )
    assert len(items) == 6, items
    by_status = {i["status"]: i for i in items}
    assert items[0]["status"] == 405  # newest first
    key_item = next(i for i in items if i["status"] == 401 and i["source"] == "webhooks.plain")
    sig = admin.ok("GET", f"/api/refused/{key_item['id']}")
    assert sig["source"] == "webhooks.plain" and sig["reason"] == "invalid API key"
    assert (
        "key-body-marker" in sig["body"]
        and "wrong-key" not in json.dumps(sig)
        and "apiKey=•••" in sig["query"]
    )
    bad_sig = next(
        admin.ok("GET", f"/api/refused/{i['id']}") for i in items if i["source"] == "webhooks.signed"
    )
    assert bad_sig["status"] == 401 and bad_sig["reason"] == "invalid signature"
    assert "sig-body-marker" in bad_sig["body"] and "invalid signature" in bad_sig["answer"]
    assert (
        bad_sig["headers"]["x-hub-signature-256"] == "•••"
        and bad_sig["headers"]["authorization"] == "Bearer •••"
    )
    assert "caller-secret" not in json.dumps(bad_sig) and signed_key not in json.dumps(bad_sig)
    assert bad_sig["method"] == "POST" and bad_sig["path"].startswith("/webhooks/incoming/")
    assert bad_sig["remote"] == "127.0.0.1" and bad_sig["request_id"] == r1.headers["x-request-id"]
    malformed = admin.ok("GET", f"/api/refused/{by_status[400]['id']}")
    assert malformed["body"] == '{"broken": ' and malformed["reason"].startswith("invalid JSON")
    big = admin.ok("GET", f"/api/refused/{by_status[413]['id']}")
    assert big["body_size"] == 5000 and big["body_truncated"] and "exceeds the limit" in big["reason"]
    unknown = by_status[404]
    assert unknown["source"] == "unknown" and unknown["path"] == "/webhooks/incoming/nope"
    endpoint = admin.ok("GET", f"/api/refused/{by_status[405]['id']}")
    first_hash = hello.split("/listener/")[1].split("/")[0]
    assert endpoint["source"] == "endpoints.hello" and first_hash not in json.dumps(endpoint)
    assert re.fullmatch(r"/listener/\w{4}…/\w{4}…", endpoint["path"])

    only = admin.ok("GET", "/api/refused", params={"source": "webhooks.plain"})["items"]
    assert sorted(i["status"] for i in only) == [400, 401, 413]
    assert admin.get("/api/refused/nope").status_code == 404

    # The CLI lists the same rows, by source too.
    cli = json.loads(router.cli("refused", "--source", "signed", "--json").stdout)
    assert [c["id"] for c in cli] == [bad_sig["id"]] and "sig-body-marker" in cli[0]["body"]
    table = router.cli("refused").stdout
    assert "invalid signature" in table and "unknown" in table and table.splitlines()[0].startswith("ID")
    assert router.cli("refused", "--source", "nosuch", check=False).returncode == 1

    # SMTP: a recipient refused at RCPT is kept too (bucket `smtp`), with the answer the client got.
    import smtplib

    with smtplib.SMTP("127.0.0.1", router.smtp_port, timeout=10) as smtp:
        smtp.ehlo("test.example")
        smtp.mail("ada@example.org")
        code, _ = smtp.rcpt("nobody@example.com")
        assert code == 550
    mail = _wait(
        "the SMTP refusal", lambda: admin.ok("GET", "/api/refused", params={"source": "smtp"})["items"]
    )
    one = admin.ok("GET", f"/api/refused/{mail[0]['id']}")
    assert (one["channel"], one["method"], one["path"], one["status"]) == (
        "smtp",
        "RCPT",
        "nobody@example.com",
        550,
    )
    assert one["reason"] == "no_such_mailbox" and "no such mailbox" in one["answer"]
    assert one["headers"] == {"mail-from": "ada@example.org"} and one["remote"] == "127.0.0.1"

    # Counted in /metrics by reason (router_refused_total, from the ops work: not a second counter).
    metrics = admin.get("/metrics").text
    assert 'router_refused_total{channel="webhooks",reason="unauthorized"} 2.0' in metrics
    assert 'router_refused_total{channel="webhooks",reason="too_large"} 1.0' in metrics
    admin.close()


def test_a_flood_keeps_at_most_n_and_stays_off_the_journal(router_factory) -> None:  # type: ignore[no-untyped-def]
    router = router_factory(CONFIG, admin_extra="refused_keep = 200")
    admin = Admin(router)
    plain = admin.source("webhooks.plain")["url"]
    bad = plain.replace(plain.split("apiKey=")[1], "wrong")
    _wait("the data dir to settle", lambda: _dir_size(router.data_dir) > 0)
    before = _dir_size(router.data_dir)

    def commits() -> float:
        m = re.search(r"^router_journal_commit_seconds_count (\S+)$", admin.get("/metrics").text, re.M)
        return float(m.group(1)) if m else 0.0

    commits_before = commits()
    body = json.dumps({"pad": "p" * 3000}).encode()  # ~3 KiB each, 30 MB in all
    sent: list[int] = []
    started = time.monotonic()

    def flood(n: int) -> None:
        with httpx.Client(timeout=10) as client:
            for _ in range(n):
                sent.append(
                    client.post(bad, content=body, headers={"content-type": "application/json"}).status_code
                )

    threads = [threading.Thread(target=flood, args=(2500,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert len(sent) == 10_000 and set(sent) == {401}
    # The flush after the last refusal: then the table holds exactly the newest 200.
    _wait(
        "the last flush",
        lambda: (
            len(admin.ok("GET", "/api/refused", params={"limit": 1000})["items"]) == 200
            and router.cli("refused", "--limit", "1000", "--json").stdout.count('"id"') == 200
        ),
        timeout=10,
    )
    time.sleep(1.5)  # one more flush interval: nothing else is written late
    items = admin.ok("GET", "/api/refused", params={"limit": 1000})["items"]
    assert len(items) == 200
    grown = _dir_size(router.data_dir) - before
    assert grown < 10 * 1024 * 1024, f"the data dir grew by {grown} bytes"
    # At most one write a second from the flood's start to this read (the waits above included:
    # on a loaded machine they last seconds, and the daemon's own once-a-second writes go on).
    extra = commits() - commits_before
    counted = time.monotonic() - started
    assert extra <= counted / 1.0 + 4, f"{extra} commits in {counted:.1f}s (flood {elapsed:.1f}s)"
    print(f"\n10,000 refused in {elapsed:.1f}s: {extra:.0f} journal commits, data dir +{grown / 1e6:.2f} MB")
    admin.close()
