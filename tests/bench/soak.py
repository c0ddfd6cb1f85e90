"""A soak run: mixed HTTP, SMTP and Twilio load for N minutes, watching every process for growth.

    .venv/bin/python tests/bench/soak.py [--minutes 10] [--rate 60] [--runners 1] [--workers 1]

Starts the real daemon (tests/daemon.py) with a Twilio API stand-in and a webhook target
(tests/standins), then drives, paced at `--rate` arrivals per second in all:
  * HTTP: an async `data` endpoint (a record per signal), a sync `continue` endpoint answered
    by its workflow, an API-key webhook whose workflow calls the webhook target;
  * SMTP: mail to a mailbox over reused connections (a record per message);
  * Twilio: signed SMS webhooks answered with TwiML, whose workflow also sends an SMS through
    the REST API stand-in.
It prints RSS (MB) and open descriptors of every process of the daemon (main, HTTP workers,
runners, the SMTP worker) at the start and then every minute, with the load's counts, and at the
end each process's growth from the first minute (after warm-up) to the last. Not a test: run it
by hand; it exits 1 if a process grew by 10 % or more, or if an arrival went unanswered.
"""

from __future__ import annotations

import sys

# Keep this folder off sys.path: tests/bench/http.py would shadow the stdlib's `http`.
sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("tests/bench")]

import argparse
import hashlib
import smtplib
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import httpx
from twilio.request_validator import RequestValidator

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.daemon import RouterProcess
from tests.standins.http_target import HttpTarget
from tests.standins.twilio_api import TwilioStandin

SID, TOKEN = "AC" + "1" * 32, "soak-twilio-token-0123456789abcdef"
GROWTH_LIMIT = 0.10


def config(target: str, twilio_base: str) -> str:
    return f"""
[twilio]
account_sid = "{SID}"
auth_token = "{TOKEN}"
api_base = "{twilio_base}"
from_number = "+15550000000"

[endpoints.data]
return_type = "data"
return_data = '{{"ok": true}}'

[endpoints.ask]
return_type = "continue"

[webhooks.events]

[mailboxes.inbox]
address = "inbox@example.com"

[sms.text]

[[workflows]]
name = "data"
listen = "endpoints.data"

[[workflows.steps]]
action = "create_record"
record_type = "item"
fields = {{ n = "{{{{ __data.n }}}}" }}

[[workflows]]
name = "ask"
listen = "endpoints.ask"
run_mode = "sync"

[[workflows.steps]]
action = "respond"
return_type = "data"
return_data = '{{"answer": "{{{{ __data.n }}}}"}}'

[[workflows]]
name = "forward"
listen = "webhooks.events"

[[workflows.steps]]
action = "webhook"
url = "{target}"
json = {{ n = "{{{{ __data.n }}}}" }}

[[workflows]]
name = "mail"
listen = "mailboxes.inbox"

[[workflows.steps]]
action = "create_record"
record_type = "mail"
fields = {{ subject = "{{{{ __data.incoming_email.subject }}}}" }}

[[workflows]]
name = "sms"
listen = "sms.text"
run_mode = "sync"

[[workflows.steps]]
action = "reply"
message = "got {{{{ __data.incoming_sms.text }}}}"

[[workflows.steps]]
action = "send_sms"
to = "{{{{ __data.incoming_sms.sender_number }}}}"
body = "thanks"
"""


class Load:
    """Paced arrivals on a few threads; counts answers by kind and outcome."""

    def __init__(self, router: RouterProcess, rate: float) -> None:
        self.router = router
        self.rate = rate
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.urls = {
            name: router.url(name) for name in ("endpoints.data", "endpoints.ask", "webhooks.events")
        }

    def count(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1

    def start(self) -> None:
        # HTTP carries most of the load, as in practice; each sender gets its share of the rate.
        for name, share, fn in (
            ("http", 0.6, self._http),
            ("smtp", 0.2, self._smtp),
            ("sms", 0.2, self._sms),
        ):
            t = threading.Thread(target=self._paced, args=(name, self.rate * share, fn), daemon=True)
            t.start()
            self.threads.append(t)

    def _paced(self, name: str, rate: float, fn: Callable[[int], None]) -> None:
        interval, n, next_at = 1.0 / rate, 0, time.monotonic()
        while not self.stop.is_set():
            n += 1
            try:
                fn(n)
            except Exception as exc:  # noqa: BLE001 - counted, the soak goes on
                self.count(f"{name} error {type(exc).__name__}")
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self.stop.wait(delay)
            else:
                next_at = time.monotonic()  # behind: do not burst to catch up

    def _http(self, n: int) -> None:
        if not hasattr(self, "_client"):
            self._client = httpx.Client(timeout=30)
        kind = ("endpoints.data", "endpoints.ask", "webhooks.events")[n % 3]
        r = self._client.post(self.urls[kind], json={"n": n})
        self.count(f"http {kind} {r.status_code}")

    def _smtp(self, n: int) -> None:
        if getattr(self, "_smtp_conn", None) is None or n % 50 == 0:  # new sessions now and then
            if getattr(self, "_smtp_conn", None) is not None:
                try:
                    self._smtp_conn.quit()
                except smtplib.SMTPException:
                    pass
            self._smtp_conn = smtplib.SMTP("127.0.0.1", self.router.smtp_port, timeout=30)
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "soak@example.org", "inbox@example.com", f"soak {n}"
        msg["Message-ID"] = f"<soak-{n}-{time.time_ns()}@example.org>"
        msg.set_content("hello " * 50)
        try:
            self._smtp_conn.send_message(msg)
            self.count("smtp 250")
        except smtplib.SMTPException as exc:
            self.count(f"smtp {getattr(exc, 'smtp_code', type(exc).__name__)}")
            self._smtp_conn = None

    def _sms(self, n: int) -> None:
        if not hasattr(self, "_sms_client"):
            self._sms_client = httpx.Client(timeout=30)
        url = f"{self.router.base}/sms/text"
        params = {
            "MessageSid": "SM" + hashlib.md5(f"{n}-{time.time_ns()}".encode()).hexdigest(),
            "AccountSid": SID,
            "From": "+15551230001",
            "To": "+15559870002",
            "Body": f"soak {n}",
            "NumMedia": "0",
        }
        signature = RequestValidator(TOKEN).compute_signature(url, params)
        r = self._sms_client.post(url, data=params, headers={"X-Twilio-Signature": signature})
        self.count(f"sms {r.status_code}")

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)


