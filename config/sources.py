"""Source tables: ``[endpoints.NAME]``, ``[webhooks.NAME]``, ``[forms.NAME]``,
``[mailboxes.NAME]``, ``[sms.NAME]``, ``[whatsapp.NAME]``, ``[schedules.NAME]``."""

from __future__ import annotations

import difflib
import re
from datetime import date, datetime
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import Field, StrictBool, field_validator

from .cron import normalize_crontab, validate_crontab
from .passwords import check_password_hash
from .types import Duration, PositiveDuration, Rate, Size, StrictModel, StrList, check_network, check_origin

__all__ = [
    "SIGNATURE_SCHEMES",
    "EndpointConfig",
    "FormConfig",
    "HttpSourceOptions",
    "MailboxConfig",
    "ScheduleConfig",
    "SmsConfig",
    "WebhookConfig",
    "WhatsAppConfig",
]

SIGNATURE_SCHEMES = ("github", "stripe", "shopify", "slack", "standard-webhooks", "hmac-sha256")
SignatureScheme = Literal["github", "stripe", "shopify", "slack", "standard-webhooks", "hmac-sha256"]

_LOCAL_RE = re.compile(r"^(\*|[^@\s*]+)$")
_DOMAIN_RE = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]"
    r"(?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)
_PHONE_RE = re.compile(r"^\+[1-9]\d{6,14}$")


