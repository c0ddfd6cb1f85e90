"""Per-source state kept in the data dir: endpoint hashes and JWT pairs, webhook keys, activation.

The config says which sources exist; this table remembers their generated credentials (made on
first start, never in the config file) and any activate/deactivate done from the CLI or the
admin API. `active` NULL means "as the config says". A credential the config sets (`[webhooks]
api_key`, `endpoint_key`, `endpoint_secret`) is pinned: it wins over the generated one and is
never rotated here.

A rotation with a grace period keeps the replaced credentials in the row until the grace ends;
every HTTP process compares the deadline with its clock per request, so expiry needs no change
to propagate (the new credentials reach other processes through `sources_version`).
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any

from config import Config
from config.sources import EndpointConfig, MailboxConfig, ScheduleConfig, WebhookConfig
from config.units import parse_duration
from router.storage.base import Tx
from router.storage.rows import SourceState

HTTP_KINDS = ("endpoints", "webhooks", "forms", "sms", "whatsapp")
ALL_KINDS = (*HTTP_KINDS, "mailboxes", "schedules")


def new_hash() -> str:
    return secrets.token_hex(20)  # 160 bits


def new_api_key() -> str:
    return secrets.token_urlsafe(32)  # 32 random bytes, base64url


def new_jwt_key(name: str) -> str:
    """The JWT `iss` callers send: readable (the endpoint's name) and unique per rotation."""
    return f"{name}-{secrets.token_hex(4)}"


def new_jwt_secret() -> str:
    # 64 random bytes: PyJWT warns on an HMAC key shorter than its hash (32 bytes for HS256, 64 for HS512).
    return secrets.token_urlsafe(64)


MAX_GRACE = 30 * 86400.0


def parse_grace(value: object) -> float:
    """`--grace 1h`, `{"grace": "90s"}` or seconds; 0 (the default) ends the old ones at once."""
    if value is None or value == "":
        return 0.0
    seconds = parse_duration(value)
    if not 0 <= seconds <= MAX_GRACE:
        raise ValueError(f"grace must be between 0 and 30d, not {value!r}")
    return seconds


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
        if kind == "endpoints":  # every endpoint has a pair, so add_authentication works when turned on
            tx.source_fill_jwt(kind, name, new_jwt_key(name), new_jwt_secret())
        if kind == "webhooks" and pinned:
            tx.source_pin_api_key(kind, name, pinned)


def rotate(tx: Tx, cfg: Config, kind: str, name: str, grace: float = 0.0) -> dict[str, Any]:
    """New hashes and JWT pair (endpoints) or API key (webhooks), valid at once. The old ones stop
    now, or after `grace` seconds; an earlier rotation's grace ends now either way."""
    model = next(m for k, n, m in cfg.sources() if (k, n) == (kind, name))
    fresh: dict[str, str] = {}
    if isinstance(model, EndpointConfig):
        fresh = {"first_hash": new_hash(), "second_hash": new_hash()}
        if not model.endpoint_key:
            fresh["jwt_key"] = new_jwt_key(name)
        if not model.endpoint_secret:
            fresh["jwt_secret"] = new_jwt_secret()
    elif isinstance(model, WebhookConfig):
        if model.api_key:
            raise ValueError(
                f"{kind}.{name}'s api_key is pinned in the config: change it there "
                "(or remove it to have one generated and rotated here)"
            )
        fresh = {"api_key": new_api_key()}
    else:
        raise ValueError(f"{kind} sources have no credentials to rotate")
    until = tx.now() + grace if grace > 0 else None
    tx.source_set_credentials(kind, name, **fresh, keep_old_until=until)
    out: dict[str, Any] = {k: v for k, v in fresh.items() if not k.startswith("jwt_")}
    if until is not None:
        out["grace_until"] = _iso(until)
    return out


def jwt_pair(model: EndpointConfig, state: SourceState | None) -> tuple[str, str]:
    """The (iss, secret) an endpoint checks now: the config's if it sets them, else the generated."""
    key = _rendered(model.endpoint_key) if model.endpoint_key else (state.jwt_key if state else None)
    secret = (
        _rendered(model.endpoint_secret) if model.endpoint_secret else (state.jwt_secret if state else None)
    )
    return key or "", secret or ""


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
    """Every source with its URL or address, state and credentials (`router endpoints`). A secret
    the config pins is never shown (its owner has it); generated ones are."""
    base = cfg.router.public_url.rstrip("/")
    now = time.time()
    out: list[dict[str, Any]] = []
    for kind, name, model in cfg.sources():
        state = states.get((kind, name))
        item: dict[str, Any] = {
            "kind": kind,
            "name": name,
            "source": f"{kind}.{name}",
            "active": is_active(model, state),
        }
        previous = state.grace(now) if state else None
        old: dict[str, Any] = {}
        if isinstance(model, EndpointConfig):
            if state and state.first_hash:
                item["url"] = f"{base}/listener/{state.first_hash}/{state.second_hash}"
            item["return_type"] = model.return_type
            if previous and previous.first_hash:
                old["url"] = f"{base}/listener/{previous.first_hash}/{previous.second_hash}"
            if model.add_authentication:
                key, secret = jwt_pair(model, state)
                item["endpoint_key"] = key  # the JWT iss callers must use
                if not model.endpoint_secret:
                    item["endpoint_secret"] = secret
                item["pinned"] = [k for k in ("endpoint_key", "endpoint_secret") if getattr(model, k)]
                if previous and (previous.jwt_key or previous.jwt_secret):
                    old["endpoint_key"] = previous.jwt_key or key
                    if previous.jwt_secret:
                        old["endpoint_secret"] = previous.jwt_secret
        elif isinstance(model, WebhookConfig):
            if state and state.api_key:
                item["url"] = f"{base}/webhooks/incoming/{name}?apiKey={state.api_key}"
                item["api_key"] = state.api_key
            item["pinned"] = ["api_key"] if model.api_key else []
            if previous and previous.api_key:
                old = {
                    "url": f"{base}/webhooks/incoming/{name}?apiKey={previous.api_key}",
                    "api_key": previous.api_key,
                }
        elif kind in ("forms", "sms", "whatsapp"):
            item["url"] = f"{base}/{kind}/{name}"
        elif isinstance(model, MailboxConfig):
            item["address"] = ", ".join(model.address)
        elif isinstance(model, ScheduleConfig):
            item["address"] = model.cron or (f"every {model.every:g}s" if model.every else str(model.at))
        if previous and old:
            item["previous"] = {
                **old,
                "expires_at": _iso(previous.until),
                "expires_in": round(previous.until - now),
            }
        out.append(item)
    return out


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _rendered(template: str) -> str:
    from engine.templates import TemplateEngine

    return TemplateEngine().render(template, {})
