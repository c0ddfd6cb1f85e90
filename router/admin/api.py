"""The admin JSON API (`/api/...`), `/metrics` and `/openapi.json`.

Every route here needs the admin token (bearer) or a dashboard session (cookie + CSRF header
on mutating calls); `server.create_app` checks that before any route runs. Every mutating call
is written to the log with who made it, from where, and what it changed (`Admin.audit`).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import trio
from quart import Response, g, request
from quart_trio import QuartTrio

from router import sources
from router.admin import api_signals, queries
from router.admin.core import Admin
from router.admin.params import BadRequest
from router.admin.params import json_body as _json_body
from router.admin.params import limit as _limit
from router.dispatch.deletions import JournalDeletionSink
from router.ops.metrics import CONTENT_TYPE
from router.schedules import scheduler as schedules
from router.storage import Tx

OPENAPI = Path(__file__).with_name("openapi.json")
STATUSES = ("pending", "running", "done", "failed")
SSE_POLL = 0.5
SSE_KEEPALIVE = 15.0
SSE_WATCH = 300


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


def _feed(tx: Tx, cursor: Any) -> tuple[list[dict[str, Any]], Any]:
    return tx.feed_after(cursor)


def _now(tx: Tx, ids: list[str]) -> list[dict[str, Any]]:
    return tx.signals_now(ids)


def register(app: QuartTrio, admin: Admin) -> None:
    daemon = admin.daemon

    async def read(fn: Any) -> Any:
        return await daemon.storage.aread(fn)  # PostgreSQL: a pooled thread, not the event loop

    @app.errorhandler(BadRequest)
    async def _bad(exc: BadRequest) -> tuple[dict[str, Any], int]:
        return {"error": str(exc)}, exc.status

    api_signals.register(app, admin)

    # -- overview ----------------------------------------------------------------------------

    @app.get("/openapi.json")
    async def openapi() -> Response:
        return Response(OPENAPI.read_bytes(), content_type="application/json")

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(daemon.metrics.render(), content_type=CONTENT_TYPE)

    @app.get("/api/status")
    async def status() -> dict[str, Any]:
        counts = await read(lambda tx: tx.counts())
        return {
            "ready": bool(daemon.ready),
            "uptime_s": round(time.time() - admin.started, 1),
            "config": str(daemon.config_path),
            "sources": len(daemon.cfg.sources()),
            "workflows": len(daemon.workflows),
            "signals": {s: counts.get(s, 0) for s in STATUSES},
            "runs_active": daemon.dispatcher.active_runs,
            "http_in_flight": daemon.http.in_flight if daemon.http is not None else 0,
            "who": str(g.principal),
        }

    @app.get("/api/audit")
    async def audit() -> dict[str, Any]:
        return {"items": list(admin.audit_trail)[: _limit(100)]}

    # -- sources -------------------------------------------------------------------------------

    async def _one_source(name: str) -> dict[str, Any]:
        try:
            kind, short = admin.resolve(name)
        except ValueError as exc:
            raise BadRequest(str(exc), 404) from exc
        items = await read(lambda c: queries.list_sources(daemon.cfg, c, daemon.workflows))
        return next(i for i in items if i["kind"] == kind and i["name"] == short)

    @app.get("/api/sources")
    async def list_sources() -> dict[str, Any]:
        items = await read(lambda c: queries.list_sources(daemon.cfg, c, daemon.workflows))
        kind = request.args.get("kind")
        return {"items": [i for i in items if not kind or i["kind"] == kind]}

    @app.get("/api/sources/<name>")
    async def show_source(name: str) -> dict[str, Any]:
        return await _one_source(name)

    async def _set_active(name: str, active: bool) -> dict[str, Any]:
        action = "activate" if active else "deactivate"
        try:
            kind, short = admin.resolve(name)
        except ValueError as exc:
            admin.audit(g.principal, f"source.{action}", name, "not_found")
            raise BadRequest(str(exc), 404) from exc
        await daemon.storage.write(lambda tx: tx.source_set_active(kind, short, active))
        await admin.refresh_routes()
        admin.audit(g.principal, f"source.{action}", f"{kind}.{short}", "ok")
        return await _one_source(f"{kind}.{short}")

    @app.post("/api/sources/<name>/activate")
    async def activate(name: str) -> dict[str, Any]:
        return await _set_active(name, True)

    @app.post("/api/sources/<name>/deactivate")
    async def deactivate(name: str) -> dict[str, Any]:
        return await _set_active(name, False)

    @app.post("/api/sources/<name>/rotate")
    async def rotate(name: str) -> dict[str, Any]:
        try:
            kind, short = admin.resolve(name)
        except ValueError as exc:
            admin.audit(g.principal, "source.rotate", name, "not_found")
            raise BadRequest(str(exc), 404) from exc
        body = await _json_body()
        try:
            grace = sources.parse_grace(body.get("grace", request.args.get("grace")))
        except ValueError as exc:
            admin.audit(g.principal, "source.rotate", f"{kind}.{short}", "bad_request")
            raise BadRequest(f"grace: {exc}") from exc
        cfg = daemon.cfg
        try:
            fresh = await daemon.storage.write(lambda tx: sources.rotate(tx, cfg, kind, short, grace))
        except ValueError as exc:
            admin.audit(g.principal, "source.rotate", f"{kind}.{short}", "refused")
            raise BadRequest(str(exc), 409) from exc
        await admin.refresh_routes()
        admin.audit(
            g.principal, "source.rotate", f"{kind}.{short}", "ok", grace=grace
        )  # never the new secret
        item = await _one_source(f"{kind}.{short}")
        until = fresh.get("grace_until")
        old = f"keeps working until {until}" if until else "no longer works"
        return {
            **item,
            **fresh,
            "rotated": True,
            "notice": f"the previous URL/key/secret {old}; this response is the only time the API "
            "returns the new credentials on their own",
        }

    # -- signals: router/admin/api_signals.py; the live feed here ---------------------------------

    @app.get("/api/events")
    async def events() -> Response:
        source = request.args.get("source") or None

        async def stream() -> AsyncIterator[bytes]:
            cursor = await read(lambda tx: tx.feed_start())
            watched: dict[str, tuple[str, int]] = {}
            quiet_since = trio.current_time()
            yield b"retry: 2000\n: connected\n\n"
            while not daemon.stopping.is_set():
                out: list[bytes] = []
                rows, cursor = await read(partial(_feed, cursor=cursor))
                for item in rows:
                    if source and item["source"] != source:
                        continue
                    watched[item["id"]] = (item["status"], item["attempts"])
                    out.append(_sse("signal", item))
                if watched:
                    for row in await read(partial(_now, ids=list(watched)[-SSE_WATCH:])):
                        if watched.get(row["id"]) != (row["status"], row["attempts"]):
                            watched[row["id"]] = (row["status"], row["attempts"])
                            out.append(_sse("signal", row))
                    for stale in list(watched)[:-SSE_WATCH]:
                        watched.pop(stale, None)
                if out:
                    quiet_since = trio.current_time()
                    yield b"".join(out)
                elif trio.current_time() - quiet_since > SSE_KEEPALIVE:
                    quiet_since = trio.current_time()
                    yield b": keep-alive\n\n"
                with trio.move_on_after(SSE_POLL):
                    await daemon.stopping.wait()

        response = Response(stream(), content_type="text/event-stream; charset=utf-8")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Accel-Buffering"] = "no"
        response.timeout = None  # STACK-NOTES trap 2: Quart would cut the stream at 60 s
        return response

    # -- schedules -----------------------------------------------------------------------------

    @app.get("/api/schedules")
    async def list_schedules() -> dict[str, Any]:
        count = request.args.get("count", "3")
        n = int(count) if count.isdigit() and 0 < int(count) <= 50 else 3
        return {"items": await read(lambda c: schedules.describe(daemon.cfg, c, count=n))}

    # -- records -------------------------------------------------------------------------------

    @app.get("/api/records")
    async def record_types() -> dict[str, Any]:
        return {"items": await read(queries.record_types)}

    @app.get("/api/records/<record_type>")
    async def list_records(record_type: str) -> dict[str, Any]:
        offset = request.args.get("offset", "0")
        if not offset.isdigit():
            raise BadRequest("offset must be a whole number")
        try:
            items = await read(lambda tx: tx.record_list(record_type, limit=_limit(), offset=int(offset)))
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
        return {"type": record_type, "items": items}

    @app.get("/api/records/<record_type>/<record_id>")
    async def show_record(record_type: str, record_id: str) -> dict[str, Any]:
        try:
            item = await read(lambda tx: tx.record_get(record_type, record_id))
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
        if item is None:
            raise BadRequest(f"no {record_type} record {record_id}", 404)
        return dict(item)

    @app.delete("/api/records/<record_type>/<record_id>")
    async def delete_record(record_type: str, record_id: str) -> dict[str, Any]:
        def job(tx: Tx) -> tuple[dict[str, Any] | None, str | None]:
            # The deletion signal is appended by the sink inside this same transaction.
            deleted = tx.record_delete(record_type, record_id)
            if deleted is None:
                return None, None
            return deleted, JournalDeletionSink().record_deleted(tx, record_type, deleted)

        target = f"{record_type}/{record_id}"
        try:
            deleted, signal_id = await daemon.storage.write(job)
        except ValueError as exc:
            admin.audit(g.principal, "record.delete", target, "refused")
            raise BadRequest(str(exc)) from exc
        if deleted is None:
            admin.audit(g.principal, "record.delete", target, "not_found")
            raise BadRequest(f"no {record_type} record {record_id}", 404)
        daemon.dispatcher.poke()
        admin.audit(g.principal, "record.delete", target, "ok", signal_id=signal_id)
        return {
            "deleted": deleted,
            "type": record_type,
            "signal_id": signal_id,
            "source": f"deletions.{record_type}",
        }

    # -- config --------------------------------------------------------------------------------

    @app.post("/api/reload")
    async def reload() -> tuple[dict[str, Any], int]:
        errors = await daemon.reload()
        if errors:
            admin.audit(g.principal, "config.reload", str(daemon.config_path), "refused", errors=len(errors))
            return {"applied": False, "errors": errors}, 400
        admin.audit(g.principal, "config.reload", str(daemon.config_path), "ok")
        return {
            "applied": True,
            "sources": len(daemon.cfg.sources()),
            "workflows": len(daemon.workflows),
        }, 200
