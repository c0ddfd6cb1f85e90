"""Issue 7, must-show 3 (second half): hot reload under load loses nothing."""

from __future__ import annotations

import signal
import threading

import httpx

from tests.admin_support import Admin

STAY = """
[endpoints.stay]
return_type = "data"
return_data = '{"ok": true}'

[[workflows]]
name = "stay-log"
listen = "endpoints.stay"

[[workflows.steps]]
action = "log"
message = "stay {{ __data.n }}"
"""

GONE = """
[endpoints.gone]
return_type = "data"
return_data = "gone soon"
"""

FRESH = """
[endpoints.fresh{n}]
return_type = "data"
return_data = "fresh {n}"

[[workflows]]
name = "fresh-log-{n}"
listen = "endpoints.fresh{n}"

[[workflows.steps]]
action = "log"
message = "fresh"
"""

CLIENTS = 32


class Load:
    """32 keep-alive clients posting to one URL as fast as they can, counting every outcome."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ok = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(CLIENTS)]

    def _client(self, i: int) -> None:
        n = 0
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set():
                n += 1
                try:
                    r = client.post(self.url, json={"n": f"{i}-{n}"})
                    good, what = r.status_code == 200, f"{r.status_code} {r.text[:100]}"
                except httpx.HTTPError as exc:
                    good, what = False, repr(exc)
                with self.lock:
                    if good:
                        self.ok += 1
                    else:
                        self.failures.append(what)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(15)


def test_sighup_adds_and_removes_endpoints_under_load_with_zero_failures(router_factory) -> None:  # type: ignore[no-untyped-def]
    router = router_factory(STAY + GONE)
    admin = Admin(router)
    stay = admin.source("endpoints.stay")["url"]
    gone = admin.source("endpoints.gone")["url"]
    base_config = router.config_path.read_text().replace(GONE, "")
    assert httpx.post(gone, json={}).status_code == 200

    with Load(stay) as load:
        router.wait_for(lambda: load.ok >= 200, timeout=20, interval=0.01)
        # 1: remove `gone`, add `fresh1`.
        router.config_path.write_text(base_config + FRESH.format(n=1))
        router.signal(signal.SIGHUP)
        fresh = router.wait_for(
            lambda: (
                admin.get("/api/sources/endpoints.fresh1").status_code == 200
                and admin.source("endpoints.fresh1")["url"]
            ),
            timeout=10,
        )
        assert httpx.post(fresh, json={}).text == "fresh 1"
        assert httpx.post(gone, json={}).status_code == 404
        # More reloads back and forth while the load goes on: each applies, none disturbs `stay`.
        for n in range(2, 6):
            before = load.ok
            router.config_path.write_text(base_config + FRESH.format(n=n))
            router.signal(signal.SIGHUP)
            url = router.wait_for(
                lambda n=n: (
                    admin.get(f"/api/sources/endpoints.fresh{n}").status_code == 200
                    and admin.source(f"endpoints.fresh{n}")["url"]
                ),
                timeout=10,
            )
            assert httpx.post(url, json={}).text == f"fresh {n}"
            assert admin.get(f"/api/sources/endpoints.fresh{n - 1}").status_code == 404
            router.wait_for(lambda before=before: load.ok > before + 50, timeout=10, interval=0.01)
        sent_during = load.ok

    assert load.failures == [], f"{len(load.failures)} failed requests, e.g. {load.failures[:5]}"
    assert sent_during >= 400
    assert router.log().count("msg=reloaded") == 5
    assert "reload refused" not in router.log() and "Traceback" not in router.log()
    # Every acknowledged request was journaled and run.
    status = router.wait_for(
        lambda: (s := admin.ok("GET", "/api/status")["signals"])["pending"] == 0 and s["running"] == 0 and s,
        timeout=20,
    )
    assert status["failed"] == 0 and status["done"] >= load.ok
    assert router.proc is not None and router.proc.poll() is None
    admin.close()


def test_broken_config_over_sighup_is_refused_with_every_error_and_serving_goes_on(router_factory) -> None:  # type: ignore[no-untyped-def]
    router = router_factory(STAY)
    admin = Admin(router)
    stay = admin.source("endpoints.stay")["url"]
    good = router.config_path.read_text()
    router.config_path.write_text(
        good + '\n[endpoints.bad]\nreturn_type = "nope"\n\n[webhooks.w]\nmax_body = "lots"\n'
        '\n[[workflows]]\nname = "x"\nlisten = "endpoints.missing"\n'
    )
    with Load(stay) as load:
        router.wait_for(lambda: load.ok >= 100, timeout=20, interval=0.01)
        router.signal(signal.SIGHUP)
        router.wait_for(lambda: router.log().count("reload refused") >= 3, timeout=10)
        served = load.ok
        router.wait_for(lambda: load.ok >= served + 20, timeout=10, interval=0.01)  # and serving goes on
    log = router.log()
    refused = [line for line in log.splitlines() if "reload refused" in line]
    assert any("endpoints.bad.return_type" in line for line in refused), refused
    assert any("webhooks.w.max_body" in line for line in refused), refused
    assert any("endpoints.missing" in line for line in refused), refused
    assert load.failures == []
    assert admin.get("/api/sources/endpoints.bad").status_code == 404  # nothing of it applied
    # The API lists the same problems.
    body = admin.post("/api/reload").json()
    assert body["applied"] is False and len(body["errors"]) == len(refused)
    admin.close()
