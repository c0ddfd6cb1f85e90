"""Read models for the admin API and the dashboard: plain functions of a connection.

Everything the admin shows is read from the journal and the sources table, so it is the same
whether the work was done by this process, an HTTP worker process or the CLI.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from config import Config
from router import sources
from router.storage import Tx
from router.storage.rows import Signal

SECRET_HEADER = re.compile(
    r"authori[sz]ation|cookie|token|api[-_]?key|secret|signature|hmac|passw(or)?d|x-twilio-signature",
    re.IGNORECASE,
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
        return {
            k: (MASK if SECRET_FIELD.search(str(k)) and v not in (None, "") else mask_fields(v, depth + 1))
            for k, v in value.items()
        }
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
    email = data.get("incoming_email")
    if not headers and isinstance(email, dict) and isinstance(email.get("headers"), dict):
        headers = mask_headers(
            {k: ", ".join(map(str, v)) if isinstance(v, list) else v for k, v in email["headers"].items()}
        )
    return {"payload": mask_fields(payload), "headers": headers, "meta": meta}


SHOWN = 16 * 1024  # what the inspector page shows of a body; the download has all of it
_KEY = r"[\w.\-]*(?:secret|passw(?:or)?d|token|authori[sz]ation|api[-_]?key|cookie)[\w.\-]*"
_JSON_SECRET = re.compile(r'("' + _KEY + r'"\s*:\s*)"(?:[^"\\]|\\.)*"', re.IGNORECASE)
_FORM_SECRET = re.compile(r"(^|&)(" + _KEY + r")=[^&]*", re.IGNORECASE)


def mask_raw(text: str) -> str:
    """A body as received, with the values of secret-named JSON string fields and form fields
    masked as the parsed view masks them (the download is the exact bytes)."""
    text = _JSON_SECRET.sub(lambda m: f'{m.group(1)}"{MASK}"', text)
    return _FORM_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}={MASK}", text)


def _capped(text: str) -> dict[str, Any]:
    return {"text": text[:SHOWN], "size": len(text.encode()), "truncated": len(text) > SHOWN}


def request_view(sig: Signal, raw: bytes | None) -> dict[str, Any]:
    """The request as it arrived and our answer, for the top of the inspector."""
    data = sig.entity.data
    email = data.get("incoming_email") if isinstance(data.get("incoming_email"), dict) else None
    path = str(data.get("__path") or "")
    parts = path.split("/")
    if len(parts) == 4 and parts[1] == "listener":  # the endpoint's URL hashes are its credential
        path = f"/listener/{parts[2][:4]}…/{parts[3][:4]}…"
    query = data.get("__query") if isinstance(data.get("__query"), dict) else {}
    view: dict[str, Any] = {
        "method": data.get("__method") or ("SMTP" if email else ""),
        "path": path or (", ".join(email.get("envelope", {}).get("rcpt_to", [])) if email else ""),
        "query": mask_fields(query),
        "remote": data.get("__remote_addr") or "",
        "body": None,
        "answer": None,
    }
    if raw is not None:
        view["body"] = _capped(mask_raw(raw.decode("utf-8", "replace"))) | {"size": len(raw)}
    if sig.ack:
        headers = [
            [k, mask_value(v) if SECRET_HEADER.search(str(k)) else v] for k, v in sig.ack.get("headers", [])
        ]
        view["answer"] = {
            "status": sig.ack.get("status"),
            "headers": headers,
            "body": _capped(str(sig.ack.get("body", ""))),
        }
    return view


def list_sources(cfg: Config, tx: Tx, workflows: list[Any] | None = None) -> list[dict[str, Any]]:
    items = sources.describe(cfg, tx.source_states())
    stats = tx.source_stats()
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


def signal_row(s: Signal) -> dict[str, Any]:
    return s.summary() | {"updated_at": s.updated_at}


def list_signals(
    tx: Tx,
    *,
    source: str | None = None,
    status: str | None = None,
    since: str | None = None,
    until: str | None = None,
    before: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    rows = tx.list_signals(source=source, status=status, since=since, until=until, before=before, limit=limit)
    return [signal_row(s) for s in rows]


def signal_detail(tx: Tx, signal_id: str) -> dict[str, Any] | None:
    sig = tx.get_signal(signal_id)
    if sig is None:
        return None
    item = sig.summary()
    item["updated_at"] = sig.updated_at
    item["entity"] = mask_fields({k: v for k, v in sig.entity.data.items() if k != "__headers"}) | (
        {"__headers": mask_headers(sig.entity.data["__headers"])}
        if isinstance(sig.entity.data.get("__headers"), dict)
        else {}
    )
    item["view"] = split_entity(sig.entity.data)
    item["request"] = request_view(sig, tx.signal_body(signal_id))
    item["runs"] = tx.runs_for(signal_id)
    item["replayable"] = sig.status in ("failed", "done")
    item["ack"] = sig.ack
    return item


def record_types(tx: Tx) -> list[dict[str, Any]]:
    return [{"type": name, "count": tx.record_count(name)} for name in tx.record_types()]
