"""Start servers, time their start-up, sample their memory, and make sure none outlives the bench."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.bench.http import rss_mb

# The body every HTTP peer receives, from the first readiness probe to the last wrk request
# (tests/bench/http.py's wrk script sends the same one).
BODY = b'{"n": 42, "email": "a@example.com"}'
HEADERS = {"Content-Type": "application/json"}


class Skip(Exception):
    """A peer that cannot run here; the message says why, and the rest of the bench goes on."""


def parent_pids() -> dict[int, int]:
    """pid -> ppid for every process we can see."""
    out: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        out[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (with the PID, it names one process even after PID reuse)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def tree_pids(root: int) -> list[int]:
    """`root` and all its descendants (n8n's task runner, the router's SMTP and HTTP workers)."""
    parents = parent_pids()
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, ppid in parents.items() if ppid in frontier]
        found += frontier
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def spawn(
    cmd: list[str], log: Path, *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """A server in a session of its own, its output in `log` (read when it fails to start)."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )


def wait_answers(
    url: str,
    proc: subprocess.Popen[bytes] | None,
    started: float,
    timeout: float,
    log: Path | None = None,
    expect: bytes = b"",
) -> float:
    """Seconds from `started` until a POST of BODY to `url` gets a 2xx whose body holds `expect`
    (n8n answers 200 with a "starting up" page before its webhooks are registered)."""
    deadline = started + timeout
    with httpx.Client(timeout=1.0) as client:
        while time.perf_counter() < deadline:
            if proc is not None and proc.poll() is not None:
                tail = log.read_text(errors="replace")[-1500:] if log else ""
                raise Skip(f"exited with {proc.returncode} before answering:\n{tail}")
            try:
                response = client.post(url, content=BODY, headers=HEADERS)
                if response.is_success and expect in response.content:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
    raise Skip(f"no 2xx from {url} within {timeout:.0f}s")


def terminate(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@dataclass
class Service:
    """A running peer: its root PID, where it answers, how long it took to answer."""

    name: str
    pid: int
    target: str  # a URL for HTTP peers, host:port for SMTP peers
    startup_s: float
    stop_graceful: Callable[[], None]
    notes: list[str] = field(default_factory=list)
    seen: dict[int, str] = field(default_factory=dict)  # every process of its tree seen: PID -> start time
    count_stored: Callable[[], int] | None = None  # how many signals it journaled (the router only)

    def pids(self) -> list[int]:
        pids = tree_pids(self.pid)
        for pid in pids:
            started = start_time(pid)
            if started is not None:
                self.seen.setdefault(pid, started)
        return pids

    def rss_mb(self) -> float:
        return rss_mb(self.pids())

    def cpu_s(self) -> float:
        return cpu_seconds(self.pids())

    def stop(self) -> None:
        """Graceful stop, then SIGKILL for any process of its tree still alive (by PID)."""
        self.pids()
        try:
            self.stop_graceful()
        finally:
            time.sleep(0.2)
            for pid, started in self.seen.items():
                if start_time(pid) != started:
                    continue  # gone (its PID may belong to someone else by now)
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


class PeakRss:
    """Samples a service's RSS every 0.25 s while a load runs; `.peak` is the highest sum seen."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.service.rss_mb())
            self._stop.wait(0.25)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
