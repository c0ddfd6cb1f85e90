"""A backend's row (any mapping by column name: `sqlite3.Row`, psycopg's `dict_row`) into the
dataclasses of rows.py. The backends store the same columns under the same names; JSON columns
come back as their text on both (PostgreSQL registers a text loader for `json`)."""

from __future__ import annotations

import json
from typing import Any, Protocol

from engine.entity import Entity
from router.storage.rows import Previous, Refusal, ScheduleState, Signal, SourceState


class Row(Protocol):
    def __getitem__(self, key: str) -> Any: ...


def _json(text: str | None, default: Any) -> Any:
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def signal(row: Row) -> Signal:
    entity = Entity.from_row(row["id"], row["channel"], row["source"], row["received_at"], row["entity"])
    return Signal(
        id=row["id"],
        channel=row["channel"],
        source=row["source"],
        received_at=row["received_at"],
        entity=entity,
        status=row["status"],
        attempts=row["attempts"],
        last_error=row["last_error"],
        dedup_key=row["dedup_key"],
        owner=row["owner"],
        epoch=row["epoch"],
        updated_at=row["updated_at"],
        ack=_json(row["ack"], None),
        replays=row["replays"],
        replay_from=row["replay_from"],
    )


def source_state(row: Row) -> SourceState:
    previous = (
        None
        if row["prev_until"] is None
        else Previous(
            row["prev_until"],
            row["prev_first_hash"],
            row["prev_second_hash"],
            row["prev_api_key"],
            row["prev_jwt_key"],
            row["prev_jwt_secret"],
        )
    )
    return SourceState(
        row["kind"],
        row["name"],
        row["first_hash"],
        row["second_hash"],
        row["api_key"],
        None if row["active"] is None else bool(row["active"]),
        row["jwt_key"],
        row["jwt_secret"],
        previous,
    )


def schedule(row: Row) -> ScheduleState:
    return ScheduleState(
        row["name"],
        row["definition"],
        row["since"],
        row["cursor_ts"],
        row["last_slot"],
        row["last_fired_at"],
        row["last_signal_id"],
    )


REFUSED_COLUMNS = (
    "id",
    "at",
    "channel",
    "source",
    "method",
    "path",
    "query",
    "remote",
    "headers",
    "body",
    "body_size",
    "status",
    "reason",
    "answer",
    "request_id",
)


def refusal(row: Row) -> Refusal:
    headers = _json(row["headers"], {})
    return Refusal(
        row["id"],
        row["at"],
        row["channel"],
        row["source"],
        row["method"],
        row["path"],
        row["query"],
        row["remote"],
        headers if isinstance(headers, dict) else {},
        bytes(row["body"]),
        row["body_size"],
        row["status"],
        row["reason"],
        row["answer"],
        row["request_id"],
    )
