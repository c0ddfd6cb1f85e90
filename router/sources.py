"""Per-source state kept in the data dir: endpoint hashes, webhook keys, activation.

The config says which sources exist; this table remembers their generated credentials (made on
first start, never in the config file) and any activate/deactivate done from the CLI or the
admin API. `active` NULL means "as the config says".
"""

from __future__ import annotations

import secrets
from typing import Any

from config import Config
from config.sources import EndpointConfig, MailboxConfig, ScheduleConfig, WebhookConfig
from router.storage.base import Tx
from router.storage.rows import SourceState

HTTP_KINDS = ("endpoints", "webhooks", "forms", "sms", "whatsapp")
ALL_KINDS = (*HTTP_KINDS, "mailboxes", "schedules")


def new_hash() -> str:
    return secrets.token_hex(20)  # 160 bits


def new_api_key() -> str:
    return secrets.token_urlsafe(32)  # 32 random bytes, base64url


def ensure_sources(tx: Tx, cfg: Config) -> None:
    """Create rows (and credentials) for sources seen for the first time; apply pinned API keys."""
    for kind, name, model in cfg.sources():
        pinned = getattr(model, "api_key", None)
        tx.source_add(
            kind,
            name,
            first_hash=new_hash() if kind == "endpoints" else None,
            second_hash=new_hash() if kind == "endpoints" else None,
            api_key=pinned or new_api_key() if kind == "webhooks" else None,
        )
        if kind == "webhooks" and pinned:
            tx.source_pin_api_key(kind, name, pinned)


def rotate(tx: Tx, kind: str, name: str) -> dict[str, str]:
    """New hashes (endpoints) or API key (webhooks); the old URL or key stops working."""
    if kind == "endpoints":
        fresh = {"first_hash": new_hash(), "second_hash": new_hash()}
    elif kind == "webhooks":
        fresh = {"api_key": new_api_key()}
    else:
        raise ValueError(f"{kind} sources have no credentials to rotate")
    tx.source_set_credentials(kind, name, **fresh)
    return fresh


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
        item: dict[str, Any] = {
            "kind": kind,
            "name": name,
            "source": f"{kind}.{name}",
            "active": is_active(model, state),
        }
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
