"""The admin's view of the daemon: authentication, the audit trail, and source changes."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import structlog

from router import sources
from router.admin.auth import (
    SESSION_COOKIE,
    Principal,
    csrf_valid,
    fingerprint,
    session_valid,
    token_matches,
)
from router.build import build_routes

log = structlog.get_logger("router.admin")

# The audit line's own fields: a detail of the same name is logged as `detail_<name>`.
_AUDIT_KEYS = frozenset(
    {"action", "target", "result", "who", "via", "remote", "msg", "level", "logger", "time"}
)

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Admin:
    """Shared by the API and the dashboard; `daemon` is the running `router.daemon.Daemon`."""

    def __init__(self, daemon: Any) -> None:
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
        metrics = getattr(self.daemon, "metrics", None)
        if metrics is not None:
            metrics.admin_actions.labels(action, result).inc()

    # -- sources --------------------------------------------------------------------------------

    def resolve(self, name: str) -> tuple[str, str]:
        return sources.resolve_name(self.daemon.cfg, name)

    def refresh_routes(self) -> None:
        """Apply a source change to this process's HTTP routes now (other processes within 0.5 s)."""
        d = self.daemon
        if d.http is not None:
            d.http.routes = build_routes(d.cfg, d.storage.read(lambda tx: tx.source_states()))
