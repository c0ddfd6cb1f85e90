"""``router.toml``: schema, loading, ``${ENV}`` interpolation, includes and validation.

from config import load_config, parse_config, Config, ConfigError, ConfigIssue
"""

from .errors import ConfigError, ConfigIssue
from .loader import load_config, parse_config
from .schema import SOURCE_MODELS, Config
from .settings import (
    AdminSettings,
    HttpSettings,
    OutboundSettings,
    OutboundSmtpSettings,
    RouterSettings,
    SmtpSettings,
    TwilioSettings,
)
from .sources import (
    EndpointConfig,
    FormConfig,
    HttpSourceOptions,
    MailboxConfig,
    ScheduleConfig,
    SmsConfig,
    WebhookConfig,
    WhatsAppConfig,
)
from .workflows import LISTEN_KINDS, SOURCE_KINDS, StepConfig, WorkflowConfig

__all__ = [
    "LISTEN_KINDS",
    "SOURCE_KINDS",
    "SOURCE_MODELS",
    "AdminSettings",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "EndpointConfig",
    "FormConfig",
    "HttpSettings",
    "HttpSourceOptions",
    "MailboxConfig",
    "OutboundSettings",
    "OutboundSmtpSettings",
    "RouterSettings",
    "ScheduleConfig",
    "SmsConfig",
    "SmtpSettings",
    "StepConfig",
    "TwilioSettings",
    "WebhookConfig",
    "WhatsAppConfig",
    "WorkflowConfig",
    "load_config",
    "parse_config",
]
