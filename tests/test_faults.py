"""Issue 8's fault suite against the real daemon: SIGKILL under mixed load (10 cycles), a full
disk, and a record store locked by another process. Counts are exact and printed per cycle."""

from __future__ import annotations

import smtplib
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from tests.daemon import RouterProcess
from tests.fault_env import GatedTarget, fill, tiny_filesystem, write_lock
from tests.fault_load import (
    EFFECT_FIELDS,
    MAILBOX,
    MIXED,
    SOURCES,
    Acked,
    MixedLoad,
    audit,
    post_sms,
    reruns,
    unsettled,
)
from tests.standins.http_target import HttpTarget, Scripted

CYCLES = 10


def short_lease(router: RouterProcess, lease: str = "1s") -> RouterProcess:
    """A killed daemon's claims expire after `lease`: keep the drain after each restart short.
    Debug logs: done runs are logged at debug, and `reruns` counts them."""
    router.config_path.write_text(
        router.config_path.read_text().replace('lease = "3s"', f'lease = "{lease}"\nlog_level = "debug"')
    )
    return router


def wait_settled(router: RouterProcess, sources: tuple[str, ...] = SOURCES, timeout: float = 30.0) -> None:
    router.wait_for(
        lambda: unsettled(router.data_dir / "router.db", sources) == 0, timeout=timeout, interval=0.1
    )


