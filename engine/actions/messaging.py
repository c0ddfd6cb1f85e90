"""Outbound messages: `send_email` (SMTP) and `send_sms` / `send_whatsapp` (Twilio).

Both libraries are blocking, so each send runs in a worker thread (`trio.to_thread.run_sync`).
Where the mail goes and which Twilio account is used come from `Services.smtp` and
`Services.twilio` (the config's `[outbound.smtp]` and `[twilio]` models); the step only says
what to send.

Failures raise `ActionError`: temporary ones (SMTP 4xx, Twilio 5xx/429, connection errors,
timeouts) with `retryable=True`; permanent ones (SMTP 5xx, Twilio 4xx, bad addresses) with
`retryable=False`.
"""

from __future__ import annotations

import smtplib
import ssl
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime, getaddresses, make_msgid
from typing import Any, ClassVar

import trio

from config import OutboundSmtpSettings
from engine.actions.base import Action, ActionContext, ActionError, ActionResult, register

TWILIO_TIMEOUT = 30.0
# Headers the action builds itself; `headers` may not set them.
RESERVED_HEADERS = frozenset(
    {
        "from", "to", "cc", "bcc", "reply-to", "subject", "date", "message-id", "mime-version",
        "content-type", "content-transfer-encoding", "sender",
    }
)  # fmt: skip


