"""Outbound `send_sms` / `send_whatsapp` (Twilio): option checks and the message to send.

The account comes from `Services.outbound`; the SDK call lives in `engine.actions.twilio_api`.
Failures raise `ActionError`: Twilio 5xx/429 and connection errors are retryable, 4xx are not.
"""

from __future__ import annotations

from functools import partial
from typing import Any, ClassVar
from urllib.parse import urlsplit

import trio

from config import TwilioSettings
from engine.actions.base import Action, ActionContext, ActionError, ActionResult, register
from engine.actions.messaging import TWILIO_TIMEOUT, _is_string_or_strings, _render_list, _text


class _TwilioMessage(Action):
    required: ClassVar[frozenset[str]] = frozenset({"to"})
    optional: ClassVar[frozenset[str]] = frozenset({"body", "from", "media_url", "messaging_service_sid"})
    prefix: ClassVar[str] = ""

    def validate(self, options: dict[str, Any]) -> list[str]:
        problems: list[str] = []
        for key in ("to", "from", "body", "messaging_service_sid"):
            if options.get(key) is not None and not isinstance(options[key], str):
                problems.append(f"{self.name}: {key} must be a string")
        media = options.get("media_url")
        if media is not None and not _is_string_or_strings(media):
            problems.append(f"{self.name}: media_url must be a string or a list of strings")
        if not options.get("body") and not media:
            problems.append(f"{self.name}: give a body, a media_url or both")
        return problems

    def _address(self, value: str) -> str:
        value = "".join(value.split())
        if self.prefix and value and not value.lower().startswith(self.prefix):
            value = self.prefix + value
        return value

    def _default_from(self, settings: TwilioSettings) -> str | None:
        return settings.from_number

    async def execute(self, options: dict[str, Any], ctx: ActionContext) -> ActionResult:
        settings = ctx.services.twilio
        if not settings.account_sid or not settings.auth_token:
            raise ActionError(
                f"{self.name}: Twilio is not configured (account_sid and auth_token)", retryable=False
            )
        to = self._address(_text(ctx, options.get("to")))
        if not to or to == self.prefix:
            raise ActionError(f"{self.name}: to rendered empty", retryable=False)
        sender = self._address(_text(ctx, options.get("from")) or self._default_from(settings) or "")
        service = _text(ctx, options.get("messaging_service_sid")).strip()
        if not sender and not service:
            raise ActionError(
                f"{self.name}: no sender (set from, or the Twilio default from number)", retryable=False
            )
        body = _text(ctx, options.get("body"))
        media = options.get("media_url")
        media_urls = [u.strip() for u in _render_list(ctx, media) if u.strip()] if media is not None else []
        for media_url in media_urls:
            if urlsplit(media_url).scheme.lower() not in ("http", "https"):
                raise ActionError(
                    f"{self.name}: media_url must be an http(s) URL, got {media_url[:100]!r}", retryable=False
                )
        if not body and not media_urls:
            raise ActionError(f"{self.name}: nothing to send (body and media_url are empty)", retryable=False)

        kwargs: dict[str, Any] = {"to": to}
        if sender:
            kwargs["from_"] = sender
        if service:
            kwargs["messaging_service_sid"] = service
        if body:
            kwargs["body"] = body
        if media_urls:
            kwargs["media_url"] = media_urls
        from engine.actions import twilio_api  # the SDK loads on the first message, not at start-up

        send = partial(
            twilio_api.create_message,
            settings.account_sid,
            settings.auth_token,
            settings.api_base,
            TWILIO_TIMEOUT,
            f"{self.name} to {to}",
            kwargs,
        )
        message = await trio.to_thread.run_sync(send)
        status = getattr(message.status, "value", message.status)
        output = {
            "sid": message.sid,
            "status": status,
            "to": to,
            "from": sender or None,
            "num_media": len(media_urls),
        }
        return ActionResult(output=output)


@register
class SendSms(_TwilioMessage):
    name: ClassVar[str] = "send_sms"


@register
class SendWhatsapp(_TwilioMessage):
    name: ClassVar[str] = "send_whatsapp"
    prefix: ClassVar[str] = "whatsapp:"

    def _default_from(self, settings: TwilioSettings) -> str | None:
        return settings.whatsapp_from or settings.from_number