def report_line(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():  # shown in CI's output even though pytest captures stdout
        print(f"\nfaults: {text}", flush=True)


def test_sigkill_cycles_under_mixed_load_lose_nothing_and_run_once(
    router_factory: Callable[..., RouterProcess], capsys: pytest.CaptureFixture[str]
) -> None:
    router = short_lease(router_factory(MIXED, start=False)).start()
    sources = router.sources()
    urls = {s: str(sources[s]["url"]) for s in SOURCES if s.startswith("endpoints.")}
    acked = Acked()
    db_path = router.data_dir / "router.db"
    for cycle in range(CYCLES):
        before = {s: acked.count(s) for s in SOURCES}
        load = MixedLoad(router.base, router.smtp_port, urls, cycle, acked).start()
        started = time.monotonic()

        def busy_everywhere(before: dict[str, int] = before, started: float = started) -> bool:
            return time.monotonic() - started > 0.8 and all(acked.count(s) > before[s] + 3 for s in SOURCES)

        router.wait_for(busy_everywhere, timeout=20, interval=0.02)  # every channel acknowledging
        router.kill()  # SIGKILL mid-load
        load.stop()
        router.start()
        wait_settled(router)
        report = audit(db_path, acked)
        new = {s: acked.count(s) - before[s] for s in SOURCES}
        report_line(
            capsys,
            f"sigkill cycle {cycle + 1}/{CYCLES}: acked this cycle {new}; total acked={report['acked']} "
            f"journaled={report['journaled']} (journaled, never acked: {report['journaled_unacked']}) "
            f"effect records={report['records']} runs started over={reruns(router.log())} "
            f"idempotency keys acked={report['keys_acked']} keys with their one record={report['keys_with_record']} "
            f"problems={len(report['problems'])}",
        )
        assert not report["problems"], (
            "\n".join(report["problems"]) + "\n--- log ---\n" + router.log()[-3000:]
        )
    # The CLI reads the same record store: one effect record per journaled signal.
    listed = router.cli("records", "list", "effect", "--limit", "1000000", "--json").stdout
    assert listed.count('"sid"') == report["records"] == report["journaled"]


def _post(client: httpx.Client, url: str, n: str, pad: int = 0) -> httpx.Response | None:
    try:
        return client.post(url, json={"n": n, "pad": "x" * pad})
    except httpx.HTTPError:
        return None


def _mail(port: int, n: str, attachment: bytes | None = None) -> int:
    """Send one message named `n`; the SMTP code of the answer to its DATA."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"], msg["Message-ID"] = "d@sender.example", MAILBOX, n, f"<{n}@x>"
    msg.set_content("hello\n")
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="octet-stream", filename="blob.bin")
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.send_message(msg)
        return 250
    except smtplib.SMTPResponseException as exc:
        return exc.smtp_code


def test_full_disk_answers_503_and_451_then_recovers(
    router_factory: Callable[..., RouterProcess], capsys: pytest.CaptureFixture[str]
) -> None:
    router = router_factory(MIXED, start=False)
    with tiny_filesystem(router.data_dir, "4m"):
        try:
            router.start()
            url, sync_url = router.url("endpoints.async_data"), router.url("endpoints.sync_reply")
            acked = Acked()
            http: Counter[int] = Counter()
            smtp: Counter[int] = Counter()
            with httpx.Client(timeout=30) as client:
                for i in range(5):
                    r = _post(client, url, f"before-{i}")
                    assert r is not None and r.status_code == 200
                    acked.add("endpoints.async_data", f"before-{i}")
                assert _mail(router.smtp_port, "mail-before") == 250
                acked.add("mailboxes.load", "mail-before")
                wait_settled(router)

                filler = router.data_dir / "filler"
                filled = fill(filler)
                # The journal may still reuse WAL space it owns (a 200 is then real); growing it fails.
                for i in range(200):
                    r = _post(client, url, f"full-{i}", pad=16_000)
                    assert r is not None, "the daemon dropped the connection on a full disk"
                    http[r.status_code] += 1
                    if r.status_code == 200:
                        acked.add("endpoints.async_data", f"full-{i}")
                    else:
                        assert r.status_code == 503, (r.status_code, r.text, router.log()[-3000:])
                        assert int(r.headers["retry-after"]) > 0
                        if http[503] >= 5:
                            break
                # The other channels that acknowledge over HTTP refuse the same way.
                for kind, response in (
                    ("sync", client.post(sync_url, json={"n": "full-sync"})),
                    ("sms", post_sms(client, router.base, "full-sms")),
                ):
                    assert response.status_code == 503 and int(response.headers["retry-after"]) > 0, (
                        kind,
                        response,
                    )
                    http[response.status_code] += 1
                for i in range(4):
                    code = _mail(
                        router.smtp_port, f"mail-full-{i}", attachment=b"z" * 200_000 if i % 2 else None
                    )
                    smtp[code] += 1
                    if code == 250:
                        acked.add("mailboxes.load", f"mail-full-{i}")
                assert router.proc is not None and router.proc.poll() is None, (
                    "the daemon died on a full disk"
                )
                assert http[503] >= 5, f"the disk never filled up: {http}"
                assert set(smtp) <= {250, 451} and smtp[451] > 0, smtp

                filler.unlink()  # space returns: the next tries are accepted

                def accepted(tries: list[int] = [0]) -> bool:  # noqa: B006 - a counter across calls
                    tries[0] += 1
                    r = _post(client, url, f"after-{tries[0]}")
                    if r is not None and r.status_code == 200:
                        acked.add("endpoints.async_data", f"after-{tries[0]}")
                        return True
                    return False

                router.wait_for(accepted, timeout=30, interval=0.2)
                assert _mail(router.smtp_port, "mail-after") == 250
                acked.add("mailboxes.load", "mail-after")
            wait_settled(router, timeout=60)
            report = audit(router.data_dir / "router.db", acked)
            report_line(
                capsys,
                f"full disk ({filled} filler bytes on a 4 MiB tmpfs): HTTP while full {dict(http)}, "
                f"SMTP while full {dict(smtp)}; afterwards acked={report['acked']} journaled={report['journaled']} "
                f"effect records={report['records']} problems={len(report['problems'])}",
            )
            assert not report["problems"], "\n".join(report["problems"]) + "\n" + router.log()[-3000:]
        finally:
            router.stop()


LOCKED = f"""
[endpoints.slow]
return_type = "data"
return_data = "ok"

[[workflows]]
name = "call-then-record"
listen = "endpoints.slow"

[[workflows.steps]]
id = "call"
action = "webhook"
url = "{{{{ __data.target }}}}"
json = {{ n = "{{{{ __data.n }}}}" }}
timeout = 60

[[workflows.steps]]
parent = "call"
action = "create_record"
record_type = "effect"
fields = {EFFECT_FIELDS.replace("{{ N }}", "{{ __data.n }}")}
"""


def log_failed_runs(router: RouterProcess) -> str:
    return "\n".join(
        line for line in router.log().splitlines() if "msg=run " in line and "status=failed" in line
    )


def failed_runs(db_path: Path) -> int:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM runs WHERE status = 'failed'").fetchone()[0])
    finally:
        db.close()


def test_record_store_locked_by_another_process_retries_and_loses_nothing(
    router_factory: Callable[..., RouterProcess], capsys: pytest.CaptureFixture[str]
) -> None:
    """The daemon waits 10 s for SQLite's lock (busy_timeout), then gives up on that transaction.

    Acknowledged signals are in flight when another process takes the write lock: 20 whose runs
    leave a 1.5 s webhook call and then write their record (those writes wait and fail: the runs
    must be retried), and 5 whose webhook call is held until after the lock is gone (their claims
    lapse meanwhile: renewals fail too). More signals arrive while the lock is held. The lock goes
    once a run has failed on it."""
    sources = ("endpoints.slow",)
    router = router_factory(LOCKED, start=False)
    short_lease(router, "1s").start()
    url = router.url("endpoints.slow")
    db_path = router.data_dir / "router.db"
    acked = Acked()
    statuses: Counter[int | str] = Counter()
    quick, held_call = HttpTarget(), GatedTarget()
    quick.start()
    held_call.start()
    early, straddling = 20, 5
    quick.answer(*[Scripted(200, "{}", delay=1.5) for _ in range(early)])

    def send(n: str, target: str) -> None:
        with httpx.Client(timeout=60) as client:
            try:
                r = client.post(url, json={"n": n, "target": target})
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
                return
            statuses[r.status_code] += 1
            if r.status_code == 200:
                acked.add("endpoints.slow", n)

    def send_all(names: list[str], target: str) -> list[threading.Thread]:
        threads = [threading.Thread(target=send, args=(n, target)) for n in names]
        for t in threads:
            t.start()
        return threads

    try:
        for t in send_all([f"held-{i}" for i in range(straddling)], held_call.url("/hook")):
            t.join()
        for t in send_all([f"early-{i}" for i in range(early)], quick.url("/hook")):
            t.join()
        assert acked.count("endpoints.slow") == early + straddling, statuses
        with write_lock(db_path):
            locked_at = time.monotonic()
            time.sleep(3.0)
            late = send_all([f"late-{i}" for i in range(5)], quick.url("/hook"))  # arriving while locked
            # Hold on until a record write gave up on the lock and its run failed (10-20 s).
            router.wait_for(lambda: "database is locked" in log_failed_runs(router), timeout=40, interval=0.2)
            time.sleep(1.0)
            held = time.monotonic() - locked_at
        time.sleep(2.0)  # the journal is writable again while the held calls still run
        held_call.gate.set()
        for t in late:
            t.join(60)
        wait_settled(router, sources, timeout=60)
        time.sleep(0.5)
        assert router.proc is not None and router.proc.poll() is None
    finally:
        held_call.gate.set()
        quick.stop()
        held_call.stop()
    report = audit(db_path, acked, sources)
    log = router.log()
    retried = failed_runs(db_path)
    report_line(
        capsys,
        f"record store locked for {held:.1f}s: answers {dict(statuses)}; acked={report['acked']} "
        f"journaled={report['journaled']} effect records={report['records']} runs failed on the lock and "
        f"retried={retried} 'database is locked' in log={log.count('database is locked')} "
        f"held webhook calls={held_call.calls} (of {straddling} signals) problems={len(report['problems'])}",
    )
    assert not report["problems"], "\n".join(report["problems"]) + "\n" + log[-4000:]
    assert retried > 0 and "database is locked" in log, "the lock never made a record write fail"
    assert held_call.calls == straddling, "a run was started again while it was still running\n" + log[-6000:]
