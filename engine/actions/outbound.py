"""Outbound actions (SPEC §8): `webhook`, `send_email`, `send_sms`, `send_whatsapp`.

Importing this module registers all four in `engine.actions.base.REGISTRY`. The code lives in
`engine.actions.webhook` (HTTP) and `engine.actions.messaging` (SMTP) and `engine.actions.sms` (Twilio).
"""

from engine.actions.messaging import SendEmail, build_email
from engine.actions.sms import SendSms, SendWhatsapp
from engine.actions.webhook import Webhook, WebhookError, redact_url

__all__ = [
    "SendEmail",
    "SendSms",
    "SendWhatsapp",
    "Webhook",
    "WebhookError",
    "build_email",
    "redact_url",
]