def processes(root: int) -> dict[str, int]:
    """role -> pid for the daemon's process tree (children by their command line)."""
    found = {"main": root}
    queue = [root]
    while queue:
        parent = queue.pop()
        kids = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout.split()
        for kid in map(int, kids):
            try:
                argv = Path(f"/proc/{kid}/cmdline").read_bytes().split(b"\0")
            except FileNotFoundError:
                continue
            if b"channels.smtp.worker" in argv:
                role = "smtp-worker"
            elif b"--runner" in argv:
                role = f"runner={argv[argv.index(b'--runner') + 1].decode()}"
            elif b"--worker" in argv:
                role = f"worker={argv[argv.index(b'--worker') + 1].decode()}"
            else:
                role = f"child-{kid}"
            found[role] = kid
            queue.append(kid)
    return found


def sample(pid: int) -> tuple[float, int] | None:
    """(RSS in MB, open descriptors) of one process, None if it is gone."""
    try:
        rss = next(
            int(line.split()[1])
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("VmRSS:")
        )
        return rss / 1024, len(list(Path(f"/proc/{pid}/fd").iterdir()))
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return None


def report(minute: int, procs: dict[str, int], counts: Counter[str]) -> dict[str, tuple[float, int, int]]:
    row: dict[str, tuple[float, int, int]] = {}
    parts = []
    for role, pid in sorted(procs.items()):
        got = sample(pid)
        if got is not None:
            row[role] = (got[0], got[1], pid)
            parts.append(f"{role}(pid {pid}) rss={got[0]:.1f}MB fds={got[1]}")
    answered = sum(v for k, v in counts.items() if k.endswith((" 200", " 250")))
    other = {k: v for k, v in counts.items() if not k.endswith((" 200", " 250"))}
    print(
        f"[{minute:>3} min] " + "  ".join(parts) + f"  | answered={answered} other={other or 0}", flush=True
    )
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10, help="how long to drive the load (default: 10)")
    ap.add_argument("--rate", type=float, default=60, help="arrivals per second, all channels (default: 60)")
    ap.add_argument("--runners", type=int, default=1, help="[router] runners (default: 1)")
    ap.add_argument("--workers", type=int, default=1, help="[http] workers (default: 1)")
    args = ap.parse_args()

    target = HttpTarget().start()
    twilio = TwilioStandin(credentials=(SID, TOKEN)).start()
    tmp = Path(tempfile.mkdtemp(prefix="router-soak-"))
    router = RouterProcess(
        tmp,
        config(target.url("/hook"), twilio.base_url),
        workers=args.workers,
        router_extra=f"runners = {args.runners}",
    )
    router.start()
    print(f"soak: {args.minutes:g} min at {args.rate:g}/s; data dir {router.data_dir}; log {router.log_path}")
    load = Load(router, args.rate)
    assert router.proc is not None
    samples = [report(0, processes(router.proc.pid), load.counts)]
    load.start()
    started = time.monotonic()
    try:
        for minute in range(1, int(args.minutes) + 1):
            time.sleep(max(0.0, started + minute * 60 - time.monotonic()))
            samples.append(report(minute, processes(router.proc.pid), load.counts))
            if router.proc.poll() is not None:
                print(f"the daemon exited with {router.proc.returncode}")
                return 1
    finally:
        load.finish()
        code = router.stop(timeout=60)
        target.stop()
        twilio.stop()
    print(f"daemon stopped with {code}; counts: {dict(sorted(load.counts.items()))}")
    if len(samples) < 3:
        print("too short to judge growth (needs 2+ minutes: minute 1 is the warm-up)")
        return 0
    first, last, failed = samples[1], samples[-1], False
    print(f"growth from minute 1 to minute {len(samples) - 1}:")
    for role in sorted(first):
        if role not in last:
            print(f"  {role}: gone (restarted?)")
            failed = True
            continue
        (rss0, fds0, pid0), (rss1, fds1, pid1) = first[role], last[role]
        rss_growth = (rss1 - rss0) / rss0
        fd_growth = (fds1 - fds0) / fds0 if fds0 else 0.0
        flag = " (pid changed: restarted)" if pid0 != pid1 else ""
        bad = rss_growth >= GROWTH_LIMIT or fd_growth >= GROWTH_LIMIT or pid0 != pid1
        failed |= bad
        print(
            f"  {role}: rss {rss0:.1f} -> {rss1:.1f} MB ({rss_growth:+.1%}), fds {fds0} -> {fds1} "
            f"({fd_growth:+.1%}){flag}{'  <-- grew' if bad else ''}"
        )
    unanswered = {k: v for k, v in load.counts.items() if not k.endswith((" 200", " 250"))}
    if unanswered:
        print(f"not answered with 200/250: {unanswered}")
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
