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
from router.admin import queries
from router.admin.core import Admin
from router.dispatch.deletions import JournalDeletionSink
from router.ops.metrics import CONTENT_TYPE
from router.schedules import scheduler as schedules
from router.storage import Tx

OPENAPI = Path(__file__).with_name("openapi.json")
STATUSES = ("pending", "running", "done", "failed")
SSE_POLL = 0.5
SSE_KEEPALIVE = 15.0
SSE_WATCH = 300
MAX_LIMIT = 1000


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _limit(default: int = 50) -> int:
    raw = request.args.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(f"limit must be a whole number between 1 and {MAX_LIMIT}")
    return int(raw)


async def _json_body() -> dict[str, Any]:
    raw = await request.get_data(as_text=True)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


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
            "runs_active": len(daemon.dispatcher._active),
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
        admin.refresh_routes()
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
        try:
            fresh = await daemon.storage.write(lambda tx: sources.rotate(tx, kind, short))
        except ValueError as exc:
            admin.audit(g.principal, "source.rotate", f"{kind}.{short}", "refused")
            raise BadRequest(str(exc), 409) from exc
        admin.refresh_routes()
        admin.audit(g.principal, "source.rotate", f"{kind}.{short}", "ok")  # never the new secret
        item = await _one_source(f"{kind}.{short}")
        return {
            **item,
            **fresh,
            "rotated": True,
            "notice": "the previous URL/key no longer works; this response is the only time the API "
            "returns the new credentials on their own",
        }

    # -- signals -------------------------------------------------------------------------------

    def _signal_filters() -> dict[str, Any]:
        args = request.args
        status_ = args.get("status") or None
        if status_ and status_ not in STATUSES:
            raise BadRequest(f"status must be one of {', '.join(STATUSES)}")
        try:
            since = queries.parse_since(args["since"]) if args.get("since") else None
            until = queries.parse_since(args["until"]) if args.get("until") else None
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
        return {
            "source": args.get("source") or None,
            "status": status_,
            "since": since,
            "until": until,
            "before": args.get("before") or None,
            "limit": _limit(),
        }

    @app.get("/api/signals")
    async def list_signals() -> dict[str, Any]:
        filters = _signal_filters()
        items = await read(lambda c: queries.list_signals(c, **filters))
        more = len(items) == filters["limit"]
        return {"items": items, "next_before": items[-1]["id"] if more and items else None}

    @app.get("/api/signals/failed")
    async def failed_signals() -> dict[str, Any]:
        filters = _signal_filters() | {"status": "failed"}
        items = await read(lambda c: queries.list_signals(c, **filters))
        return {"items": items}

    @app.get("/api/signals/<signal_id>")
    async def show_signal(signal_id: str) -> dict[str, Any]:
        item = await read(lambda c: queries.signal_detail(c, signal_id))
        if item is None:
            raise BadRequest(f"no signal {signal_id}", 404)
        return dict(item)

    async def _replay(ids: list[str]) -> tuple[list[str], list[dict[str, str]]]:
        def job(tx: Tx) -> tuple[list[str], list[dict[str, str]]]:
            done, skipped = [], []
            for sid in ids:
                if tx.requeue(sid):
                    done.append(sid)
                else:
                    sig = tx.get_signal(sid)
                    reason = (
                        "not found"
                        if sig is None
                        else f"signal is {sig.status}; only failed or done signals replay"
                    )
                    skipped.append({"id": sid, "reason": reason})
            return done, skipped

        result = await daemon.storage.write(job)
        if result[0]:
            daemon.dispatcher.poke()
        return result

    @app.post("/api/signals/<signal_id>/replay")
    async def replay_one(signal_id: str) -> tuple[dict[str, Any], int]:
        done, skipped = await _replay([signal_id])
        if done:
            admin.audit(g.principal, "signal.replay", signal_id, "ok")
            return {"replayed": done}, 200
        reason = skipped[0]["reason"]
        admin.audit(g.principal, "signal.replay", signal_id, "refused")
        return {"error": reason, "id": signal_id}, 404 if reason == "not found" else 409

    @app.post("/api/signals/replay")
    async def replay_bulk() -> tuple[dict[str, Any], int]:
        body = await _json_body()
        if "ids" in body:
            ids = body["ids"]
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or len(ids) > MAX_LIMIT:
                raise BadRequest(f"ids must be a list of at most {MAX_LIMIT} signal ids")
            target = f"{len(ids)} ids"
        else:
            source = body.get("source")
            limit = body.get("limit", MAX_LIMIT)
            if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
                raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}")
            ids = [
                s["id"]
                for s in await read(
                    lambda c: queries.list_signals(c, status="failed", source=source, limit=limit)
                )
            ]
            target = f"failed{f' source={source}' if source else ''}"
        done, skipped = await _replay(ids)
        admin.audit(g.principal, "signal.replay_bulk", target, "ok", replayed=len(done), skipped=len(skipped))
        return {"replayed": done, "skipped": skipped}, 200

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
