"""Issue 7: the admin API against the real daemon (token, sources, signals, replay, records, reload)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.admin_support import AUTH, TOKEN, Admin, demo_config
from tests.standins.http_target import HttpTarget, Scripted


@pytest.fixture
def target() -> Iterator[HttpTarget]:
    with HttpTarget() as server:
        yield server


@pytest.fixture
def demo(router_factory, target):  # type: ignore[no-untyped-def]
    router = router_factory(demo_config(target.base_url))
    admin = Admin(router)
    yield router, admin
    admin.close()


def _fingerprint_in(log: str) -> str:
    m = re.search(r"who=token:([0-9a-f]{12})", log)
    assert m, log[-2000:]
    return m.group(1)


def test_token_required_and_keepalive_survives_refusals(demo) -> None:  # type: ignore[no-untyped-def]
    router, _ = demo
    base = f"http://127.0.0.1:{router.admin_port}"
    # One keep-alive connection: refusals (answered without a route running) must not hang the
    # next request on it (STACK-NOTES trap 1), bodies included.
    with httpx.Client(base_url=base, timeout=3) as client:
        for i in range(60):
            none = client.get("/api/sources")
            assert none.status_code == 401
            assert none.headers["www-authenticate"].startswith("Bearer")
            wrong = client.post(
                "/api/reload",
                headers={"Authorization": f"Bearer {TOKEN[:-1]}x"},
                content=b'{"pad": "' + b"x" * (i * 97) + b'"}',
            )
            assert wrong.status_code == 401
            prefix = client.get("/api/sources", headers={"Authorization": f"Bearer {TOKEN[:1]}"})
            assert prefix.status_code == 401
            longer = client.get("/api/sources", headers={"Authorization": f"Bearer {TOKEN}x"})
            assert longer.status_code == 401
            good = client.get("/api/status", headers=AUTH)
            assert good.status_code == 200, good.text
    # Public: health and the API description; metrics are not.
    assert httpx.get(f"{base}/healthz").status_code == 200
    assert httpx.get(f"{base}/openapi.json").status_code == 200
    assert httpx.get(f"{base}/metrics").status_code == 401
    # Dashboard pages send browsers to the login form instead.
    page = httpx.get(f"{base}/signals")
    assert page.status_code == 302 and page.headers["location"].startswith("/login")
    assert "admin refused" in router.log() and "bad_token" in router.log()


def test_sources_list_every_kind_and_actions_take_effect_at_once(demo) -> None:  # type: ignore[no-untyped-def]
    router, admin = demo
    items = {i["source"]: i for i in admin.ok("GET", "/api/sources")["items"]}
    assert {
        "endpoints.hello",
        "endpoints.orders",
        "webhooks.payments",
        "webhooks.forward",
        "forms.signup",
        "mailboxes.support",
        "schedules.nightly",
    } <= set(items)
    hello = items["endpoints.hello"]
    assert hello["url"].startswith(f"{router.base}/listener/") and hello["active"] is True
    assert hello["counts"] == {"pending": 0, "running": 0, "done": 0, "failed": 0}
    assert hello["last_signal"] is None and hello["workflows"] == ["hello-log"]
    assert hello["description"] == "Says hello"
    assert items["webhooks.payments"]["api_key"] and "apiKey=" in items["webhooks.payments"]["url"]
    assert items["mailboxes.support"]["address"] == "support@example.com"
    assert items["schedules.nightly"]["address"] == "0 2 * * *"
    assert items["forms.signup"]["url"] == f"{router.base}/forms/signup"

    url = hello["url"]
    sent = httpx.post(url, json={"name": "ada"})
    assert sent.status_code == 200
    signal_id = admin.ok("GET", "/api/signals", params={"source": "endpoints.hello"})["items"][0]["id"]
    admin.wait_signal(signal_id, "done")
    hello = admin.source("endpoints.hello")
    assert hello["counts"]["done"] == 1 and hello["total"] == 1
    assert hello["last_signal"]["id"] == signal_id

    # Deactivate: 404 from the very next request; activate: back.
    assert admin.ok("POST", "/api/sources/hello/deactivate")["active"] is False
    assert httpx.post(url, json={}).status_code == 404
    assert admin.ok("POST", "/api/sources/endpoints.hello/activate")["active"] is True
    assert httpx.post(url, json={}).status_code == 200

    # Rotate: the new URL is in the answer; the old one is gone at once.
    rotated = admin.ok("POST", "/api/sources/endpoints.hello/rotate")
    assert rotated["rotated"] is True and rotated["url"] != url
    assert rotated["url"].endswith(f"/{rotated['first_hash']}/{rotated['second_hash']}")
    assert httpx.post(url, json={}).status_code == 404
    assert httpx.post(rotated["url"], json={}).status_code == 200
    key = admin.ok("POST", "/api/sources/webhooks.payments/rotate")["api_key"]
    assert (
        httpx.post(
            f"{router.base}/webhooks/incoming/payments", json={}, headers={"X-Api-Key": key}
        ).status_code
        == 200
    )

    # Refusals are precise.
    assert admin.post("/api/sources/forms.signup/rotate").status_code == 409
    assert admin.post("/api/sources/nope/deactivate").status_code == 404
    assert admin.get("/api/sources/nope").status_code == 404

    # The CLI sees what the API did (same data dir).
    assert router.sources()["endpoints.hello"]["url"] == rotated["url"]

    # Every mutating call is logged with who and what; the new credentials never are.
    log = router.log()
    fp = _fingerprint_in(log)
    for action, target, result in [
        ("source.deactivate", "endpoints.hello", "ok"),
        ("source.activate", "endpoints.hello", "ok"),
        ("source.rotate", "endpoints.hello", "ok"),
        ("source.rotate", "webhooks.payments", "ok"),
        ("source.rotate", "forms.signup", "refused"),
        ("source.deactivate", "nope", "not_found"),
    ]:
        line = f"action={action} target={target} result={result} who=token:{fp} via=bearer remote=127.0.0.1"
        assert line in log, f"missing audit line: {line}"
    assert key not in log and rotated["second_hash"] not in log and TOKEN not in log
    audit = admin.ok("GET", "/api/audit")["items"]
    assert audit[0]["action"] == "source.deactivate" and audit[0]["result"] == "not_found"


@pytest.mark.usefixtures("any_backend")  # SQLite and PostgreSQL
def test_signals_filters_detail_trace_and_replay(demo, target) -> None:  # type: ignore[no-untyped-def]
    router, admin = demo
    hello = admin.source("endpoints.hello")["url"]
    payments = admin.source("webhooks.payments")
    forward = admin.source("webhooks.forward")
    t_before = time.time()

    r = httpx.post(
        payments["url"],
        json={"amount": 250, "api_token": "s3cret"},
        headers={"Idempotency-Key": "pay-1", "X-Signature": "abc", "Cookie": "a=b"},
    )
    pay_id = r.json()["signal_id"]
    httpx.post(hello, json={"name": "ada"}, headers={"Authorization": "Bearer caller-secret"})
    target.answer(Scripted(500, "target down"))
    fwd_id = httpx.post(forward["url"], json={"n": 1}).json()["signal_id"]
    admin.wait_signal(pay_id, "done")
    failed = admin.wait_signal(fwd_id, "failed")
    assert "forward" in failed["last_error"]

    # Filters: source, status, since, limit, before (paging).
    assert [
        s["id"] for s in admin.ok("GET", "/api/signals", params={"source": "webhooks.payments"})["items"]
    ] == [pay_id]
    assert [s["id"] for s in admin.ok("GET", "/api/signals", params={"status": "failed"})["items"]] == [
        fwd_id
    ]
    assert [s["id"] for s in admin.ok("GET", "/api/signals/failed")["items"]] == [fwd_id]
    assert len(admin.ok("GET", "/api/signals", params={"since": "1h"})["items"]) == 3
    future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_before + 3600))
    assert admin.ok("GET", "/api/signals", params={"since": future})["items"] == []
    page1 = admin.ok("GET", "/api/signals", params={"limit": 2})
    assert len(page1["items"]) == 2 and page1["next_before"]
    page2 = admin.ok("GET", "/api/signals", params={"limit": 2, "before": page1["next_before"]})
    assert len(page2["items"]) == 1
    assert admin.get("/api/signals", params={"status": "weird"}).status_code == 400
    assert admin.get("/api/signals", params={"since": "yesterday-ish"}).status_code == 400
    assert admin.get("/api/signals", params={"limit": "0"}).status_code == 400

    # Detail: full entity, dedup key, headers with secrets masked, runs with the per-step trace.
    detail = admin.signal(pay_id)
    assert detail["dedup_key"] == "pay-1"
    assert detail["entity"]["amount"] == 250
    assert detail["entity"]["api_token"] == "•••"
    assert detail["view"]["payload"]["amount"] == 250
    headers = detail["view"]["headers"]
    assert headers["x-signature"] == "•••" and headers["cookie"] == "•••"
    assert "s3cret" not in json.dumps(detail)
    (run,) = detail["runs"]
    assert run["workflow"] == "payment-note" and run["status"] == "done" and run["attempt"] == 1
    steps = [(s["step_id"], s["action"], s.get("branch")) for s in run["trace"]]
    assert steps[0] == ("big", "condition", "yes") and steps[1][1] == "create_record"
    assert all("duration_ms" in s for s in run["trace"])
    hello_detail = admin.ok("GET", "/api/signals", params={"source": "endpoints.hello"})["items"][0]
    hello_view = admin.signal(hello_detail["id"])
    assert hello_view["view"]["headers"]["authorization"].endswith("•••")
    assert "caller-secret" not in json.dumps(hello_view)
    assert admin.get("/api/signals/nope").status_code == 404

    # Replay one: it runs again (the target answers 200 now) and succeeds.
    assert admin.post(f"/api/signals/{pay_id}/replay").status_code == 200  # done signals replay too
    assert admin.ok("POST", f"/api/signals/{fwd_id}/replay") == {"replayed": [fwd_id]}
    done = admin.wait_signal(fwd_id, "done")
    assert [r["status"] for r in done["runs"]] == ["failed", "done"] and done["attempts"] == 2
    assert admin.post("/api/signals/nope/replay").status_code == 404

    # Bulk: every failed signal of a source.
    target.answer(Scripted(500), Scripted(500), Scripted(500))
    ids = [httpx.post(forward["url"], json={"n": n}).json()["signal_id"] for n in range(3)]
    for sid in ids:
        admin.wait_signal(sid, "failed")
    busy = admin.post(f"/api/signals/{ids[0]}/replay")
    assert busy.status_code == 200
    admin.wait_signal(ids[0], "done")
    result = admin.ok("POST", "/api/signals/replay", json={"source": "webhooks.forward"})
    assert sorted(result["replayed"]) == sorted(ids[1:]) and result["skipped"] == []
    for sid in ids:
        admin.wait_signal(sid, "done")
    by_ids = admin.ok("POST", "/api/signals/replay", json={"ids": [ids[0], "missing"]})
    assert by_ids["replayed"] == [ids[0]] and by_ids["skipped"][0]["id"] == "missing"
    assert admin.post("/api/signals/replay", content=b"[1]").status_code == 400

    log = router.log()
    assert f"action=signal.replay target={fwd_id} result=ok who=token:" in log
    assert 'action=signal.replay_bulk target="failed source=webhooks.forward" result=ok' in log
    assert "replayed=2 skipped=0" in log


@pytest.mark.usefixtures("any_backend")  # SQLite and PostgreSQL
def test_records_delete_emits_deletion_signal(demo) -> None:  # type: ignore[no-untyped-def]
    router, admin = demo
    url = admin.source("webhooks.payments")["url"]
    sid = httpx.post(url, json={"amount": 500}).json()["signal_id"]
    admin.wait_signal(sid, "done")
    assert admin.ok("GET", "/api/records")["items"] == [{"type": "note", "count": 1}]
    (note,) = admin.ok("GET", "/api/records/note")["items"]
    assert note["body"] == "big payment 500"
    assert admin.ok("GET", f"/api/records/note/{note['id']}")["id"] == note["id"]
    assert admin.get("/api/records/note/999999").status_code == 404
    assert admin.get("/api/records/bad%20type").status_code == 400

    deleted = admin.ok("DELETE", f"/api/records/note/{note['id']}")
    assert deleted["deleted"]["body"] == "big payment 500" and deleted["source"] == "deletions.note"
    signal = admin.wait_signal(deleted["signal_id"], "done")
    assert signal["source"] == "deletions.note"
    assert signal["entity"]["deleted_record"]["body"] == "big payment 500"
    assert signal["runs"][0]["workflow"] == "note-deleted"
    assert admin.ok("GET", "/api/records/note")["items"] == []
    assert admin.delete(f"/api/records/note/{note['id']}").status_code == 404
    log = router.log()
    assert f"action=record.delete target=note/{note['id']} result=ok who=token:" in log
    assert f"signal_id={deleted['signal_id']}" in log
    assert f"action=record.delete target=note/{note['id']} result=not_found" in log


def test_reload_through_api_applies_or_lists_every_error(demo) -> None:  # type: ignore[no-untyped-def]
    router, admin = demo
    text = router.config_path.read_text()
    router.config_path.write_text(
        text
        + '\n[endpoints.broken]\nreturn_type = "sometimes"\n\n[schedules.bad]\ncron = "0 2 * * *"\nevery = "5m"\n'
    )
    refused = admin.post("/api/reload")
    assert refused.status_code == 400
    body = refused.json()
    assert body["applied"] is False and len(body["errors"]) >= 2
    joined = "\n".join(body["errors"])
    assert "endpoints.broken.return_type" in joined and "schedules.bad" in joined
    assert "endpoints.broken" not in {i["source"] for i in admin.ok("GET", "/api/sources")["items"]}

    router.config_path.write_text(text + '\n[endpoints.added]\nreturn_type = "data"\nreturn_data = "hi"\n')
    applied = admin.ok("POST", "/api/reload")
    assert applied["applied"] is True
    added = admin.source("endpoints.added")
    assert httpx.get(added["url"]).text == "hi"
    log = router.log()
    assert "action=config.reload" in log and "result=refused" in log and "errors=" in log
    assert re.search(r"action=config.reload target=\S+ result=ok who=token:", log)


def test_cookie_session_needs_csrf_for_changes(demo) -> None:  # type: ignore[no-untyped-def]
    router, _ = demo
    base = f"http://127.0.0.1:{router.admin_port}"
    with httpx.Client(base_url=base, timeout=5) as browser:
        bad = browser.post("/login", data={"token": "nope", "next": "/"})
        assert bad.status_code == 401 and "not right" in bad.text
        ok = browser.post("/login", data={"token": TOKEN, "next": "//evil.example/"})
        assert ok.status_code == 302 and ok.headers["location"] == "/"
        cookie = ok.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert browser.get("/api/sources").status_code == 200  # reads: the cookie is enough
        assert browser.post("/api/sources/hello/deactivate").status_code == 403  # changes: CSRF too
        page = browser.get("/")
        csrf = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page.text)
        assert csrf, page.text[:500]
        done = browser.post("/api/sources/hello/deactivate", headers={"X-CSRF-Token": csrf.group(1)})
        assert done.status_code == 200 and done.json()["active"] is False
        assert browser.post("/logout", data={"csrf_token": csrf.group(1)}).status_code == 302
    log = router.log()
    assert (
        "action=session.login target=dashboard result=refused who=unknown via=login remote=127.0.0.1" in log
    )
    assert (
        "action=source.deactivate target=endpoints.hello result=ok who=session:" in log
        and "via=cookie" in log
    )
    assert "action=session.logout" in log


@pytest.mark.usefixtures("any_backend")  # SQLite and PostgreSQL
def test_live_events_stream_new_signals_and_status_changes(demo) -> None:  # type: ignore[no-untyped-def]
    router, admin = demo
    url = admin.source("endpoints.orders")["url"]
    seen: list[dict[str, Any]] = []
    opened = threading.Event()

    def listen() -> None:
        with (
            httpx.Client(timeout=httpx.Timeout(10, read=10)) as client,
            client.stream("GET", f"{admin.base}/api/events", headers=AUTH) as stream,
        ):
            assert stream.headers["content-type"].startswith("text/event-stream")
            event = None
            for line in stream.iter_lines():
                opened.set()
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "signal":
                    seen.append(json.loads(line[6:]))
                    if any(s["status"] == "done" for s in seen):
                        return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert opened.wait(5)
    signal_id = httpx.post(url, json={"n": 7}).text and admin.ok("GET", "/api/signals")["items"][0]["id"]
    thread.join(10)
    assert not thread.is_alive(), f"no event for {signal_id}: {seen}"
    assert seen[0]["id"] == signal_id and seen[0]["source"] == "endpoints.orders"
    assert seen[-1]["status"] == "done"


def test_openapi_describes_every_route() -> None:
    from router.admin.server import create_app

    class _Cfg:
        class admin:
            token = "x"

    class _Daemon:
        cfg = _Cfg()

    app = create_app(_Daemon())
    spec = json.loads(
        (__import__("pathlib").Path(__file__).parent.parent / "router/admin/openapi.json").read_text()
    )
    assert spec["openapi"].startswith("3.1")
    documented = {
        (path, method.upper())
        for path, ops in spec["paths"].items()
        for method in ops
        if method in ("get", "post", "put", "patch", "delete")
    }
    served = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        if not (path.startswith("/api/") or path in ("/metrics", "/openapi.json", "/healthz", "/readyz")):
            continue
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            served.add((path, method))
    assert served == documented, f"undocumented: {served - documented}; stale: {documented - served}"
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if method in ("get", "post", "delete"):
                assert op.get("summary") and op.get("responses"), (path, method)


def test_no_token_on_loopback_is_open_and_disabled_admin_is_not_served(router_factory) -> None:  # type: ignore[no-untyped-def]
    router = router_factory(demo_config(), start=False)
    router.config_path.write_text(
        router.config_path.read_text().replace('token = "test-admin-token"', 'token = ""')
    )
    router.start()
    base = f"http://127.0.0.1:{router.admin_port}"
    assert httpx.get(f"{base}/api/sources").status_code == 200
    assert httpx.get(f"{base}/login").headers["location"] == "/"  # nothing to log in with
    assert httpx.get(f"{base}/").status_code == 200
    done = httpx.post(f"{base}/api/sources/hello/deactivate")
    assert done.status_code == 200
    assert "admin has no token" in router.log()
    assert (
        "action=source.deactivate target=endpoints.hello result=ok who=open via=open remote=127.0.0.1"
        in router.log()
    )
    router.stop()

    router.config_path.write_text(
        router.config_path.read_text().replace("[admin]\n", "[admin]\nenabled = false\n")
    )
    router.start()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/healthz")
