"""The whole ``router.toml``: :class:`Config`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, field_validator

from .settings import (
    AdminSettings,
    DatabaseSettings,
    HttpSettings,
    OutboundSettings,
    RouterSettings,
    SmtpSettings,
    TwilioSettings,
)
from .sources import (
    EndpointConfig,
    FormConfig,
    MailboxConfig,
    ScheduleConfig,
    SmsConfig,
    WebhookConfig,
    WhatsAppConfig,
)
from .types import NAME_RE, StrictModel
from .workflows import SOURCE_KINDS, WorkflowConfig

__all__ = ["SOURCE_MODELS", "Config", "check_source_name"]

SourceModel = (
    EndpointConfig | WebhookConfig | FormConfig | MailboxConfig | SmsConfig | WhatsAppConfig | ScheduleConfig
)

SOURCE_MODELS: dict[str, type[StrictModel]] = {
    "endpoints": EndpointConfig,
    "webhooks": WebhookConfig,
    "forms": FormConfig,
    "mailboxes": MailboxConfig,
    "sms": SmsConfig,
    "whatsapp": WhatsAppConfig,
    "schedules": ScheduleConfig,
}
assert tuple(SOURCE_MODELS) == SOURCE_KINDS


def check_source_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ValueError(f"invalid source name {name!r}: use letters, digits, '_' and '-' only")
    return name


class Config(StrictModel):
    """A validated ``router.toml``. Build it with :func:`config.load_config` or
    :func:`config.parse_config`, which also run the cross-checks and report every issue."""

    router: RouterSettings = Field(default_factory=RouterSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    twilio: TwilioSettings = Field(default_factory=TwilioSettings)
    outbound: OutboundSettings = Field(default_factory=OutboundSettings)
    endpoints: dict[str, EndpointConfig] = Field(default_factory=dict)
    webhooks: dict[str, WebhookConfig] = Field(default_factory=dict)
    forms: dict[str, FormConfig] = Field(default_factory=dict)
    mailboxes: dict[str, MailboxConfig] = Field(default_factory=dict)
    sms: dict[str, SmsConfig] = Field(default_factory=dict)
    whatsapp: dict[str, WhatsAppConfig] = Field(default_factory=dict)
    schedules: dict[str, ScheduleConfig] = Field(default_factory=dict)
    workflows: list[WorkflowConfig] = Field(default_factory=list)

    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)
    _path: Path | None = PrivateAttr(default=None)
    _display: str = PrivateAttr(default="router.toml")
    _origins: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator(*SOURCE_KINDS)
    @classmethod
    def _check_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            check_source_name(name)
        return value

    @property
    def raw(self) -> dict[str, Any]:
        """The merged, environment-expanded data (``include`` removed)."""
        return self._raw

    @property
    def path(self) -> Path | None:
        """Absolute path of the main file (None when built from a dict)."""
        return self._path

    @property
    def display(self) -> str:
        """The main file as messages name it (relative to the working directory when inside it)."""
        return self._display

    @property
    def origins(self) -> dict[str, str]:
        """Which file each table came from: ``"http"``, ``"endpoints.invoices"``,
        ``"workflows[0]"`` and ``"workflows.NAME"`` -> file name."""
        return self._origins

    def origin_of(self, key: str) -> str | None:
        """The file a dotted key came from (longest known prefix), if known."""
        while key:
            if key in self._origins:
                return self._origins[key]
            cut = max(key.rfind("."), key.rfind("["))
            key = key[:cut] if cut > 0 else ""
        return None

    def sources(self) -> list[tuple[str, str, SourceModel]]:
        """Every source as ``(kind, name, model)``, in kind order then file order."""
        result: list[tuple[str, str, SourceModel]] = []
        for kind in SOURCE_KINDS:
            table: dict[str, SourceModel] = getattr(self, kind)
            result.extend((kind, name, model) for name, model in table.items())
        return result

    def source_names(self) -> set[str]:
        """``{"endpoints.invoices", "webhooks.payments", …}``."""
        return {f"{kind}.{name}" for kind, name, _ in self.sources()}

    def source(self, ref: str) -> SourceModel | None:
        """The model for ``"KIND.NAME"``, or None."""
        kind, _, name = ref.partition(".")
        table = getattr(self, kind, None) if kind in SOURCE_KINDS else None
        return table.get(name) if isinstance(table, dict) else None