def _text(ctx: ActionContext, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return ctx.render(value)
    return str(value)


def _html(ctx: ActionContext, value: Any) -> str:
    """HTML bodies autoescape the values they interpolate when the runner offers `render_html`."""
    if isinstance(value, str) and ctx.render_html is not None:
        return ctx.render_html(value)
    return _text(ctx, value)


def _one_line(value: str) -> str:
    """Header values never carry line breaks (no header injection from caller data)."""
    return " ".join(value.replace("\0", " ").split())


def _render_list(ctx: ActionContext, value: Any) -> list[str]:
    """A string or list of strings, each a template. An item that is exactly one expression may
    yield a list (e.g. `"{{ __data.recipients }}"`): its elements are taken as they are."""
    items = value if isinstance(value, list) else [value]
    result: list[str] = []
    for item in items:
        rendered = ctx.render_value(item) if isinstance(item, str) else item
        for one in rendered if isinstance(rendered, list | tuple) else [rendered]:
            if one is not None:
                result.append(one if isinstance(one, str) else str(one))
    return result


def _is_string_or_strings(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


# -- email -----------------------------------------------------------------------------------


def _addresses(ctx: ActionContext, key: str, value: Any) -> list[Address]:
    """`value` is a string ("a@x, Name <b@y>") or a list of such strings; each is a template."""
    if value is None:
        return []
    return _parse_addresses(key, _render_list(ctx, value))


def _parse_addresses(key: str, texts: list[str]) -> list[Address]:
    texts = [_one_line(text) for text in texts]
    result: list[Address] = []
    for name, addr in getaddresses([t for t in texts if t]):
        if not addr and not name:
            continue
        try:
            address = Address(display_name=name, addr_spec=addr)
        except (ValueError, IndexError, TypeError) as exc:
            raise ActionError(
                f"send_email: {key}: invalid address {addr or name!r} ({exc})", retryable=False
            ) from None
        if "@" not in address.addr_spec or not address.username or not address.domain:
            raise ActionError(f"send_email: {key}: invalid address {address.addr_spec!r}", retryable=False)
        result.append(address)
    return result


def build_email(
    options: dict[str, Any], ctx: ActionContext, settings: OutboundSmtpSettings
) -> tuple[EmailMessage, str, list[str]]:
    """Returns (message, envelope sender, envelope recipients)."""
    to = _addresses(ctx, "to", options.get("to"))
    cc = _addresses(ctx, "cc", options.get("cc"))
    bcc = _addresses(ctx, "bcc", options.get("bcc"))
    reply_to = _addresses(ctx, "reply_to", options.get("reply_to"))
    if not to:
        raise ActionError("send_email: to rendered to no address", retryable=False)
    sender = _addresses(ctx, "from", options.get("from")) if options.get("from") else []
    if not sender:
        sender = _parse_addresses("from", [settings.from_address])  # configuration, not a template
    if len(sender) != 1:
        raise ActionError("send_email: from must be exactly one address", retryable=False)

    msg = EmailMessage(policy=default_policy)
    try:
        msg["From"] = sender[0]
        msg["To"] = to
        if cc:
            msg["Cc"] = cc
        if reply_to:
            msg["Reply-To"] = reply_to
        msg["Subject"] = _one_line(_text(ctx, options.get("subject")))
        msg["Date"] = format_datetime(datetime.now(UTC))
        msg["Message-ID"] = make_msgid(domain=sender[0].domain)
        extra = options.get("headers") or {}
        if not isinstance(extra, dict):
            raise ActionError("send_email: headers must be a table", retryable=False)
        for hname, hvalue in extra.items():
            if str(hname).lower() in RESERVED_HEADERS:
                raise ActionError(f"send_email: header {hname!r} is set by its own key", retryable=False)
            msg[str(hname)] = _one_line(_text(ctx, hvalue))
        text = _text(ctx, options.get("text")) if options.get("text") is not None else None
        html = _html(ctx, options.get("html")) if options.get("html") is not None else None
        if html is not None and text is not None:
            msg.set_content(text)
            msg.add_alternative(html, subtype="html")
        elif html is not None:
            msg.set_content(html, subtype="html")
        else:
            msg.set_content(text or "")
    except ActionError:
        raise
    except (ValueError, TypeError) as exc:
        raise ActionError(f"send_email: cannot build the message ({exc})", retryable=False) from None
    recipients = list(dict.fromkeys(a.addr_spec for a in [*to, *cc, *bcc]))
    return msg, sender[0].addr_spec, recipients


def _smtp_send(
    settings: OutboundSmtpSettings, msg: EmailMessage, sender: str, recipients: list[str]
) -> dict[str, Any]:
    """Blocking: connect, optionally STARTTLS and AUTH, send. Returns refused recipients."""
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if settings.ssl:
        smtp = smtplib.SMTP_SSL(settings.host, settings.port, timeout=settings.timeout, context=context)
    else:
        smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    with smtp:
        if settings.starttls and not settings.ssl:
            smtp.starttls(context=context)
        if settings.username:
            smtp.login(settings.username, settings.password or "")
        return dict(smtp.send_message(msg, from_addr=sender, to_addrs=recipients))


def _reply_text(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
    return f"{code} {_one_line(text)}"


def smtp_error(label: str, exc: BaseException) -> ActionError:
    """Map an smtplib/socket failure: 4xx and connection trouble retry, 5xx does not."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = {addr: _reply_text(code, text) for addr, (code, text) in exc.recipients.items()}
        temporary = any(400 <= code < 500 for code, _ in exc.recipients.values())
        details = "; ".join(f"{addr}: {reply}" for addr, reply in refused.items())
        return ActionError(f"{label}: all recipients refused ({details})", retryable=temporary)
    if isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
        return ActionError(
            f"{label}: server answered {_reply_text(code, exc.smtp_error)}", retryable=not 500 <= code < 600
        )
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return ActionError(f"{label}: {exc} (check the outbound SMTP settings)", retryable=False)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ActionError(f"{label}: TLS certificate not trusted ({exc.verify_message})", retryable=False)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return ActionError(f"{label}: server disconnected ({exc})", retryable=True)
    if isinstance(exc, TimeoutError):
        return ActionError(f"{label}: timed out", retryable=True)
    if isinstance(exc, OSError | smtplib.SMTPException):
        return ActionError(f"{label}: {type(exc).__name__}: {exc}", retryable=True)
    return ActionError(f"{label}: {type(exc).__name__}: {exc}", retryable=True)


@register
class SendEmail(Action):
    name: ClassVar[str] = "send_email"
    required: ClassVar[frozenset[str]] = frozenset({"to"})
    optional: ClassVar[frozenset[str]] = frozenset(
        {"subject", "text", "html", "from", "cc", "bcc", "reply_to", "headers"}
    )

    def validate(self, options: dict[str, Any]) -> list[str]:
        problems: list[str] = []
        for key in ("to", "cc", "bcc", "reply_to", "from"):
            if options.get(key) is not None and not _is_string_or_strings(options[key]):
                problems.append(f"send_email: {key} must be a string or a list of strings")
        if isinstance(options.get("from"), list):
            problems.append("send_email: from must be one address")
        for key in ("subject", "text", "html"):
            if options.get(key) is not None and not isinstance(options[key], str):
                problems.append(f"send_email: {key} must be a string")
        headers = options.get("headers")
        if headers is not None:
            if not isinstance(headers, dict):
                problems.append('send_email: headers must be a table of name = "value"')
            else:
                for hname in headers:
                    if str(hname).lower() in RESERVED_HEADERS:
                        problems.append(f"send_email: header {hname!r} is set by its own key, not by headers")
        return problems

    async def execute(self, options: dict[str, Any], ctx: ActionContext) -> ActionResult:
        settings = ctx.services.smtp
        msg, sender, recipients = build_email(options, ctx, settings)
        label = f"send_email via {settings.host}:{settings.port}"
        try:
            refused = await trio.to_thread.run_sync(_smtp_send, settings, msg, sender, recipients)
        except (OSError, smtplib.SMTPException) as exc:
            raise smtp_error(label, exc) from None
        refused_text = {addr: _reply_text(code, text) for addr, (code, text) in refused.items()}
        if refused_text:
            ctx.log("warning", f"send_email: some recipients refused: {refused_text}")
        output = {
            "message_id": msg["Message-ID"],
            "from": sender,
            "recipients": [r for r in recipients if r not in refused_text],
            "refused": refused_text,
        }
        return ActionResult(output=output)
