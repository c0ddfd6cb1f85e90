"""Issue 2's guarantees against the real daemon: crash, SIGTERM, SIGHUP, `router check`."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

JOURNALING = """
[webhooks.ingest]

[[workflows]]
name = "count"
listen = "webhooks.ingest"

[[workflows.steps]]
action = "create_record"
record_type = "seen"
fields = { n = "{{ __data.n }}" }
"""


def _post_many(url: str, clients: int, per_client: int, acked: list[int], stop: threading.Event) -> None:
    def worker(c: int) -> None:
        with httpx.Client(timeout=5) as client:
            for i in range(per_client):
                if stop.is_set():
                    return
                n = c * 100000 + i
                try:
                    r = client.post(url, json={"n": n})
                except httpx.HTTPError:
                    continue
                if 200 <= r.status_code < 300:
                    acked.append(n)

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_sigkill_under_load_loses_no_acknowledged_signal(router_factory) -> None:  # type: ignore[no-untyped-def]
    router = router_factory(JOURNALING)
    url = router.url("webhooks.ingest")
    acked: list[int] = []
    stop = threading.Event()
    load = threading.Thread(target=_post_many, args=(url, 64, 10_000, acked, stop))
    load.start()
    router.wait_for(lambda: len(acked) > 300, timeout=30, interval=0.01)
    router.kill()  # SIGKILL mid-way
    stop.set()
    load.join()
    assert acked, "no request was acknowledged before the kill"

    router.start()

    def all_done():  # type: ignore[no-untyped-def]
        sigs = router.signals("--source", "webhooks.ingest")
        return sigs if sigs and all(s["status"] == "done" for s in sigs) else None

    sigs = router.wait_for(all_done, timeout=60, interval=0.5)
    journaled = {s["entity"]["n"] for s in sigs}
    missing = set(acked) - journaled
    assert not missing, f"{len(missing)} acknowledged signals lost"
    # Each processed exactly once afterwards: one successful run per signal.
    for s in sigs:
        assert [r["status"] for r in s["runs"] if r["status"] == "done"] == ["done"], s


def test_sigterm_with_work_in_flight_exits_zero(router_factory) -> None:  # type: ignore[no-untyped-def]
    router = router_factory(JOURNALING, shutdown_timeout="8s")
    url = router.url("webhooks.ingest")
    acked: list[int] = []
    stop = threading.Event()
    load = threading.Thread(target=_post_many, args=(url, 16, 10_000, acked, stop))
    load.start()
    router.wait_for(lambda: len(acked) > 100, timeout=30, interval=0.01)
    t0 = time.monotonic()
    router.signal(signal.SIGTERM)
    assert router.proc is not None
    code = router.proc.wait(15)
    elapsed = time.monotonic() - t0
    stop.set()
    load.join()
    assert code == 0
    assert elapsed < 9, f"shutdown took {elapsed:.1f}s with shutdown_timeout = 8s"
    router.start()
    sigs = router.wait_for(
        lambda: (
            (s := router.signals("--source", "webhooks.ingest"))
            and all(x["status"] == "done" for x in s)
            and s
        ),
        timeout=30,
        interval=0.5,
    )
    assert not set(acked) - {s["entity"]["n"] for s in sigs}


def test_sighup_bad_config_keeps_serving_then_good_applies(router_factory) -> None:  # type: ignore[no-untyped-def]
    router = router_factory(JOURNALING)
    url = router.url("webhooks.ingest")
    text = router.config_path.read_text()
    router.config_path.write_text(text + '\n[endpoints.broken]\nreturn_type = "nope"\n')
    with httpx.Client(timeout=5) as client:
        assert client.post(url, json={"n": 1}).status_code == 200
        router.signal(signal.SIGHUP)
        router.wait_for(lambda: "reload refused" in router.log(), timeout=10)
        assert client.post(url, json={"n": 2}).status_code == 200  # same keep-alive connection
        router.config_path.write_text(
            text + '\n[endpoints.added]\nreturn_type = "data"\nreturn_data = "hi"\n'
        )
        router.signal(signal.SIGHUP)
        added = router.wait_for(lambda: router.sources().get("endpoints.added"), timeout=5)
        router.wait_for(lambda: httpx.get(added["url"]).status_code == 200, timeout=5)
        assert client.post(url, json={"n": 3}).status_code == 200
    assert router.proc is not None and router.proc.poll() is None


def test_check_lists_every_mistake(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        '[http]\nlisten = "nowhere"\n\n[endpoints.a]\nreturn_type = "sometimes"\n\n'
        '[schedules.s]\ncron = "0 2 * * *"\nevery = "5m"\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "router.cli", "check", "-c", str(cfg)], capture_output=True, text=True
    )
    assert out.returncode == 78  # EX_CONFIG
    assert "http.listen" in out.stderr
    assert "endpoints.a.return_type" in out.stderr
    assert "schedules.s" in out.stderr
    assert str(cfg) in out.stderr or "bad.toml" in out.stderr
    good = subprocess.run(
        [sys.executable, "-m", "router.cli", "check", "-c", "router.toml"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert good.returncode == 0, good.stderr
