"""The admin listener: one QuartTrio app (API, dashboard, metrics) on hypercorn's trio worker,
run as a supervised channel in the daemon's nursery."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import structlog
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app
from quart import Response, g, redirect, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from router.admin import api, dashboard
from router.admin.auth import CSRF_HEADER
from router.admin.core import MUTATING, Admin, AdminHost
from router.admin.health import Readiness
from router.ops.netutil import listen_socket
from router.version import version

log = structlog.get_logger("router.admin")

HERE = Path(__file__).parent
PUBLIC = ("/healthz", "/readyz", "/openapi.json", "/login", "/static/")
MAX_BODY = 1024 * 1024
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _machine(path: str) -> bool:
    """Callers of these paths get JSON errors (401/403), not the login page."""
    return path.startswith("/api/") or path == "/api" or path == "/metrics"


def create_app(daemon: AdminHost) -> QuartTrio:
    app = QuartTrio(
        "router.admin",
        template_folder=str(HERE / "templates"),
        static_folder=str(HERE / "static"),
        static_url_path="/static",
    )
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.config["BODY_TIMEOUT"] = 30
    app.config["RESPONSE_TIMEOUT"] = 60
    app.config["TEMPLATES_AUTO_RELOAD"] = False
    admin = Admin(daemon)
    app.extensions["router_admin"] = admin

    @app.before_request
    async def authenticate() -> Any:
        # STACK-NOTES trap 1: read the body before answering, even to refuse, or the next
        # request on this keep-alive connection can hang.
        await request.get_data()
        path = request.path
        g.principal = None
        if path.startswith(PUBLIC) or path == "/favicon.ico":
            return None
        principal = admin.authenticate(request.headers, request.cookies, request.remote_addr or "")
        if principal is None:
            if _machine(path):
                log.info(
                    "admin refused",
                    path=path,
                    remote=request.remote_addr,
                    reason="bad_token" if "authorization" in request.headers else "no_credentials",
                )
                return Response(
                    b'{"error":"missing or invalid admin token: send Authorization: Bearer TOKEN"}',
                    401,
                    {"Content-Type": "application/json", "WWW-Authenticate": 'Bearer realm="router-admin"'},
                )
            return redirect(f"/login?next={request.full_path.rstrip('?')}")
        given = request.headers.get(CSRF_HEADER, "")
        if not given and request.method in MUTATING and request.mimetype in FORM_TYPES:
            given = (await request.form).get("csrf_token", "")
        if not admin.csrf_ok(principal, request.method, given):
            log.info("admin refused", path=path, remote=request.remote_addr, reason="csrf")
            return Response(
                b'{"error":"missing or invalid X-CSRF-Token for a cookie session"}',
                403,
                {"Content-Type": "application/json"},
            )
        g.principal = principal
        return None

    @app.after_request
    async def headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if response.mimetype == "text/html":
            response.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
            )
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Any:
        if _machine(request.path):
            return {"error": exc.description or exc.name}, exc.code or 500
        return exc

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness: the event loop answers. Restart the daemon only when this fails."""
        return {"status": "ok", "version": version(), "uptime_s": round(time.time() - admin.started, 1)}

    readiness = Readiness(daemon)

    @app.get("/readyz")
    async def readyz() -> Any:
        ready, body = await readiness.check()
        return body, 200 if ready else 503

    api.register(app, admin)
    dashboard.register(app, admin)
    return app


async def run_admin(daemon: AdminHost, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """The supervised `admin` channel: serve `[admin] listen` until the daemon stops."""
    cfg = daemon.cfg.admin
    if not cfg.enabled:
        task_status.started()
        await daemon.stopping.wait()
        return
    if not cfg.token and not cfg.is_loopback:
        # The config check refuses this already; never serve an open admin on a public address.
        log.error(
            "admin not started: no [admin] token and listen is not a loopback address", listen=cfg.listen
        )
        task_status.started()
        await daemon.stopping.wait()
        return
    if not cfg.token:
        log.warning("admin has no token: anyone on this host can use it", listen=cfg.listen)
    app = create_app(daemon)
    sock = listen_socket(cfg.listen, setting="admin.listen")
    hc = HypercornConfig()
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.keep_alive_timeout = 75
    hc.graceful_timeout = 2.0  # live views end when the daemon stops; nothing long-running here
    sockets = Sockets(secure_sockets=[], insecure_sockets=[sock], quic_sockets=[])
    log.info("admin listening", listen=cfg.listen)
    await worker_serve(
        wrap_app(app, None, "asgi"),  # type: ignore[arg-type]
        hc,
        sockets=sockets,
        shutdown_trigger=daemon.stopping.wait,
        task_status=task_status,
    )
