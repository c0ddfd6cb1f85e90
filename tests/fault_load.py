"""Mixed load for the fault suite (issue 8): HTTP async, HTTP sync, SMTP and Twilio SMS at once,
and an exact audit of what the daemon acknowledged against its SQLite file.

Every signal carries a name `n` that the test chose; every workflow writes one `effect` record
holding the signal id, so side effects can be counted per signal, not only run rows.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import smtplib
import sqlite3
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from twilio.request_validator import RequestValidator

TWILIO_TOKEN = "twilio-fault-suite-token-0123456789"
MAILBOX = "load@example.com"

EFFECT_FIELDS = (
    '{ sid = "{{ __data.__signal_id }}", source = "{{ __data.__source }}", n = "{{ N }}", '
    "key = \"{{ __data.__headers['idempotency-key'] }}\" }"
)


def _effect(n_expr: str) -> str:
    return EFFECT_FIELDS.replace("{{ N }}", "{{ " + n_expr + " }}")


MIXED = f"""
[twilio]
auth_token = "{TWILIO_TOKEN}"

[endpoints.async_data]
return_type = "data"
return_data = '{{"accepted": "{{{{ __data.n }}}}"}}'

[endpoints.sync_reply]
return_type = "continue"

[mailboxes.load]
address = "{MAILBOX}"

[sms.load]

[[workflows]]
name = "async-record"
listen = "endpoints.async_data"

[[workflows.steps]]
action = "create_record"
record_type = "effect"
fields = {_effect("__data.n")}

[[workflows]]
name = "sync-record"
listen = "endpoints.sync_reply"
run_mode = "sync"

[[workflows.steps]]
id = "rec"
action = "create_record"
record_type = "effect"
fields = {_effect("__data.n")}

[[workflows.steps]]
parent = "rec"
action = "respond"
return_type = "data"
return_data = '{{"n": "{{{{ __data.n }}}}", "record": "{{{{ __data.__entity_inserted_id }}}}"}}'

[[workflows]]
name = "mail-record"
listen = "mailboxes.load"

[[workflows.steps]]
action = "create_record"
record_type = "effect"
fields = {_effect("__data.incoming_email.subject")}

[[workflows]]
name = "sms-record"
listen = "sms.load"

[[workflows.steps]]
action = "create_record"
record_type = "effect"
fields = {_effect("__data.incoming_sms.text")}
"""

SOURCES = ("endpoints.async_data", "endpoints.sync_reply", "mailboxes.load", "sms.load")


@dataclass
class Acked:
    """What the daemon acknowledged, by source: the names `n` (a set: a key may be re-sent)."""

    by_source: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    keys: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # source -> acked keys
    attempts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, source: str, n: str, key: str | None = None) -> None:
        with self.lock:
            self.by_source[source].add(n)
            if key:
                self.keys[source].add(key)

    def tried(self, source: str) -> None:
        with self.lock:
            self.attempts[source] += 1

    def count(self, source: str) -> int:
        with self.lock:
            return len(self.by_source[source])


def _key_body(key: str) -> str:
    return f"key-{key}"  # a re-sent key carries the same body, as a client's retry would


class MixedLoad:
    """Threads hammering one daemon on every channel until `stop()`; acks go to `acked`."""

    def __init__(
        self, base: str, smtp_port: int, urls: dict[str, str], cycle: int, acked: Acked, tag: str = ""
    ) -> None:
        self.tag = tag  # several loads at once (one per node): their names differ, their keys do not
        self.base = base
        self.smtp_port = smtp_port
        self.urls = urls
        self.cycle = cycle
        self.acked = acked
        self.halt = threading.Event()
        # Idempotency keys: a small pool per cycle (so keys repeat within a cycle) plus the previous
        # cycle's pool (so keys sent before a kill are sent again after the restart).
        self.key_pool = [f"c{c}-k{j}" for c in (cycle, cycle - 1) if c >= 0 for j in range(6)]
        self.threads: list[threading.Thread] = []

    def start(self, *, http_async: int = 5, http_sync: int = 3, smtp: int = 2, sms: int = 2) -> MixedLoad:
        plan = [(self._http, ("endpoints.async_data",))] * http_async
        plan += [(self._http, ("endpoints.sync_reply",))] * http_sync
        plan += [(self._smtp, ())] * smtp + [(self._sms, ())] * sms
        for i, (target, args) in enumerate(plan):
            thread = threading.Thread(target=target, args=(*args, i), daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def stop(self) -> None:
        self.halt.set()
        for thread in self.threads:
            thread.join(30)
            assert not thread.is_alive(), "a load thread hangs"

    def _name(self, kind: str, thread: int, i: int) -> str:
        return f"c{self.cycle}{self.tag}-{kind}-t{thread}-{i}"

    def _http(self, source: str, thread: int) -> None:
        url, rng = self.urls[source], random.Random(thread * 1000 + self.cycle)
        with httpx.Client(timeout=15) as client:
            i = 0
            while not self.halt.is_set():
                i += 1
                n, headers = self._name("h", thread, i), {}
                if i % 3 == 0:
                    key = f"{source[10:12]}-{rng.choice(self.key_pool)}"
                    n, headers = _key_body(key), {"Idempotency-Key": key}
                self.acked.tried(source)
                try:
                    response = client.post(url, json={"n": n}, headers=headers)
                except httpx.HTTPError:
                    time.sleep(0.02)
                    continue
                if 200 <= response.status_code < 300:
                    self.acked.add(source, n, headers.get("Idempotency-Key"))

    def _smtp(self, thread: int) -> None:
        i = 0
        while not self.halt.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=15) as client:
                    while not self.halt.is_set():
                        i += 1
                        n = self._name("m", thread, i)
                        raw = f"From: s@sender.example\r\nSubject: {n}\r\nMessage-ID: <{n}@sender.example>\r\n\r\nhi\r\n"
                        self.acked.tried("mailboxes.load")
                        if client.sendmail("s@sender.example", [MAILBOX], raw.encode()) == {}:
                            self.acked.add("mailboxes.load", n)
            except (OSError, smtplib.SMTPException):
                time.sleep(0.02)

    def _sms(self, thread: int) -> None:
        with httpx.Client(timeout=15) as client:
            i = 0
            while not self.halt.is_set():
                i += 1
                n = self._name("s", thread, i)
                self.acked.tried("sms.load")
                try:
                    response = post_sms(client, self.base, n)
                except httpx.HTTPError:
                    time.sleep(0.02)
                    continue
                if twiml_ack(response):
                    self.acked.add("sms.load", n)


def post_sms(client: httpx.Client, base: str, n: str) -> httpx.Response:
    """Twilio's webhook for an SMS whose text is `n`, signed as Twilio signs it."""
    url = f"{base}/sms/load"
    sid = "SM" + hashlib.md5(n.encode()).hexdigest()
    params = {
        "MessageSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": "+15551230001",
        "To": "+15559870002",
        "Body": n,
        "NumMedia": "0",
    }
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, params)
    return client.post(url, data=params, headers={"X-Twilio-Signature": signature})


