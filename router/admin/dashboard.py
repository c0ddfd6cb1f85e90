"""The dashboard: server-rendered pages (Jinja2) with a little progressive JavaScript.

Pages render everything they show on the server; `static/app.js` adds copy buttons, actions
(calling the JSON API with the session's CSRF token) and the live signals list (SSE).
Login exchanges the admin token for an HttpOnly, SameSite=Strict session cookie.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from quart import Response, g, redirect, render_template, request
from quart_trio import QuartTrio

from router.admin import api_refused, params, queries
from router.admin.auth import (
    SESSION_COOKIE,
    SESSION_TTL,
    Principal,
    csrf_token,
    fingerprint,
    make_session,
    token_matches,
)
from router.admin.core import Admin
from router.schedules import scheduler as schedules

STATUSES = ("pending", "running", "done", "failed")
PAGE = 100


def _safe_next(target: str | None) -> str:
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def mask_url(url: str | None) -> str:
    """Show a webhook URL without its key (the copy button still copies the real one)."""
    if not url:
        return ""
    parts = urlsplit(url)
    query = "&".join(
        f"{quote(k, safe='')}="
        + ("•••" if k.lower() in ("apikey", "api_key", "token") else quote(v, safe=""))
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit(parts._replace(query=query))


def register(app: QuartTrio, admin: Admin) -> None:
    daemon = admin.daemon
    env = app.jinja_env
    env.filters["pretty"] = lambda v: json.dumps(
        v, indent=2, ensure_ascii=False, default=str, sort_keys=False
    )
    env.filters["ts"] = _ts
    env.filters["ago"] = _ago
    env.filters["mask_url"] = mask_url
    env.filters["when"] = _when
    env.filters["until"] = _until
    env.filters["urlq"] = lambda v: quote(str(v), safe="")
    env.globals["STATUSES"] = STATUSES

    async def read(fn: Any) -> Any:
        return await daemon.storage.aread(fn)  # PostgreSQL: a pooled thread, not the event loop

    async def page(template: str, **context: Any) -> str:
        principal = g.principal
        csrf = csrf_token(admin.token, principal.session) if principal and principal.session else ""
        counts = await read(lambda tx: tx.counts())
        return await render_template(
            template,
            principal=principal,
            csrf=csrf,
            open_mode=admin.open,
            nav_counts=counts,
            public_url=daemon.cfg.router.public_url,
            **context,
        )

    # -- login ---------------------------------------------------------------------------------

    @app.get("/login")
    async def login_form() -> Any:
        if admin.open:
            return redirect("/")
        return await render_template("login.html", error=None, next=_safe_next(request.args.get("next")))

    @app.post("/login")
    async def login() -> Any:
        form = await request.form
        target = _safe_next(form.get("next"))
        given = (form.get("token") or "").strip()
        remote = request.remote_addr or ""
        token = admin.token
        if not token:
            return redirect("/")
        if not token_matches(given, token):
            admin.audit(Principal("unknown", "login", remote), "session.login", "dashboard", "refused")
            html = await render_template("login.html", error="That token is not right.", next=target)
            return Response(html, 401, content_type="text/html; charset=utf-8")
        session = make_session(token)
        admin.audit(
            Principal(f"session:{fingerprint(token)}", "login", remote), "session.login", "dashboard", "ok"
        )
        response = redirect(target)
        response.set_cookie(
            SESSION_COOKIE,
            session,
            max_age=SESSION_TTL,
            httponly=True,
            samesite="Strict",
            secure=request.scheme == "https",
            path="/",
        )
        return response

    @app.post("/logout")
    async def logout() -> Any:
        admin.audit(g.principal, "session.logout", "dashboard", "ok")
        response = redirect("/login")
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # -- pages ---------------------------------------------------------------------------------

    @app.get("/")
    async def sources_page() -> Any:
        items = await read(lambda c: queries.list_sources(daemon.cfg, c, daemon.workflows))
        kinds: dict[str, list[dict[str, Any]]] = {}
        for item in items:
            kinds.setdefault(item["kind"], []).append(item)
        return await page("sources.html", nav="sources", kinds=kinds, total=len(items))

    @app.get("/signals")
    async def signals_page() -> Any:
        args = request.args
        q = params.signal_query(args, page=PAGE, strict=False)
        rows, older, newer = await params.paged(lambda query: read(lambda tx: tx.find_signals(query)), q)
        items = [queries.signal_row(s) for s in rows]
        kept = params.filter_args(args)
        names = sorted({*(f"{k}.{n}" for k, n, _ in daemon.cfg.sources()), *([q.source] if q.source else [])})
        return await page(
            "signals.html",
            nav="signals",
            items=items,
            f=kept,
            q=q,
            source_names=names,
            channels=sorted({k for k, _, _ in daemon.cfg.sources()} | {"deletions"}),
            workflow_names=[w.name for w in daemon.workflows],
            older=older and urlencode({**kept, "before": older}),
            newer=newer and urlencode({**kept, "after": newer}),
            newest=urlencode(kept),
            export=urlencode(kept),
            paged=bool(q.before or q.after),
            # Live rows only where they belong: the first page of a plain source/status view.
            live=not (q.before or q.after or q.search or q.since or q.until or q.workflow or q.channel),
        )

    @app.get("/signals/<signal_id>")
    async def signal_page(signal_id: str) -> Any:
        item = await read(lambda c: queries.signal_detail(c, signal_id))
        if item is None:
            html = await page("missing.html", nav="signals", what=f"signal {signal_id}")
            return Response(html, 404, content_type="text/html; charset=utf-8")
        return await page("signal.html", nav="signals", s=item)

    @app.get("/failed")
    async def failed_page() -> Any:
        items = await read(lambda c: queries.list_signals(c, status="failed", limit=200))
        return await page("failed.html", nav="failed", items=items)

    @app.get("/schedules")
    async def schedules_page() -> Any:
        items = await read(lambda c: schedules.describe(daemon.cfg, c, count=5))
        return await page("schedules.html", nav="schedules", items=items)

    @app.get("/records")
    async def records_page() -> Any:
        return await page(
            "records.html", nav="records", types=await read(queries.record_types), record_type=None, items=[]
        )

    @app.get("/records/<record_type>")
    async def records_type_page(record_type: str) -> Any:
        try:
            items = await read(lambda tx: tx.record_list(record_type, limit=200))
        except ValueError:
            items = []
        columns: list[str] = []
        for item in items:
            for key in item:
                if key not in columns:
                    columns.append(key)
        return await page(
            "records.html",
            nav="records",
            types=await read(queries.record_types),
            record_type=record_type,
            items=items,
            columns=columns,
        )

    @app.get("/audit")
    async def audit_page() -> Any:
        return await page("audit.html", nav="audit", items=list(admin.audit_trail))

    api_refused.register(app, admin, page)


def _ts(value: Any) -> str:
    """`2026-05-01T10:11:12.345Z` → `2026-05-01 10:11:12`; epoch seconds likewise (UTC)."""
    if value is None or value == "":
        return ""
    if isinstance(value, (int, float)):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(value))
    text = str(value)
    return text.replace("T", " ")[:19]


def _ago(value: Any) -> str:
    try:
        if isinstance(value, (int, float)):
            then = float(value)
        else:
            then = datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return ""
    delta = max(0, time.time() - then)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= size:
            return f"{int(delta // size)}{unit} ago"
    return f"{int(delta)}s ago"


def _parse(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _when(value: Any) -> str:
    """`2026-11-25T02:00:00+01:00` → `Wed 25 Nov 2026 02:00 +01:00` (in the schedule's own zone)."""
    dt = _parse(value)
    if dt is None:
        return str(value)
    offset = dt.strftime("%z")
    zone = f" {offset[:3]}:{offset[3:]}" if offset else ""
    return dt.strftime("%a %d %b %Y %H:%M") + zone


def _until(value: Any) -> str:
    dt = _parse(value)
    if dt is None or dt.tzinfo is None:
        return ""
    delta = dt.timestamp() - time.time()
    if delta < 0:
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= size:
            return f"in {int(delta // size)}{unit}"
    return f"in {int(delta)}s"
