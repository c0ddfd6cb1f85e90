"""Signals in the admin API: list and search, count, export, one signal, its raw body, replay.

Filters (router/admin/params.py) are the same for the list, the count, the NDJSON export and a
bulk replay, so what the dashboard showed and counted is what gets exported or replayed. A bulk
replay by filter replays the failed and done matches up to `upto` (the newest id the count saw:
signals that arrive after the count are not swept in), at most BULK_MAX per call.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from functools import partial
from typing import Any

from quart import Response, g, request
from quart_trio import QuartTrio

from router.admin import queries
from router.admin.core import Admin
from router.admin.params import MAX_LIMIT, BadRequest, json_body, limit, paged, signal_query
from router.dispatch import replay as replays
from router.storage import Tx
from router.storage.rows import Signal, SignalQuery

BULK_MAX = 10_000
EXPORT_PAGE = 500


def _replayable(q: SignalQuery) -> SignalQuery:
    if q.status and q.status not in replays.REPLAYABLE:
        raise BadRequest(f"only failed or done signals replay, not {q.status}")
    return replace(q, statuses=() if q.status else replays.REPLAYABLE, before=None, after=None)


def _find(tx: Tx, q: SignalQuery) -> list[Signal]:
    return tx.find_signals(q)


def register(app: QuartTrio, admin: Admin) -> None:
    daemon = admin.daemon

    async def read(fn: Any) -> Any:
        return await daemon.storage.aread(fn)  # PostgreSQL: a pooled thread, not the event loop

    @app.get("/api/signals")
    async def list_signals() -> dict[str, Any]:
        q = signal_query(request.args, page=limit())
        rows, older, newer = await paged(lambda query: read(partial(_find, q=query)), q)
        return {"items": [queries.signal_row(s) for s in rows], "next_before": older, "prev_after": newer}

    @app.get("/api/signals/failed")
    async def failed_signals() -> dict[str, Any]:
        q = replace(signal_query(request.args, page=limit()), status="failed")
        return {"items": [queries.signal_row(s) for s in await read(lambda tx: tx.find_signals(q))]}

    @app.get("/api/signals/count")
    async def count_signals() -> dict[str, Any]:
        """How many match, and how many of those a replay would take (failed or done)."""
        q = signal_query(request.args)
        newest = await read(lambda tx: tx.find_signals(replace(q, limit=1, before=None, after=None)))
        upto = newest[0].id if newest else None
        q = replace(q, upto=upto)
        count = await read(lambda tx: tx.count_signals(q))
        replayable = 0
        if not q.status or q.status in replays.REPLAYABLE:
            replayable = await read(lambda tx: tx.count_signals(_replayable(q)))
        # The filter as resolved now (`since=1h` becomes a time): a replay given these takes the same set.
        resolved = {
            "q": q.search,
            "channel": q.channel,
            "source": q.source,
            "status": q.status or "",
            "workflow": q.workflow,
            "since": q.since,
            "until": q.until,
            "upto": upto,
        }
        return {
            "count": count,
            "replayable": replayable,
            "upto": upto,
            "filter": {k: v for k, v in resolved.items() if v is not None},
        }

    @app.get("/api/signals/export")
    async def export_signals() -> Response:
        """Every match as NDJSON (newest first): the summary, the entity (secrets masked), runs."""
        q = signal_query(request.args, page=EXPORT_PAGE)

        async def lines() -> AsyncIterator[bytes]:
            cursor = q
            while True:
                page = await read(partial(_find, q=cursor))
                for sig in page:
                    item = await read(partial(queries.signal_detail, signal_id=sig.id))
                    if item is not None:
                        item.pop("view", None)
                        yield json.dumps(item, ensure_ascii=False, default=str).encode() + b"\n"
                if len(page) < cursor.limit:
                    return
                cursor = replace(cursor, before=page[-1].id, after=None)

        response = Response(lines(), content_type="application/x-ndjson")
        response.headers["Content-Disposition"] = 'attachment; filename="signals.ndjson"'
        response.timeout = None
        return response

    @app.get("/api/signals/<signal_id>")
    async def show_signal(signal_id: str) -> dict[str, Any]:
        item = await read(lambda c: queries.signal_detail(c, signal_id))
        if item is None:
            raise BadRequest(f"no signal {signal_id}", 404)
        return dict(item)

    @app.get("/api/signals/<signal_id>/body")
    async def signal_body(signal_id: str) -> Response:
        """The request body as received, whole (up to max_body), as a download."""
        body = await read(lambda tx: tx.signal_body(signal_id))
        if body is None:
            raise BadRequest(f"no body kept for signal {signal_id}", 404)
        return Response(
            body,
            content_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{signal_id}.body"'},
        )

    async def _replay(ids: list[str], spread: float = 0.0) -> tuple[list[str], list[dict[str, str]]]:
        cfg, listeners = daemon.cfg, daemon.dispatcher.listeners
        result = await daemon.storage.write(lambda tx: replays.replay(tx, ids, cfg, listeners, spread=spread))
        if result.replayed:
            daemon.dispatcher.poke()
        return result.replayed, result.skipped

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
        body = await json_body()
        spread = body.get("spread")
        if spread is not None and (
            isinstance(spread, bool)
            or not isinstance(spread, (int, float))
            or not 0 <= spread <= replays.MAX_SPREAD
        ):
            raise BadRequest(f"spread must be a number of seconds between 0 and {replays.MAX_SPREAD:g}")
        if "ids" in body:
            ids = body["ids"]
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or len(ids) > MAX_LIMIT:
                raise BadRequest(f"ids must be a list of at most {MAX_LIMIT} signal ids")
            target = f"{len(ids)} ids"
        else:
            filters = {k: v for k, v in body.items() if k not in ("spread", "limit", "ids")}
            if "status" not in body and "ids" not in body:
                filters.setdefault("status", "failed")  # as before: {"source": S} is every failed one of S
            raw_limit = body.get("limit", BULK_MAX)
            if (
                isinstance(raw_limit, bool)
                or not isinstance(raw_limit, int)
                or not 1 <= raw_limit <= BULK_MAX
            ):
                raise BadRequest(f"limit must be between 1 and {BULK_MAX}")
            q = _replayable(replace(signal_query(filters, page=raw_limit), upto=filters.get("upto") or None))
            ids = [s.id for s in await read(lambda tx: tx.find_signals(q))]
            status = filters.get("status") or "failed+done"
            rest = " ".join(f"{k}={v}" for k, v in filters.items() if v and k not in ("status", "upto"))
            target = f"{status} {rest}".strip()
        wait = replays.default_spread(len(ids)) if spread is None else float(spread)
        done, skipped = await _replay(ids, wait)
        admin.audit(g.principal, "signal.replay_bulk", target, "ok", replayed=len(done), skipped=len(skipped))
        return {"replayed": done, "skipped": skipped, "spread_s": round(wait, 3)}, 200
