"""The daemon-wide tables: ``[router]``, ``[http]``, ``[smtp]``, ``[admin]``, ``[twilio]``,
``[outbound.smtp]``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, StrictBool, field_validator

from .passwords import check_password_hash
from .types import (
    Duration,
    ListenAddress,
    OptionalUrl,
    PositiveDuration,
    RelativePath,
    ResolvedPath,
    Size,
    StrictModel,
    StrList,
    Url,
    check_network,
)
from .units import is_loopback_host, parse_listen

__all__ = [
    "AdminSettings",
    "DatabaseSettings",
    "HttpSettings",
    "ListenMixin",
    "OutboundSettings",
    "OutboundSmtpSettings",
    "RouterSettings",
    "SmtpSettings",
    "TwilioSettings",
]


def cpu_count() -> int:
    """The CPUs this process may run on (not all of the machine's, under a cpuset or taskset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class ListenMixin(StrictModel):
    """A table with ``listen = "HOST:PORT"`` and ``host`` / ``port`` / ``is_loopback`` helpers."""

    listen: ListenAddress = "127.0.0.1:0"

    @property
    def host(self) -> str:
        """The host without IPv6 brackets."""
        return parse_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return parse_listen(self.listen)[1]

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)


class RouterSettings(StrictModel):
    """``[router]``: process-wide behaviour."""

    data_dir: ResolvedPath = Field(default=Path("var"), validate_default=True)
    public_url: Url = "http://127.0.0.1:8080"
    trust_proxy: StrictBool = False
    # With trust_proxy: the peers whose X-Forwarded-* headers are believed (addresses or CIDRs).
    # A request from any other peer is taken at its socket address, whatever it claims.
    trusted_proxies: StrList = Field(default_factory=lambda: ["127.0.0.1", "::1"])

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        return [check_network(item) for item in value]

    shutdown_timeout: Duration = 10.0
    concurrency: int = Field(default=64, ge=1)
    # Processes that run async workflows; 0 runs them inside the process that received the signal.
    runners: int = Field(default=1, ge=0, le=64)
    max_attempts: int = Field(default=5, ge=1)
    retry_backoff: Duration = 2.0
    run_timeout: PositiveDuration = 30.0
    lease: PositiveDuration = 15.0
    max_pending: int = Field(default=10000, ge=1)
    # Settled (done/failed) signals older than this are pruned with their runs; 0 keeps them forever.
    retention: Duration = 30 * 86400.0
    log_format: Literal["logfmt", "json"] = "logfmt"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


