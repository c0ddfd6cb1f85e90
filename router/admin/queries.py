"""Read models for the admin API and the dashboard: plain functions of a connection.

Everything the admin shows is read from the journal and the sources table, so it is the same
whether the work was done by this process, an HTTP worker process or the CLI.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

from config import Config
from router import journal, sources

SECRET_HEADER = re.compile(
    r"authori[sz]ation|cookie|token|api[-_]?key|secret|signature|hmac|passw(or)?d|x-twilio-signature", re.IGNORECASE
)
SECRET_FIELD = re.compile(r"secret|passw(or)?d|token|authori[sz]ation|api[-_]?key|cookie", re.IGNORECASE)
MASK = "•••"

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def iso(dt: datetime) -> str:
    """The journal's timestamp format: UTC, milliseconds, `Z`."""
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_since(value: str, now: datetime | None = None) -> str:
    """`15m`, `2h`, `1d`, `30s` (that long ago) or an ISO 8601 time → the journal's format."""
    value = value.strip()
    now = now or datetime.now(UTC)
    m = _RELATIVE.match(value)
    if m:
        return iso(now - timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)]))
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"since={value!r}: use an ISO 8601 time or a duration like 15m, 2h, 1d") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return iso(dt)


def mask_value(value: Any) -> str:
    text = str(value)
    if text in ("", "***"):
        return MASK
    scheme, _, rest = text.partition(" ")
    if rest and scheme.lower() in ("bearer", "basic", "token", "digest"):
        return f"{scheme} {MASK}"
    return MASK


def mask_headers(headers: dict[str, Any]) -> dict[str, Any]:
    return {k: (mask_value(v) if SECRET_HEADER.search(k) else v) for k, v in headers.items()}


def mask_fields(value: Any, depth: int = 0) -> Any:
    if depth > 20:
        return value
    if isinstance(value, dict):
        return {k: (MASK if SECRET_FIELD.search(str(k)) and v not in (None, "") else mask_fields(v, depth + 1))
                for k, v in value.items()}
    if isinstance(value, list):
        return [mask_fields(v, depth + 1) for v in value]
    return value


def split_entity(data: dict[str, Any]) -> dict[str, Any]:
    """The entity as the inspector shows it: payload, headers (masked) and meta apart."""
    payload: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    headers: dict[str, Any] = {}
    for key, value in data.items():
        if key == "__headers" and isinstance(value, dict):
            headers = mask_headers(value)
        elif key.startswith("__"):
            meta[key] = value
        else:
            payload[key] = value
    if isinstance(meta.get("__query"), dict):
        meta["__query"] = mask_fields(meta["__query"])
    return {"payload": mask_fields(payload), "headers": headers, "meta": meta}


def source_stats(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """Per source: counts by status and the last signal."""
    out: dict[str, dict[str, Any]] = {}
    for row in conn.execute("SELECT source, status, count(*) FROM signals GROUP BY source, status"):
        item = out.setdefault(row[0], {"counts": {}, "last_signal": None})
        item["counts"][row[1]] = row[2]
    for row in conn.execute(
        "SELECT s.source, s.id, s.received_at, s.status FROM signals s "
        "JOIN (SELECT source, max(id) AS id FROM signals GROUP BY source) last ON last.id = s.id"
    ):
        item = out.setdefault(row[0], {"counts": {}, "last_signal": None})
        item["last_signal"] = {"id": row[1], "received_at": row[2], "status": row[3]}
    return out


def list_sources(cfg: Config, conn: sqlite3.Connection, workflows: list[Any] | None = None) -> list[dict[str, Any]]:
    items = sources.describe(cfg, sources.load_states(conn))
    stats = source_stats(conn)
    models = {(k, n): m for k, n, m in cfg.sources()}
    for item in items:
        st = stats.get(item["source"], {"counts": {}, "last_signal": None})
        counts = {s: st["counts"].get(s, 0) for s in ("pending", "running", "done", "failed")}
        item["counts"] = counts
        item["total"] = sum(st["counts"].values())
        item["last_signal"] = st["last_signal"]
        model = models.get((item["kind"], item["name"]))
        item["description"] = getattr(model, "description", None) or ""
        item["workflows"] = [w.name for w in (workflows or []) if w.matches(item["source"])]
    return items


def signal_summary(s: journal.Signal) -> dict[str, Any]:
    return s.summary()


def list_signals(
    conn: sqlite3.Connection,
    *,
    source: str | None = None,
    status: str | None = None,
    since: str | None = None,
    until: str | None = None,
    before: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for column, op, value in (("source", "=", source), ("status", "=", status), ("received_at", ">=", since),
                              ("received_at", "<", until), ("id", "<", before)):
        if value:
            clauses.append(f"{column} {op} ?")
            params.append(value)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(f"SELECT * FROM signals {where} ORDER BY id DESC LIMIT ?", (*params, limit)).fetchall()
    return [journal.Signal.from_row(r).summary() | {"updated_at": r["updated_at"]} for r in rows]


def signal_detail(conn: sqlite3.Connection, signal_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM signals WHERE id = ?", (signal_id,)).fetchone()
    if row is None:
        return None
    sig = journal.Signal.from_row(row)
    item = sig.summary()
    item["updated_at"] = row["updated_at"]
    item["entity"] = mask_fields({k: v for k, v in sig.entity.data.items() if k != "__headers"}) | (
        {"__headers": mask_headers(sig.entity.data["__headers"])} if isinstance(sig.entity.data.get("__headers"), dict)
        else {}
    )
    item["view"] = split_entity(sig.entity.data)
    item["runs"] = journal.runs_for(conn, signal_id)
    item["replayable"] = sig.status in ("failed", "done")
    try:
        import json

        item["ack"] = json.loads(row["ack"]) if row["ack"] else None
    except ValueError:
        item["ack"] = None
    return item


_LIVE_COLUMNS = "id, channel, source, received_at, status, attempts, last_error, dedup_key"


def added_after(conn: sqlite3.Connection, after: int, limit: int = 500) -> list[sqlite3.Row]:
    """Signals journaled after rowid `after`, in commit order.

    One writer at a time holds SQLite's write lock for a whole transaction, so rowids grow in
    commit order, across processes too: a reader that remembers the last rowid it saw misses
    nothing (timestamps could: a row stamped earlier may commit later).
    """
    return conn.execute(
        f"SELECT rowid AS rid, {_LIVE_COLUMNS} FROM signals WHERE rowid > ? ORDER BY rowid LIMIT ?", (after, limit)
    ).fetchall()


def current(conn: sqlite3.Connection, ids: list[str]) -> list[sqlite3.Row]:
    """The present state of a few signals (the live view follows those it has shown)."""
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    return conn.execute(f"SELECT {_LIVE_COLUMNS} FROM signals WHERE id IN ({marks})", ids).fetchall()


def last_rowid(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(rowid), 0) FROM signals").fetchone()[0])


def record_types(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    from engine.records import list_record_types, table_name

    out = []
    for name in list_record_types(conn):
        count = conn.execute(f'SELECT count(*) FROM "{table_name(name)}"').fetchone()[0]
        out.append({"type": name, "count": count})
    return out
