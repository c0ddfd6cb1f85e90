"""What the admin API and the dashboard read from a request: limits, JSON bodies, signal filters.

A filter is the same in the API's query string, the dashboard's URL (so a view can be shared)
and, spelled as options, in `router signals`: `q` (text search), `channel`, `source`, `status`,
`workflow`, `since`/`until` (ISO 8601 or `15m`, `2h`, `1d` ago), and the cursor `before`/`after`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

from quart import request

from router.admin import queries
from router.storage.rows import STATUSES, Signal, SignalQuery

MAX_LIMIT = 1000
FILTER_KEYS = ("q", "channel", "source", "status", "workflow", "since", "until")


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def limit(default: int = 50, raw: str | None = None) -> int:
    raw = request.args.get("limit", str(default)) if raw is None else raw
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(f"limit must be a whole number between 1 and {MAX_LIMIT}")
    return int(raw)


async def json_body() -> dict[str, Any]:
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


def signal_query(args: Mapping[str, Any], *, page: int = 50, strict: bool = True) -> SignalQuery:
    """A `SignalQuery` from query-string (or JSON body) values. `strict`: a bad value is a 400
    (the API); otherwise it is dropped (the dashboard shows what it could make of the URL)."""

    def text(name: str) -> str | None:
        value = args.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise BadRequest(f"{name} must be a string")
        return value.strip() or None

    status = text("status")
    if status and status not in STATUSES:
        if strict:
            raise BadRequest(f"status must be one of {', '.join(STATUSES)}")
        status = None
    times: dict[str, str | None] = {}
    for name in ("since", "until"):
        value = text(name)
        try:
            times[name] = queries.parse_since(value) if value else None
        except ValueError as exc:
            if strict:
                raise BadRequest(str(exc)) from exc
            times[name] = None
    q = text("q")
    if q and len(q) > 200:
        raise BadRequest("q is at most 200 characters")
    return SignalQuery(
        search=q,
        channel=text("channel"),
        source=text("source"),
        status=status,
        workflow=text("workflow"),
        since=times["since"],
        until=times["until"],
        before=text("before"),
        after=text("after"),
        limit=page,
    )


async def paged(
    find: Callable[[SignalQuery], Awaitable[list[Signal]]], q: SignalQuery
) -> tuple[list[Signal], str | None, str | None]:
    """One page of `q`, newest first, with the cursors of the pages around it: `before` for the
    older one, `after` for the newer one (None where there is none). One extra row is read to
    know whether there is more."""
    rows = await find(replace(q, limit=q.limit + 1))
    if q.after and not q.before:
        more_newer = len(rows) > q.limit
        rows = rows[1:] if more_newer else rows
        return rows, (rows[-1].id if rows else q.after), (rows[0].id if rows and more_newer else None)
    more_older = len(rows) > q.limit
    rows = rows[: q.limit]
    return rows, (rows[-1].id if rows and more_older else None), (rows[0].id if rows and q.before else None)


def filter_args(args: Mapping[str, Any]) -> dict[str, str]:
    """The filter as given (not the cursor): for links that keep the view."""
    return {k: str(args[k]) for k in FILTER_KEYS if args.get(k)}