class HttpSettings(ListenMixin):
    """``[http]``: the public HTTP listener (endpoints, webhooks, forms, Twilio)."""

    listen: ListenAddress = "127.0.0.1:8080"
    max_body: Size = 1024 * 1024
    # "auto": one process per CPU this daemon may run on (its affinity mask, e.g. a cgroup's cpuset).
    workers: int = Field(default=1, ge=1)
    max_in_flight: int = Field(default=1024, ge=1)
    idempotency_window: Duration = 24 * 3600.0
    sse_keepalive: PositiveDuration = 15.0  # a ": keep-alive" comment after this long without a frame
    # A connection that has not delivered a whole request head this long after connecting (or
    # after its last answer) is closed: idle keep-alive clients and slow-header (slowloris) ones
    # alike. Above the 60 s idle timeout of the usual load balancers, as they expect.
    idle_timeout: PositiveDuration = 75.0
    # One structured line per request (method, path, status, duration): off by default, since
    # the journal keeps every signal and refused requests are logged (throttled) anyway.
    access_log: StrictBool = False
    # HTTPS (and HTTP/2 by ALPN) with these PEM files; a client CA makes it mutual TLS: every
    # client must present a certificate it signed. Reloaded on SIGHUP (new handshakes).
    tls_cert: RelativePath = None
    tls_key: RelativePath = None
    tls_client_ca: RelativePath = None

    @field_validator("workers", mode="before")
    @classmethod
    def _auto_workers(cls, value: object) -> object:
        if isinstance(value, str):
            if value.strip().lower() == "auto":
                return cpu_count()
            raise ValueError(f'a number of processes (1 or more) or "auto" (one per CPU), not {value!r}')
        return value

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None

    def rule_problems(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if (self.tls_cert is None) != (self.tls_key is None):
            missing = "tls_key" if self.tls_key is None else "tls_cert"
            problems.append((missing, "set both tls_cert and tls_key (PEM files) or neither"))
        for key in ("tls_cert", "tls_key", "tls_client_ca"):
            path = getattr(self, key)
            if path is not None and not path.is_file():
                problems.append((key, f"file not found: {path}"))
        if self.tls_client_ca is not None and not self.tls_enabled:
            problems.append(("tls_client_ca", "client certificates need TLS: set tls_cert and tls_key too"))
        return problems


class SmtpSettings(ListenMixin):
    """``[smtp]``: the inbound mail server."""

    listen: ListenAddress = "127.0.0.1:2525"
    enabled: StrictBool = True
    hostname: str = Field(default="router.local", min_length=1)
    max_message_size: Size = 10 * 1024 * 1024
    max_recipients: int = Field(default=100, ge=1)
    command_timeout: PositiveDuration = 300.0
    data_timeout: PositiveDuration = 600.0
    max_connections: int = Field(default=100, ge=1)
    tls_cert: RelativePath = None
    tls_key: RelativePath = None
    require_tls: StrictBool = False
    auth_required: StrictBool = False
    users: dict[str, str] = Field(default_factory=dict)

    @field_validator("users")
    @classmethod
    def _check_users(cls, users: dict[str, str]) -> dict[str, str]:
        problems = []
        for name, encoded in users.items():
            try:
                check_password_hash(encoded)
            except ValueError as exc:
                problems.append(f"user {name!r}: {exc}")
        if problems:
            raise ValueError("; ".join(problems))
        return users

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None

    def rule_problems(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if (self.tls_cert is None) != (self.tls_key is None):
            missing = "tls_key" if self.tls_key is None else "tls_cert"
            problems.append((missing, "set both tls_cert and tls_key (PEM files) or neither"))
        for key in ("tls_cert", "tls_key"):
            path = getattr(self, key)
            if path is not None and not path.is_file():
                problems.append((key, f"file not found: {path}"))
        if self.require_tls and not self.tls_enabled:
            problems.append(("require_tls", "require_tls = true needs tls_cert and tls_key for STARTTLS"))
        if self.auth_required and not self.users:
            problems.append(
                (
                    "users",
                    'auth_required = true needs at least one user: users = { name = "pbkdf2_sha256$..." }',
                )
            )
        return problems


class AdminSettings(ListenMixin):
    """``[admin]``: admin API and dashboard."""

    listen: ListenAddress = "127.0.0.1:8081"
    enabled: StrictBool = True
    token: str = ""
    # Refused requests kept for the dashboard (and `router refused`): the newest N per source, and
    # N for requests to unknown URLs; 0 keeps none.
    refused_keep: int = Field(default=200, ge=0, le=100_000)

    def rule_problems(self) -> list[tuple[str, str]]:
        if self.enabled and not self.token and not self.is_loopback:
            return [
                (
                    "token",
                    f"an empty token is only allowed when admin listens on a loopback address, "
                    f'but listen = {self.listen!r}; set token (e.g. token = "${{ROUTER_ADMIN_TOKEN}}") '
                    'or listen on "127.0.0.1:PORT"',
                )
            ]
        return []


class TwilioSettings(StrictModel):
    """``[twilio]``: account credentials for signature checks and outbound messages."""

    account_sid: str | None = None
    auth_token: str | None = None
    api_base: OptionalUrl = None
    from_number: str | None = None
    whatsapp_from: str | None = None


class OutboundSmtpSettings(StrictModel):
    """``[outbound.smtp]``: the relay used by ``send_email``."""

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=25, ge=1, le=65535)
    starttls: StrictBool = False
    ssl: StrictBool = False
    username: str | None = None
    password: str | None = None
    from_address: str = Field(default="router@localhost", alias="from", min_length=1)
    timeout: PositiveDuration = 30.0

    def rule_problems(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if self.starttls and self.ssl:
            problems.append(("ssl", "choose one of ssl = true (implicit TLS, port 465) or starttls = true"))
        if (self.username is None) != (self.password is None):
            missing = "password" if self.password is None else "username"
            problems.append((missing, "set both username and password or neither"))
        return problems


class OutboundSettings(StrictModel):
    """``[outbound]``: outgoing delivery settings."""

    smtp: OutboundSmtpSettings = Field(default_factory=OutboundSmtpSettings)


def check_database_url(url: str) -> str:
    """The form of a PostgreSQL URL, checked without connecting (`router check`)."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number in range
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(
            f"url must be a PostgreSQL URL, postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE "
            f"(got scheme {parts.scheme!r}); leave [database] out to keep SQLite under data_dir"
        )
    if port == 0:
        raise ValueError("url: port must be 1-65535")
    return url


class DatabaseSettings(StrictModel):
    """``[database]``: a PostgreSQL database several nodes share. Without ``url`` the router keeps
    SQLite in ``[router] data_dir``."""

    # postgresql://user@host:5432/db; the password via ${ENV} in the URL, or libpq's passfile
    # (~/.pgpass, PGPASSFILE) or a service (postgresql:///?service=router, ~/.pg_service.conf).
    url: str | None = None
    pool_size: int = Field(default=4, ge=1, le=64)  # read connections per process (plus one writer)
    statement_timeout: PositiveDuration = 30.0
    connect_timeout: PositiveDuration = 5.0
    # A claim whose lease ran out this many times without a settle (the run kills its process)
    # fails the signal instead of taking down node after node.
    max_deliveries: int = Field(default=20, ge=2)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return None if value in (None, "") else check_database_url(value)

    @property
    def is_postgres(self) -> bool:
        return self.url is not None
