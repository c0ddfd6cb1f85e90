"""Refused requests (router/ops/refusals.py) in the admin API and the dashboard."""

from __future__ import annotations

from typing import Any

from quart import Response, request
from quart_trio import QuartTrio

from router.admin.core import Admin
from router.admin.params import BadRequest
from router.admin.params import limit as _limit
from router.ops.refusals import refusal_detail
from router.storage.rows import Refusal

BODY_SHOWN = 16 * 1024


def register(app: QuartTrio, admin: Admin, page: Any) -> None:
    """`page(template, **context)`: the dashboard's page renderer."""
    daemon = admin.daemon

    async def listing() -> tuple[list[Refusal], str | None, int]:
        source = request.args.get("source") or None
        before = request.args.get("before") or None
        n = _limit(50)
        items = await daemon.storage.aread(lambda tx: tx.refused_list(source=source, before=before, limit=n))
        return items, items[-1].id if len(items) == n else None, n

    @app.get("/api/refused")
    async def list_refused() -> dict[str, Any]:
        items, more, _ = await listing()
        return {"items": [r.summary() for r in items], "next_before": more}

    @app.get("/api/refused/<refusal_id>")
    async def show_refused(refusal_id: str) -> dict[str, Any]:
        item = await daemon.storage.aread(lambda tx: tx.refused_get(refusal_id))
        if item is None:
            raise BadRequest(f"no refused request {refusal_id}", 404)
        return refusal_detail(item)

    @app.get("/refused")
    async def refused_page() -> Any:
        items, more, _ = await listing()
        names = ["unknown", "smtp", *(f"{k}.{n}" for k, n, _ in daemon.cfg.sources())]
        return await page(
            "refused.html",
            nav="refused",
            items=items,
            next_before=more,
            source=request.args.get("source") or None,
            source_names=names,
            keep=daemon.cfg.admin.refused_keep,
        )

    @app.get("/refused/<refusal_id>")
    async def refused_one_page(refusal_id: str) -> Any:
        item = await daemon.storage.aread(lambda tx: tx.refused_get(refusal_id))
        if item is None:
            html = await page("missing.html", nav="refused", what=f"refused request {refusal_id}")
            return Response(html, 404, content_type="text/html; charset=utf-8")
        return await page("refused_one.html", nav="refused", r=refusal_detail(item), shown=BODY_SHOWN)
