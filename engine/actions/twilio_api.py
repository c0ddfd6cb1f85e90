"""The Twilio SDK seam for `send_sms` / `send_whatsapp`: a client per account (optionally sent to
another base URL) and its errors mapped to `ActionError`.

Imported only when a message is sent: the SDK and `requests` cost ~8 MB in every process that
loads them, and most daemons never send an SMS.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.rest import Client as TwilioClient

from engine.actions.base import ActionError
from engine.actions.messaging import _one_line


class BaseUrlHttpClient(TwilioHttpClient):
    """The stock Twilio HTTP client, sending every `*.twilio.com` request to another base URL.

    Used when `[twilio] api_base` is set (a local stand-in, a proxy): the real
    client builds the request (paths, form fields, Basic auth), only the host changes.
    """

    def __init__(self, base_url: str, timeout: float | None = None) -> None:
        super().__init__(timeout=timeout)
        self.base_url = base_url.rstrip("/")

    def request(
        self,
        method: str,
        url: str,
        params: Any = None,
        data: Any = None,
        headers: Any = None,
        auth: Any = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if host == "twilio.com" or host.endswith(".twilio.com"):
            url = self.base_url + parts.path + (f"?{parts.query}" if parts.query else "")
        return super().request(
            method,
            url,
            params=params,
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )


@lru_cache(maxsize=8)
def twilio_client(account_sid: str, auth_token: str, api_base: str | None, timeout: float) -> TwilioClient:
    """One client (and its connection pool) per account and base."""
    http_client = (
        BaseUrlHttpClient(api_base, timeout=timeout) if api_base else TwilioHttpClient(timeout=timeout)
    )
    return TwilioClient(account_sid, auth_token, http_client=http_client)


def twilio_error(label: str, exc: BaseException) -> ActionError:
    if isinstance(exc, TwilioRestException | TwilioServiceException):
        status = int(exc.status)
        if isinstance(exc, TwilioRestException):
            detail = f"{exc.msg}" + (f" (code {exc.code})" if exc.code and exc.code != status else "")
        else:
            detail = f"{exc.title}: {exc.detail or ''} (code {exc.code})"
        retryable = status == 429 or status >= 500 or status < 400
        return ActionError(
            f"{label}: Twilio answered HTTP {status}: {_one_line(detail)}", retryable=retryable
        )
    if isinstance(exc, requests.Timeout):
        return ActionError(f"{label}: Twilio API timed out", retryable=True)
    if isinstance(exc, requests.RequestException | OSError):
        return ActionError(f"{label}: cannot reach the Twilio API ({type(exc).__name__})", retryable=True)
    return ActionError(f"{label}: {type(exc).__name__}: {exc}", retryable=True)


def create_message(
    account_sid: str,
    auth_token: str,
    api_base: str | None,
    timeout: float,
    label: str,
    kwargs: dict[str, Any],
) -> Any:
    """`client.messages.create(**kwargs)` (blocking: run it in a thread), errors as ActionError."""
    client = twilio_client(account_sid, auth_token, api_base, timeout)
    try:
        return client.messages.create(**kwargs)
    except (TwilioException, requests.RequestException, OSError) as exc:
        raise twilio_error(label, exc) from None