class HttpSourceOptions(StrictModel):
    """Options shared by every HTTP-fed source (endpoints, webhooks, forms, sms, whatsapp)."""

    active: StrictBool = True
    description: str = ""
    max_body: Size | None = None
    rate_limit: Rate = None
    rate_burst: int | None = Field(default=None, ge=1)
    signature: SignatureScheme | None = None
    # A list during a provider's rotation: any one verifying is enough. Empty entries are dropped,
    # so an optional `"${OLD_SECRET:-}"` can stay in the list when the old secret is gone.
    signing_secret: str | list[str] | None = None
    signature_header: str | None = None
    signature_prefix: str = ""
    signature_encoding: Literal["hex", "base64"] = "hex"
    dedup_key: str | None = None
    # Who may call: any of these given is required (channels/http/access.py).
    allow_ips: StrList = Field(default_factory=list)
    basic_auth: str | None = None  # "user:password" or "user:pbkdf2_sha256$…"
    auth_header: str | None = None  # e.g. "X-Token", compared with auth_token
    auth_token: str | None = None

    @field_validator("signing_secret", mode="before")
    @classmethod
    def _secret_or_list(cls, value: object) -> object:
        if value is None or isinstance(value, str):
            return value
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValueError(
                'expected a secret or a list of secrets, e.g. ["${NEW_SECRET}", "${OLD_SECRET:-}"]'
            )
        return [item for item in value if item]

    @field_validator("allow_ips")
    @classmethod
    def _check_ips(cls, value: list[str]) -> list[str]:
        return [check_network(item) for item in value]

    @field_validator("basic_auth")
    @classmethod
    def _check_basic(cls, value: str | None) -> str | None:
        if value is None:
            return None
        user, sep, secret = value.partition(":")
        if not sep or not user or not secret:
            raise ValueError('expected "user:password" or "user:pbkdf2_sha256$…" (both parts non-empty)')
        if secret.startswith("pbkdf2_sha256$"):
            check_password_hash(secret)
        return value

    @field_validator("auth_header")
    @classmethod
    def _check_header(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", value):
            raise ValueError(f"{value!r} is not a header name")
        if value is not None and value.lower() in ("authorization", "cookie", "host", "content-type"):
            raise ValueError(f"{value!r} is not free for a token: choose e.g. X-Token")
        return value

    def rule_problems(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if (self.auth_header is None) != (self.auth_token is None) or self.auth_token == "":
            missing = "auth_token" if self.auth_header is not None else "auth_header"
            problems.append((missing, 'set auth_header (e.g. "X-Token") and a non-empty auth_token together'))
        if self.signature is not None and not self.signing_secret:
            problems.append(
                (
                    "signing_secret",
                    f'signature = "{self.signature}" needs signing_secret (e.g. "${{SIGNING_SECRET}}")',
                )
            )
        if self.rate_burst is not None and self.rate_limit is None:
            problems.append(("rate_burst", 'rate_burst needs rate_limit (e.g. rate_limit = "10/s")'))
        return problems


class EndpointConfig(HttpSourceOptions):
    """``[endpoints.NAME]``: a dynamic endpoint ``/listener/{first_hash}/{second_hash}``."""

    return_type: Literal["data", "html", "redirect", "continue", "sse"] = "data"
    return_data: str = ""
    return_html: str = ""
    return_redirect: str = ""
    add_authentication: StrictBool = False
    # Unset: generated on first start and kept in the data dir (router/sources.py); set: pinned.
    endpoint_key: str | None = None
    endpoint_secret: str | None = None
    allow_cors: StrictBool = False
    cors_domains: str = ""
    response_timeout: PositiveDuration = 20.0

    @field_validator("cors_domains")
    @classmethod
    def _check_cors(cls, value: str) -> str:
        items = [item.strip() for item in value.split(",") if item.strip()]
        if "*" in items and len(items) > 1:
            raise ValueError('use "*" alone or a comma-separated list of origins, not both')
        return ",".join(item if item == "*" else check_origin(item) for item in items)

    @property
    def cors_origins(self) -> list[str]:
        """``cors_domains`` as a list (``["*"]`` for any origin, ``[]`` for none)."""
        return [item for item in self.cors_domains.split(",") if item]

    def rule_problems(self) -> list[tuple[str, str]]:
        problems = super().rule_problems()
        if self.return_type == "redirect" and not self.return_redirect.strip():
            problems.append(
                ("return_redirect", 'return_type = "redirect" needs a non-empty return_redirect URL')
            )
        if self.allow_cors and not self.cors_domains:
            problems.append(("cors_domains", 'allow_cors = true needs cors_domains: origins or "*"'))
        return problems


class WebhookConfig(HttpSourceOptions):
    """``[webhooks.NAME]``: an API-key webhook ``/webhooks/incoming/{webhook_id}``."""

    api_key: str | None = None

    @field_validator("api_key")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None


class FormConfig(HttpSourceOptions):
    """``[forms.NAME]``: an HTML form target ``/forms/{name}``."""

    redirect: str = ""
    honeypot: str = "website"
    allowed_origins: StrList = Field(default_factory=list)

    @field_validator("allowed_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        return [check_origin(origin) for origin in value]


def _check_phone(value: str | None) -> str | None:
    if value is None:
        return None
    number = value.strip()
    bare = number.removeprefix("whatsapp:")
    if not _PHONE_RE.match(bare):
        raise ValueError(f'invalid phone number {value!r}: use E.164 like "+15551234567"')
    return number


class SmsConfig(HttpSourceOptions):
    """``[sms.NAME]``: a Twilio SMS webhook ``/sms/{name}``."""

    number: str | None = None

    _check_number = field_validator("number")(classmethod(lambda cls, v: _check_phone(v)))


class WhatsAppConfig(HttpSourceOptions):
    """``[whatsapp.NAME]``: a Twilio WhatsApp webhook ``/whatsapp/{name}``."""

    number: str | None = None

    _check_number = field_validator("number")(classmethod(lambda cls, v: _check_phone(v)))


class MailboxConfig(StrictModel):
    """``[mailboxes.NAME]``: recipients accepted by the SMTP server.

    ``address`` may be one string or a list in the file; it is always a list here.
    """

    active: StrictBool = True
    description: str = ""
    address: StrList = Field(min_length=1)

    @field_validator("address")
    @classmethod
    def _check_addresses(cls, value: list[str]) -> list[str]:
        result = []
        for address in value:
            local, at, domain = address.strip().rpartition("@")
            if not at or not _LOCAL_RE.match(local) or not _DOMAIN_RE.match(domain):
                raise ValueError(
                    f"invalid mailbox address {address!r}: use an exact address like "
                    '"support@example.com" or a whole domain like "*@example.com"'
                )
            result.append(f"{local}@{domain.lower()}")
        return result

    def matches(self, recipient: str) -> bool:
        """True when ``recipient`` is one of the addresses (case-insensitive, ``*@domain`` wildcards)."""
        local, _, domain = recipient.strip().strip("<>").rpartition("@")
        domain = domain.lower().rstrip(".")
        for address in self.address:
            want_local, _, want_domain = address.rpartition("@")
            if want_domain == domain and (want_local == "*" or want_local.lower() == local.lower()):
                return True
        return False


@lru_cache(maxsize=1)
def _zone_names() -> list[str]:
    return sorted(available_timezones())


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(name, _zone_names(), n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        raise ValueError(
            f'unknown time zone {name!r}{hint}; use an IANA name such as "UTC" or "Europe/Tirane"'
        ) from None
    return name


def _parse_at(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f'invalid date-time {value!r}: use ISO 8601 with an offset, e.g. "2026-12-01T09:00:00+01:00"'
            ) from None
    if isinstance(value, date) and not isinstance(value, datetime):
        raise ValueError(f"{value} is a date without a time; use e.g. {value}T09:00:00+01:00")
    if isinstance(value, datetime) and value.utcoffset() is None:
        raise ValueError(
            f"{value.isoformat()} has no UTC offset; add one, e.g. {value.isoformat()}+01:00 or Z"
        )
    return value


class ScheduleConfig(StrictModel):
    """``[schedules.NAME]``: exactly one of ``cron``, ``every`` or ``at``."""

    active: StrictBool = True
    description: str = ""
    cron: str | None = None
    every: PositiveDuration | None = None
    at: datetime | None = None
    timezone: str = "UTC"
    jitter: Duration = 0.0
    misfire_grace: Duration = 60.0
    coalesce: StrictBool = True

    _check_tz = field_validator("timezone")(classmethod(lambda cls, v: _check_timezone(v)))
    _check_at = field_validator("at", mode="before")(classmethod(lambda cls, v: _parse_at(v)))

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        validate_crontab(value)
        return " ".join(value.split())

    @property
    def kind(self) -> Literal["cron", "every", "at"]:
        if self.cron is not None:
            return "cron"
        return "every" if self.every is not None else "at"

    @property
    def crontab(self) -> str | None:
        """``cron`` with aliases expanded and weekdays spelled as names, safe for APScheduler 3's
        ``CronTrigger.from_crontab`` (which otherwise reads 0 as Monday)."""
        return None if self.cron is None else normalize_crontab(self.cron)

    def build_trigger(self) -> Any:
        """An APScheduler 3 trigger (cron, interval or date) with timezone and jitter applied."""
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.date import DateTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        tz = ZoneInfo(self.timezone)
        jitter = int(self.jitter) or None
        if self.crontab is not None:
            minute, hour, day, month, day_of_week = self.crontab.split(" ")
            return CronTrigger(
                minute=minute,
                hour=hour,
                day=day,
                month=month,
                day_of_week=day_of_week,
                timezone=tz,
                jitter=jitter,
            )
        if self.every is not None:
            return IntervalTrigger(seconds=self.every, timezone=tz, jitter=jitter)
        return DateTrigger(run_date=self.at, timezone=tz)

    def rule_problems(self) -> list[tuple[str, str]]:
        chosen = [key for key in ("cron", "every", "at") if getattr(self, key) is not None]
        if len(chosen) != 1:
            found = "none of them" if not chosen else " and ".join(chosen)
            return [
                (
                    "",
                    f'set exactly one of cron, every or at (found {found}); e.g. cron = "0 2 * * *", '
                    'every = "30s" or at = "2026-12-01T09:00:00+01:00"',
                )
            ]
        return []