def twiml_ack(response: httpx.Response) -> bool:
    return response.status_code == 200 and "<Response" in response.text


def signal_name(source: str, entity: dict[str, Any]) -> str:
    if source == "mailboxes.load":
        return str(entity["incoming_email"]["subject"])
    if source == "sms.load":
        return str(entity["incoming_sms"]["text"])
    return str(entity.get("n"))


def unsettled(db_path: Path, sources: tuple[str, ...] = SOURCES) -> int:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        marks = ",".join("?" * len(sources))
        row = db.execute(
            f"SELECT count(*) FROM signals WHERE source IN ({marks}) AND status != 'done'", sources
        )
        return int(row.fetchone()[0])
    finally:
        db.close()


def reruns(log: str) -> int:
    """Signals whose run was logged more than once: runs started over after a kill (or a retry)."""
    runs = Counter(re.findall(r"msg=run workflow=\S+ signal_id=(\w+)", log))
    return sum(1 for c in runs.values() if c > 1)


def audit(db_path: Path, acked: Acked, sources: tuple[str, ...] = SOURCES) -> dict[str, Any]:
    """Count exactly: acked ⊆ journaled, one done run and one `effect` record per signal,
    one signal and one record per idempotency key. Returns counts and every problem found."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        marks = ",".join("?" * len(sources))
        signals = db.execute(
            f"SELECT id, source, status, dedup_key, entity FROM signals WHERE source IN ({marks})", sources
        ).fetchall()
        done_runs = Counter(r[0] for r in db.execute("SELECT signal_id FROM runs WHERE status = 'done'"))
        records = db.execute("SELECT sid, source, n, key FROM record_effect").fetchall()
    finally:
        db.close()
    return check(signals, done_runs, records, acked)


def check(signals: list[Any], done_runs: Counter[str], records: list[Any], acked: Acked) -> dict[str, Any]:
    """The audit's verdict on rows read from any backend: signals (id, source, status, dedup_key,
    entity JSON), done runs per signal id, effect records (sid, source, n, key)."""
    problems: list[str] = []
    journaled: dict[str, set[str]] = defaultdict(set)
    ids = set()
    for sid, source, status, _key, entity in signals:
        ids.add(sid)
        journaled[source].add(signal_name(source, json.loads(entity)))
        if status != "done":
            problems.append(f"signal {sid} ({source}) is {status}")
        if done_runs[sid] != 1:
            problems.append(f"signal {sid} ({source}) has {done_runs[sid]} done runs")
    per_signal = Counter(r[0] for r in records)
    for source, names in acked.by_source.items():
        lost = names - journaled[source]
        if lost:
            problems.append(
                f"{len(lost)} acknowledged {source} signals not in the journal: {sorted(lost)[:5]}"
            )
    twice = {sid: c for sid, c in per_signal.items() if c != 1}
    if twice:
        problems.append(f"{len(twice)} signals with more than one effect record: {list(twice.items())[:5]}")
    no_effect = ids - set(per_signal)
    if no_effect:
        problems.append(
            f"{len(no_effect)} journaled signals without an effect record: {sorted(no_effect)[:5]}"
        )
    orphans = set(per_signal) - ids
    if orphans:
        problems.append(f"{len(orphans)} effect records of no journaled signal: {sorted(orphans)[:5]}")
    key_records = Counter((r[1], r[3]) for r in records if r[3])
    key_signals = Counter((s[1], s[3]) for s in signals if s[1].startswith("endpoints.") and s[3])
    for label, counter in (("records", key_records), ("signals", key_signals)):
        dup = {k: c for k, c in counter.items() if c > 1}
        if dup:
            problems.append(f"idempotency keys with several {label}: {list(dup.items())[:5]}")
    for source, keys in acked.keys.items():
        missing = {k for k in keys if key_records[(source, k)] != 1}
        if missing:
            problems.append(
                f"acknowledged keys of {source} without exactly one record: {sorted(missing)[:5]}"
            )
    acked_total = sum(len(v) for v in acked.by_source.values())
    return {
        "acked": acked_total,
        "acked_by_source": {s: len(v) for s, v in sorted(acked.by_source.items())},
        "journaled": len(signals),
        "journaled_unacked": len(signals) - acked_total,
        "records": len(records),
        "keys_acked": sum(len(v) for v in acked.keys.values()),
        "keys_with_record": len(key_records),
        "problems": problems,
    }
