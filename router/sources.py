"""Per-source state kept in the data dir: endpoint hashes, webhook keys, activation.

The config says which sources exist; this table remembers their generated credentials (made on
first start, never in the config file) and any activate/deactivate done from the CLI or the
admin API. `active` NULL means "as the config says".
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from config import Config
from config.sources import EndpointConfig, MailboxConfig, ScheduleConfig, WebhookConfig

HTTP_KINDS = ("endpoints", "webhooks", "forms", "sms", "whatsapp")
ALL_KINDS = (*HTTP_KINDS, "mailboxes", "schedules")


def new_hash() -> str:
    return secrets.token_hex(20)  # 160 bits


def new_api_key() -> str:
    return secrets.token_urlsafe(32)  # 32 random bytes, base64url


@dataclass
class SourceState:
    kind: str
    name: str
    first_hash: str | None
    second_hash: str | None
    api_key: str | None
    active_override: bool | None


def ensure_sources(conn: sqlite3.Connection, cfg: Config) -> None:
    """Create rows (and credentials) for sources seen for the first time."""
    now = time.time()
    for kind, name, model in cfg.sources():
        row = conn.execute("SELECT * FROM sources WHERE kind = ? AND name = ?", (kind, name)).fetchone()
        pinned = getattr(model, "api_key", None)
        if row is None:
            conn.execute(
                "INSERT INTO sources (kind, name, first_hash, second_hash, api_key, active, updated_at)"
                " VALUES (?, ?, ?, ?, ?, NULL, ?)",
                (
                    kind,
                    name,
                    new_hash() if kind == "endpoints" else None,
                    new_hash() if kind == "endpoints" else None,
                    pinned or new_api_key() if kind == "webhooks" else None,
                    now,
                ),
            )
        elif kind == "webhooks" and pinned and row["api_key"] != pinned:
            conn.execute(
                "UPDATE sources SET api_key = ?, updated_at = ? WHERE kind = ? AND name = ?", (pinned, now, kind, name)
            )


def load_states(conn: sqlite3.Connection) -> dict[tuple[str, str], SourceState]:
    out = {}
    for row in conn.execute("SELECT * FROM sources"):
        override = None if row["active"] is None else bool(row["active"])
        out[(row["kind"], row["name"])] = SourceState(
            row["kind"], row["name"], row["first_hash"], row["second_hash"], row["api_key"], override
        )
    return out


def state_version(conn: sqlite3.Connection) -> float:
    row = conn.execute("SELECT coalesce(max(updated_at), 0), count(*) FROM sources").fetchone()
    return float(row[0]) + row[1] * 1e-9


def set_active(conn: sqlite3.Connection, kind: str, name: str, active: bool) -> bool:
    cur = conn.execute(
        "UPDATE sources SET active = ?, updated_at = ? WHERE kind = ? AND name = ?",
        (int(active), time.time(), kind, name),
    )
    return cur.rowcount == 1


def rotate(conn: sqlite3.Connection, kind: str, name: str) -> dict[str, str]:
    """New hashes (endpoints) or API key (webhooks); the old URL or key stops working."""
    now = time.time()
    if kind == "endpoints":
        first, second = new_hash(), new_hash()
        conn.execute(
            "UPDATE sources SET first_hash = ?, second_hash = ?, updated_at = ? WHERE kind = ? AND name = ?",
            (first, second, now, kind, name),
        )
        return {"first_hash": first, "second_hash": second}
    if kind == "webhooks":
        key = new_api_key()
        conn.execute("UPDATE sources SET api_key = ?, updated_at = ? WHERE kind = ? AND name = ?", (key, now, kind, name))
        return {"api_key": key}
    raise ValueError(f"{kind} sources have no credentials to rotate")


def is_active(model: Any, state: SourceState | None) -> bool:
    if state is not None and state.active_override is not None:
        return state.active_override
    return bool(getattr(model, "active", True))


def resolve_name(cfg: Config, name: str) -> tuple[str, str]:
    """`invoices` or `endpoints.invoices` → (kind, name); ambiguous or unknown → ValueError."""
    if "." in name:
        kind, _, short = name.partition(".")
        if (kind, short) in {(k, n) for k, n, _ in cfg.sources()}:
            return kind, short
        raise ValueError(f"no source {name!r}")
    matches = [(k, n) for k, n, _ in cfg.sources() if n == name]
    if not matches:
        known = ", ".join(sorted(f"{k}.{n}" for k, n, _ in cfg.sources())) or "none"
        raise ValueError(f"no source named {name!r} (known: {known})")
    if len(matches) > 1:
        raise ValueError(f"{name!r} is ambiguous: " + ", ".join(f"{k}.{n}" for k, n in matches))
    return matches[0]


def describe(cfg: Config, states: dict[tuple[str, str], SourceState]) -> list[dict[str, Any]]:
    """Every source with its URL or address, state and credentials (`router endpoints`)."""
    base = cfg.router.public_url.rstrip("/")
    out: list[dict[str, Any]] = []
    for kind, name, model in cfg.sources():
        state = states.get((kind, name))
        item: dict[str, Any] = {"kind": kind, "name": name, "source": f"{kind}.{name}", "active": is_active(model, state)}
        if isinstance(model, EndpointConfig):
            if state and state.first_hash:
                item["url"] = f"{base}/listener/{state.first_hash}/{state.second_hash}"
            item["return_type"] = model.return_type
            if model.add_authentication:
                item["endpoint_key"] = _rendered(model.endpoint_key or "")  # the JWT iss callers must use
        elif isinstance(model, WebhookConfig):
            if state and state.api_key:
                item["url"] = f"{base}/webhooks/incoming/{name}?apiKey={state.api_key}"
                item["api_key"] = state.api_key
        elif kind in ("forms", "sms", "whatsapp"):
            item["url"] = f"{base}/{kind}/{name}"
        elif isinstance(model, MailboxConfig):
            item["address"] = ", ".join(model.address)
        elif isinstance(model, ScheduleConfig):
            item["address"] = model.cron or (f"every {model.every:g}s" if model.every else str(model.at))
        out.append(item)
    return out


def _rendered(template: str) -> str:
    from engine.templates import TemplateEngine

    return TemplateEngine().render(template, {})
