"""Prometheus metrics, on their own `CollectorRegistry`.

Served at `/metrics` on the admin listener of the main process. Under `router serve` every
process of the daemon (main, HTTP workers, runners) writes its values to a shared directory and
`/metrics` sums them (router/ops/shared_metrics.py). What is counted where:

* `router_signals_total{channel,source,outcome,status}`: one per arrival. `outcome` is
  `accepted` (journaled), `duplicate` (an idempotency repeat: acknowledged, not run),
  `rejected` (refused, nothing journaled) or `dropped` (answered as a success but deliberately
  not journaled: a form's honeypot, a CORS preflight); `status` is the HTTP status the caller got
  (empty for channels without one). HTTP arrivals are counted once, when the answer is sent, so a `respond` step's
  422 after acceptance is still `accepted`; other channels are counted when they submit.
* `router_ack_latency_seconds{channel}`: from the request's arrival to its acknowledgement.
* `router_journal_commit_seconds` / `router_journal_commit_batch_size`: the storage writer's
  group commits (`Storage.on_commit`).
* `router_run_duration_seconds{workflow,status}`: each workflow run.
* `router_queue_depth`, `router_runs_active`, `router_http_in_flight`,
  `router_journal_signals{status}`: read at scrape time.
* `router_smtp_sessions`: open SMTP sessions (the worker reports its count over its link).
* `router_rate_limited_total{source}`, `router_overloaded_total{channel}`.
* `router_refused_total{channel,reason}`: requests refused before the journal, by reason
  (HTTP: `bad_request`, `unauthorized`, `forbidden`, `not_found`, `too_large`, `rate_limited`,
  `overloaded`, `journal_unavailable`, …; SMTP, counted in its worker process and reported over
  its link: `no_such_mailbox`, `relay`, `mailbox_disabled`, `too_many_recipients`, `too_large`,
  `too_many_connections`, `overloaded`, `journal_unavailable`, …).
* `router_outbound_calls_total{kind,outcome}` / `router_outbound_call_seconds{kind}`: each
  webhook step's HTTP attempt (`ok`, `http_4xx`, `http_5xx`, `timeout`, `connection_error`,
  `error`), from the request to the whole answer read.
* `router_retries_total{kind}`: `webhook` (a step's attempt again within one run) and `signal`
  (a failed run scheduled for another attempt).
* `router_build_info{version,python}` (always 1) and prometheus-client's process collector
  (`process_resident_memory_bytes`, `process_open_fds`, CPU, start time) for the main process.

Channels may not import `router` (dependencies point router → channels → engine), so each is
handed an observer it declares as a Protocol: the HTTP channel `channels.http.app.HttpObserver`
(`Metrics.http_observer()`), the SMTP channel `channels.smtp.server.SmtpObserver` and the
dispatcher `router.dispatch.dispatcher.DispatchObserver` (both `Metrics` itself).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from channels.http.asgi import loggable_path
from router.ops import logs
from router.ops.refusals import RefusalLog
from router.ops.refusals import from_http as refusal_from_http
from router.ops.refusals import from_smtp as refusal_from_smtp
from router.ops.shared_metrics import is_shared
from router.version import version

if TYPE_CHECKING:
    from channels.http.app import HttpChannel
    from router.storage import Storage

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RUN_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

# Paths of the HTTP channels -> the channel name of what arrives there.
_HTTP_CHANNELS = {
    "listener": "endpoints",
    "webhooks": "webhooks",
    "forms": "forms",
    "sms": "sms",
    "whatsapp": "whatsapp",
}


_PROBES = frozenset({"/healthz", "/readyz"})


@dataclass
class _RequestNote:
    """What the dispatcher learned about the request being handled in this task."""

    started: float
    outcome: str | None = None  # accepted | duplicate | overloaded | journal_unavailable
    channel: str | None = None
    source: str | None = None


_current: ContextVar[_RequestNote | None] = ContextVar("router_metrics_request", default=None)


class _ScrapeCollector(Collector):
    """Gauges read when Prometheus scrapes, from the daemon's live objects and the journal."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            values = self.read()
        except Exception:  # noqa: BLE001 - a scrape never takes the daemon down
            return
        yield GaugeMetricFamily(
            "router_queue_depth", "Signals pending in the journal", value=values["pending"]
        )
        yield GaugeMetricFamily(
            "router_runs_active", "Signals being processed (any process)", value=values["active"]
        )
        yield GaugeMetricFamily(
            "router_http_in_flight", "HTTP requests being handled", value=values["in_flight"]
        )
        by_status = GaugeMetricFamily(
            "router_journal_signals", "Signals in the journal by status", labels=["status"]
        )
        for status in ("pending", "running", "done", "failed"):
            by_status.add_metric([status], values["by_status"].get(status, 0))
        yield by_status


