"""The admin's view of the daemon: authentication, the audit trail, and source changes."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import structlog
import trio

from config import Config
from engine.workflow import Workflow
from router import sources
from router.admin.auth import (
    SESSION_COOKIE,
    Principal,
    csrf_valid,
    fingerprint,
    session_valid,
    token_matches,
)

if TYPE_CHECKING:
    from channels.http.app import HttpChannel
    from router.dispatch.dispatcher import Dispatcher
    from router.dispatch.doorbell import Doorbells
    from router.ops.metrics import Metrics
    from router.ops.workers import WorkerPool
    from router.storage import Storage

log = structlog.get_logger("router.admin")

# The audit line's own fields: a detail of the same name is logged as `detail_<name>`.
_AUDIT_KEYS = frozenset(
    {"action", "target", "result", "who", "via", "remote", "msg", "level", "logger", "time"}
)

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class AdminHost(Protocol):
    """What the admin listener (API, dashboard, health, metrics) uses of the daemon that runs it
    (router/daemon.py `Daemon`)."""

    @property
    def cfg(self) -> Config:
        """The config now: replaced on reloads."""
        ...

    @property
    def config_path(self) -> Path: ...

    @property
    def workflows(self) -> list[Workflow]: ...

    @property
    def storage(self) -> Storage: ...

    @property
    def dispatcher(self) -> Dispatcher: ...

    @property
    def http(self) -> HttpChannel | None: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def workers(self) -> WorkerPool | None:
        """The child processes (HTTP workers, runners), if any."""
        ...

    @property
    def doorbells(self) -> Doorbells:
        """Where this daemon's runners listen for work (bound once each is ready)."""
        ...

    @property
    def ready(self) -> bool: ...

    @property
    def stopping(self) -> trio.Event:
        """Set on SIGTERM."""
        ...

    @property
    def channels_up(self) -> Mapping[str, bool]:
        """Each supervised channel: serving now."""
        ...

    async def reload(self) -> list[str]:
        """Re-read the config; the problems if it was refused."""
        ...

    async def refresh_routes(self) -> None:
        """A source was (de)activated or rotated: this process's HTTP routes now (others within 0.5 s)."""
        ...


class Admin:
    """Shared by the API and the dashboard."""

    def __init__(self, daemon: AdminHost) -> None:
        self.daemon = daemon
        self.audit_trail: deque[dict[str, Any]] = deque(maxlen=500)
        self.started = time.time()

    # -- who ------------------------------------------------------------------------------------

    @property
    def token(self) -> str:
        return str(self.daemon.cfg.admin.token or "")

    @property
    def open(self) -> bool:
        """No token configured: allowed by the config only on a loopback address."""
        return not self.token

    def authenticate(self, headers: Any, cookies: Any, remote: str) -> Principal | None:
        token = self.token
        if not token:
            return Principal("open", "open", remote)
        scheme, _, given = str(headers.get("Authorization", "")).partition(" ")
        if scheme.lower() == "bearer" and given.strip():
            if token_matches(given.strip(), token):
                return Principal(f"token:{fingerprint(token)}", "bearer", remote)
            return None
        cookie = cookies.get(SESSION_COOKIE)
        if cookie and session_valid(cookie, token):
            return Principal(f"session:{fingerprint(token)}", "cookie", remote, session=cookie)
        return None

    def csrf_ok(self, principal: Principal, method: str, given: str) -> bool:
        """Cookie sessions must prove a mutating call came from our pages (header or form field)."""
        if principal.via != "cookie" or method not in MUTATING:
            return True
        return csrf_valid(given, self.token, principal.session or "")

    # -- what -----------------------------------------------------------------------------------

    def audit(
        self, principal: Principal | None, action: str, target: str, result: str, **details: Any
    ) -> None:
        """One log line (and a ring buffer entry) per mutating call: who, from where, what, outcome."""
        who = principal.who if principal else "anonymous"
        via = principal.via if principal else "-"
        remote = principal.remote if principal else "-"
        extra = {f"detail_{k}" if k in _AUDIT_KEYS else k: v for k, v in details.items() if v is not None}
        log.info(
            "admin", action=action, target=target, result=result, who=who, via=via, remote=remote, **extra
        )
        self.audit_trail.appendleft(
            {
                "at": time.time(),
                "action": action,
                "target": target,
                "result": result,
                "who": who,
                "via": via,
                "remote": remote,
                **{k: v for k, v in details.items() if v is not None},
            }
        )
        self.daemon.metrics.admin_actions.labels(action, result).inc()

    # -- sources --------------------------------------------------------------------------------

    def resolve(self, name: str) -> tuple[str, str]:
        return sources.resolve_name(self.daemon.cfg, name)

    async def refresh_routes(self) -> None:
        await self.daemon.refresh_routes()