class _BuildInfo(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        info = GaugeMetricFamily(
            "router_build_info", "The running router's version (always 1)", labels=["version", "python"]
        )
        info.add_metric([version(), platform.python_version()], 1)
        yield info


# HTTP statuses of refusals -> the reason counted (a 503's reason comes from the request).
REFUSAL_REASONS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    409: "conflict",
    411: "length_required",
    413: "too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
    431: "headers_too_large",
    500: "internal_error",
    503: "unavailable",
}


class Metrics:
    def __init__(self) -> None:
        disable_created_metrics()  # no `*_created` series: they double the output and nobody graphs them
        self.refusals: RefusalLog | None = (
            None  # refused requests kept for the dashboard (router/ops/refusals.py)
        )
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.signals = Counter(
            "router_signals",
            "Signals arrived, by channel, source, outcome and the status answered",
            ["channel", "source", "outcome", "status"],
            registry=r,
        )
        self.ack_latency = Histogram(
            "router_ack_latency_seconds",
            "Arrival to acknowledgement (after the journal commit)",
            ["channel"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_latency = Histogram(
            "router_journal_commit_seconds",
            "Journal group commit duration (BEGIN to fsynced COMMIT)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_batch = Histogram(
            "router_journal_commit_batch_size",
            "Jobs per journal group commit",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=r,
        )
        self.run_duration = Histogram(
            "router_run_duration_seconds",
            "Workflow run duration",
            ["workflow", "status"],
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.smtp_sessions = Gauge(
            "router_smtp_sessions", "Open SMTP sessions", registry=r, multiprocess_mode="livesum"
        )
        self.rate_limited = Counter(
            "router_rate_limited", "Requests refused by a source's rate limit (429)", ["source"], registry=r
        )
        self.overloaded = Counter(
            "router_overloaded",
            "Arrivals refused because the router was overloaded (503)",
            ["channel"],
            registry=r,
        )
        self.admin_actions = Counter(
            "router_admin_actions", "Mutating admin API calls", ["action", "result"], registry=r
        )
        self.refused = Counter(
            "router_refused",
            "Requests refused before the journal, by channel and reason",
            ["channel", "reason"],
            registry=r,
        )
        self.outbound_calls = Counter(
            "router_outbound_calls",
            "Outbound calls by workflow steps (each attempt), by outcome",
            ["kind", "outcome"],
            registry=r,
        )
        self.outbound_seconds = Histogram(
            "router_outbound_call_seconds",
            "Outbound call duration (request to the whole answer read)",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "router_retries",
            "Retries: a webhook step's attempt again, a signal scheduled for another run",
            ["kind"],
            registry=r,
        )
        self._scrape: _ScrapeCollector | None = None
        # labels() takes a lock and builds a key on every call: the accepted path's children kept.
        self._submitted: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._runs: dict[tuple[str, str], Any] = {}
        # What /metrics shows: this process's registry, or every process's values (shared_metrics).
        self.exposed = r
        if is_shared():
            self.exposed = CollectorRegistry(auto_describe=True)
            MultiProcessCollector(self.exposed)
        # Not summed across processes: these describe the process that serves /metrics.
        self.exposed.register(_BuildInfo())
        ProcessCollector(registry=self.exposed)

    # -- wiring ----------------------------------------------------------------------------------

    def watch(self, read: Callable[[], dict[str, Any]]) -> None:
        """Register the scrape-time gauges; `read()` returns pending, active, in_flight, by_status."""
        if self._scrape is None:
            self._scrape = _ScrapeCollector(read)
            self.exposed.register(self._scrape)
        else:
            self._scrape.read = read

    def render(self) -> bytes:
        return generate_latest(self.exposed)

    # -- hooks -----------------------------------------------------------------------------------

    def on_commit(self, seconds: float, batch: int) -> None:
        """`Storage.on_commit`: runs on the writer thread (prometheus-client is thread-safe)."""
        self.commit_latency.observe(seconds)
        self.commit_batch.observe(batch)

    def on_submit(self, channel: str, source: str, outcome: str, seconds: float) -> None:
        """The dispatcher's verdict on one submission: accepted, duplicate, overloaded, journal_unavailable."""
        if outcome == "overloaded":
            self.overloaded.labels(channel).inc()
        note = _current.get()
        if note is not None:
            # An HTTP request: counted once, with its status, when the answer goes out.
            note.outcome, note.channel, note.source = outcome, channel, source
            return
        if outcome in ("accepted", "duplicate"):
            key = (channel, source, outcome)
            children = self._submitted.get(key)
            if children is None:
                if len(self._submitted) > 10_000:  # sources come and go with reloads
                    self._submitted.clear()
                children = self._submitted[key] = (
                    self.signals.labels(channel, source, outcome, ""),
                    self.ack_latency.labels(channel),
                )
            children[0].inc()
            children[1].observe(seconds)
        else:
            self.signals.labels(channel, source, "rejected", outcome).inc()

    def on_run(self, workflow: str, status: str, seconds: float) -> None:
        child = self._runs.get((workflow, status))
        if child is None:
            if len(self._runs) > 10_000:  # workflows come and go with reloads
                self._runs.clear()
            child = self._runs[(workflow, status)] = self.run_duration.labels(workflow, status)
        child.observe(seconds)

    def on_call(self, kind: str, outcome: str, seconds: float) -> None:
        """`Services.on_call`: one outbound attempt of a workflow step."""
        self.outbound_calls.labels(kind, outcome).inc()
        self.outbound_seconds.labels(kind).observe(seconds)

    def on_retry(self, kind: str) -> None:
        """`Services.on_retry` (webhook) and `Dispatcher.on_retry` (signal)."""
        self.retries.labels(kind).inc()

    def smtp_refused(self, reason: str) -> None:
        """The SMTP bridge: its worker refused a command (the reason comes over the link)."""
        self.refused.labels("smtp", reason).inc()

    def smtp_refusal(self, reason: str, detail: Mapping[str, str]) -> None:
        """The SMTP bridge: what its worker told of a refused command, kept for inspection."""
        if self.refusals is not None:
            self.refusals.note(refusal_from_smtp(reason, dict(detail)))

    def smtp_sessions_open(self, sessions: int) -> None:
        """The SMTP bridge: its worker's count of open sessions (0 when the worker is gone)."""
        self.smtp_sessions.set(sessions)

    def http_observer(self) -> HttpObserver:
        return HttpObserver(self)


class HttpObserver:
    """Given to `HttpChannel.observer`: `begin(request)` when a request arrives, `end(...)` once
    its answer is sent. Same trio task throughout, so the dispatcher's verdict reaches us through
    a context variable."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        # labels() takes a lock and builds a key on every call: the accepted path's children kept.
        self._accepted: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}

    def begin(self, request: Any) -> Any:
        return _current.set(_RequestNote(time.perf_counter()))

    def end(self, token: Any, request: Any, status: int) -> None:
        note = _current.get()
        try:
            _current.reset(token)
        except ValueError:  # pragma: no cover - a token from another context
            pass
        if note is None:
            return
        m = self.metrics
        source_obj = request.extra.get("source")
        parts = request.path.strip("/").split("/")
        channel = note.channel or (
            source_obj.kind if source_obj is not None else _HTTP_CHANNELS.get(parts[0])
        )
        source = note.source or (source_obj.source if source_obj is not None else "unknown")
        if status >= 400 and note.outcome not in ("accepted", "duplicate") and request.path not in _PROBES:
            logs.refused(
                channel or "http",
                source,
                status,
                str(request.extra.get("reason") or f"HTTP {status}"),
                method=request.method,
                path=loggable_path(request.path),
                remote=request.client,
                request_id=request.request_id,
            )
            reason = REFUSAL_REASONS.get(status, f"http_{status}")
            if status == 503:
                reason = (
                    "overloaded"
                    if request.extra.get("overloaded") or note.outcome == "overloaded"
                    else ("journal_unavailable" if note.outcome == "journal_unavailable" else reason)
                )
            m.refused.labels(channel or "http", reason).inc()
            if m.refusals is not None:
                m.refusals.note(
                    refusal_from_http(
                        request,
                        status,
                        channel or "http",
                        source_obj.source if source_obj is not None else None,
                        str(request.extra.get("reason") or f"HTTP {status}"),
                    )
                )
        if channel is None:
            return  # /healthz, /readyz, unknown paths: not an arrival
        if request.extra.get("overloaded"):
            m.overloaded.labels(channel).inc()
        if status == 429:
            m.rate_limited.labels(source).inc()
        if note.outcome in ("accepted", "duplicate"):
            key = (channel, source, note.outcome, status)
            children = self._accepted.get(key)
            if children is None:
                if len(self._accepted) > 10_000:  # sources come and go with reloads
                    self._accepted.clear()
                children = self._accepted[key] = (
                    m.signals.labels(channel, source, note.outcome, str(status)),
                    m.ack_latency.labels(channel),
                )
            children[0].inc()
            children[1].observe(time.perf_counter() - note.started)
        elif status < 400:
            # Answered as a success but not journaled on purpose (a form's honeypot, a preflight).
            m.signals.labels(channel, source, "dropped", str(status)).inc()
        else:
            m.signals.labels(channel, source, "rejected", str(status)).inc()


__all__ = ["CONTENT_TYPE", "HttpObserver", "Metrics"]


def watch_gauges(m: Metrics, storage: Storage, http: HttpChannel | None) -> None:
    """The scrape-time gauges: the journal's counts, and the HTTP channel's requests in flight."""

    def read() -> dict[str, Any]:
        by_status = storage.read(lambda tx: tx.counts())
        return {
            "pending": by_status.get("pending", 0),
            "active": by_status.get("running", 0),
            "in_flight": http.in_flight if http is not None else 0,  # runner processes have no listener
            "by_status": by_status,
        }

    m.watch(read)
