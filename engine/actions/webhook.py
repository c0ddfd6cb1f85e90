"""The `webhook` action: call an HTTP endpoint and keep its answer in `__data.webhook`.

Keys (SPEC §8): `url` (required), `method` (POST), `headers` (a table of templates), at most one
of `json` / `form` / `body`, `timeout` (seconds per attempt, default 10), `retries` (default 0),
`retry_backoff` (seconds, default 0.5, doubled on every retry).

Body encodings:

- `json` — a table or list whose leaves are templates (a leaf that is exactly one
  `{{ expression }}` keeps its type), sent as `application/json`. A *string* `json` that is
  exactly one expression sends the expression's value (a table stays a table); any other string
  is rendered as text and must then be valid JSON text.
- `form` — a table sent as `application/x-www-form-urlencoded`; a list value repeats the key,
  a table value is sent as JSON text, `true`/`false` as the words, a missing value as "".
- `body` — rendered text, sent as-is (`text/plain; charset=utf-8` unless `headers` says otherwise).

Every call carries an `Idempotency-Key` header (the IETF httpapi draft's name, as Stripe and
others take it), the same on every try of one step for one signal, retries within the step, the
run's own retries and a run started over after a crash alike: `SIGNAL_ID:WORKFLOW:STEP_ID` by
default, so a receiver that drops repeats of a key sees each effect once although delivery is at
least once. `idempotency_key = "{{ … }}"` sets it (rendered empty: the default), `false` sends
none, and an `Idempotency-Key` in `headers` is sent as it is.

Retries happen on connection errors, timeouts, 429 and 5xx answers (a `Retry-After` is honoured
up to 30 s), never on other 4xx answers. A final non-2xx answer raises `WebhookError`, which
carries the response as `.store` (the same shape a success stores) so that `failure` branches can
inspect it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import httpx
import trio

from config.units import parse_duration
from engine.actions.base import Action, ActionContext, ActionError, ActionResult, register
from engine.actions.webhook_answer import retry_after, send_once

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
BODY_KEYS = ("json", "form", "body")
DEFAULT_TIMEOUT = 10.0
DEFAULT_BACKOFF = 0.5
MAX_RETRIES = 10
MAX_BACKOFF = 60.0

IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_KEY = 255  # what receivers commonly accept (Stripe: 255)

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?:(?!\}\}).)*\}\}\s*$", re.DOTALL)


class WebhookError(ActionError):
    """A webhook ended with a non-2xx answer.

    `store` is what a success would have stored (`{"webhook": {...}}`): the runner merges it
    into the branch's `__data` before following the step's `failure` branch. `status` is the
    final HTTP status.
    """

    def __init__(self, message: str, *, retryable: bool, status: int, store: dict[str, Any]) -> None:
        super().__init__(message, retryable=retryable)
        self.status = status
        self.store = store


def redact_url(url: str) -> str:
    """The URL without query, fragment or credentials: safe for traces and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _scrub(exc: BaseException, url: str) -> str:
    """An exception's text without the full URL (its query may hold a key)."""
    text = str(exc)
    return text.replace(url, redact_url(url)) if url else text


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def default_idempotency_key(ctx: ActionContext) -> str:
    """`SIGNAL_ID:WORKFLOW:STEP_ID`: stable across every try of one step for one signal, distinct
    between the workflows a signal fans out to. Names are percent-encoded to stay one header
    token; past 255 characters the names are replaced by their hash."""
    if ctx.effect_key is None:  # a run of no journaled signal: one key for this step's tries
        return f"run:{uuid.uuid4().hex}:{quote(ctx.step_id, safe=_KEY_SAFE)}"
    signal_id, workflow, step_id = ctx.effect_key
    # A replay asks for the work to be done again: a receiver that drops keys it has seen must
    # not drop it, so each replay round has its own key (`…:replay-2`); its tries share it.
    suffix = f":replay-{ctx.replay}" if ctx.replay else ""
    key = f"{signal_id}:{quote(workflow, safe=_KEY_SAFE)}:{quote(step_id, safe=_KEY_SAFE)}{suffix}"
    if len(key) > MAX_KEY:
        names = (workflow + "\0" + step_id).encode()
        key = f"{signal_id}:{hashlib.sha256(names).hexdigest()}{suffix}"
    return key


_KEY_SAFE = "-._~[]"  # brackets: a for_each element, `post[3]`


def _literal_duration(key: str, value: Any) -> tuple[float | None, str | None]:
    """A literal time option: seconds, or a duration like "40s", "1m30s", "250ms" (as every
    time in the config takes)."""
    if value is None or _is_template(value):
        return None, None
    try:
        return parse_duration(value), None
    except ValueError as exc:
        return None, f"webhook: {key}: {exc}"


def _literal_number(key: str, value: Any, *, integer: bool = False) -> tuple[float | None, str | None]:
    """Check a literal (non-template) numeric option; returns (value, problem)."""
    if value is None or _is_template(value):
        return None, None
    if isinstance(value, bool):
        return None, f"webhook: {key} must be a number, not {value!r}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None, f"webhook: {key} must be a number, not {value!r}"
    if not math.isfinite(number) or (integer and number != int(number)):
        return None, f"webhook: {key} must be a whole number, not {value!r}"
    return number, None


def _as_text(ctx: ActionContext, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return ctx.render(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _number(ctx: ActionContext, key: str, value: Any, default: float, *, duration: bool = False) -> float:
    if value is None:
        return default
    text = _as_text(ctx, value).strip()
    if text == "":
        return default
    try:
        number = parse_duration(text) if duration else float(text)
    except ValueError:
        kind = 'a duration (30, "30s", "1m")' if duration else "a number"
        raise ActionError(f"webhook: {key} must be {kind}, got {text!r}", retryable=False) from None
    if not math.isfinite(number) or number < 0:
        raise ActionError(f"webhook: {key} must be a non-negative number, got {text!r}", retryable=False)
    return number


def _form_value(value: Any) -> list[str]:
    if value is None:
        return [""]
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, list | tuple):
        return [item for v in value for item in _form_value(v)]
    if isinstance(value, dict):
        return [json.dumps(value, separators=(",", ":"), default=str)]
    return [str(value)]


def _observe(services: Any, outcome: str, started: float) -> None:
    if services.on_call is not None:
        services.on_call("webhook", outcome, time.perf_counter() - started)


@asynccontextmanager
async def _client(services: Any) -> AsyncIterator[httpx.AsyncClient]:
    shared = services.http
    if shared is None and services.http_factory is not None:
        shared = services.http = services.http_factory()
    if shared is not None:
        yield shared
    else:
        async with httpx.AsyncClient() as client:
            yield client


@register
class Webhook(Action):
    name: ClassVar[str] = "webhook"
    required: ClassVar[frozenset[str]] = frozenset({"url"})
    optional: ClassVar[frozenset[str]] = frozenset(
        {
            "method",
            "headers",
            "json",
            "form",
            "body",
            "timeout",
            "retries",
            "retry_backoff",
            "idempotency_key",
        }
    )

    def validate(self, options: dict[str, Any]) -> list[str]:
        problems: list[str] = []
        given = [key for key in BODY_KEYS if options.get(key) is not None]
        if len(given) > 1:
            problems.append(f"webhook: use only one of json, form or body (got {' and '.join(given)})")
        url = options.get("url")
        if not isinstance(url, str) or not url.strip():
            problems.append("webhook: url must be a non-empty string")
        elif not _is_template(url) and urlsplit(url.strip()).scheme.lower() not in ("http", "https"):
            problems.append(f"webhook: url must start with http:// or https:// (got {url!r})")
        method = options.get("method")
        if method is not None:
            if not isinstance(method, str):
                problems.append('webhook: method must be a string such as "POST"')
            elif not _is_template(method) and method.strip().upper() not in METHODS:
                problems.append(
                    f"webhook: method must be one of {', '.join(sorted(METHODS))} (got {method!r})"
                )
        headers = options.get("headers")
        if headers is not None:
            if not isinstance(headers, dict):
                problems.append('webhook: headers must be a table of name = "value"')
            else:
                for hname, hvalue in headers.items():
                    if not isinstance(hvalue, str | int | float) or isinstance(hvalue, bool):
                        problems.append(f"webhook: header {hname!r} must be a string")
        if options.get("form") is not None and not isinstance(options["form"], dict):
            problems.append('webhook: form must be a table of field = "value"')
        if options.get("body") is not None and not isinstance(options["body"], str):
            problems.append("webhook: body must be a string (use json = { ... } for structured data)")
        timeout, problem = _literal_duration("timeout", options.get("timeout"))
        if problem:
            problems.append(problem)
        elif timeout is not None and timeout <= 0:
            problems.append("webhook: timeout must be more than 0 seconds")
        retries, problem = _literal_number("retries", options.get("retries"), integer=True)
        if problem:
            problems.append(problem)
        elif retries is not None and not 0 <= retries <= MAX_RETRIES:
            problems.append(f"webhook: retries must be between 0 and {MAX_RETRIES}")
        key = options.get("idempotency_key")
        if key is not None and not isinstance(key, str | bool):
            problems.append("webhook: idempotency_key must be a template string, or false to send none")
        elif key is True or (isinstance(key, str) and not key.strip()):
            problems.append(
                'webhook: idempotency_key is a template such as "{{ __data.delivery_id }}", '
                "or false to send none (leave it out for the default)"
            )
        backoff, problem = _literal_duration("retry_backoff", options.get("retry_backoff"))
        if problem:
            problems.append(problem)
        elif backoff is not None and backoff < 0:
            problems.append("webhook: retry_backoff must not be negative")
        return problems

    # -- building the request ---------------------------------------------------------------

    def _encode_body(self, options: dict[str, Any], ctx: ActionContext) -> tuple[bytes | None, str | None]:
        """Returns (content, default content type)."""
        if options.get("json") is not None:
            raw = options["json"]
            if isinstance(raw, str):
                value = ctx.render_value(raw)
                if isinstance(value, str) and not _SINGLE_EXPRESSION.match(raw):
                    try:
                        value = json.loads(value)
                    except ValueError as exc:
                        raise ActionError(
                            f"webhook: json rendered to text that is not valid JSON ({exc})", retryable=False
                        ) from None
            else:
                value = ctx.render_value(raw)
            try:
                content = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
            except ValueError as exc:  # e.g. a circular structure
                raise ActionError(f"webhook: json value cannot be encoded ({exc})", retryable=False) from None
            return content.encode("utf-8"), "application/json"
        if options.get("form") is not None:
            form = options["form"]
            if not isinstance(form, dict):
                raise ActionError("webhook: form must be a table", retryable=False)
            rendered = ctx.render_value(form)
            if not isinstance(rendered, dict):
                raise ActionError("webhook: form must render to a table", retryable=False)
            pairs = [(str(k), v) for k, value in rendered.items() for v in _form_value(value)]
            return urlencode(pairs).encode("ascii"), "application/x-www-form-urlencoded"
        if options.get("body") is not None:
            return _as_text(ctx, options["body"]).encode("utf-8"), "text/plain; charset=utf-8"
        return None, None

    def _headers(self, options: dict[str, Any], ctx: ActionContext) -> dict[str, str]:
        headers: dict[str, str] = {}
        raw = options.get("headers") or {}
        if not isinstance(raw, dict):
            raise ActionError("webhook: headers must be a table", retryable=False)
        for hname, hvalue in raw.items():
            value = _as_text(ctx, hvalue)
            if any(c in value for c in "\r\n\0") or any(c in str(hname) for c in "\r\n\0: "):
                raise ActionError(
                    f"webhook: header {hname!r} contains a line break or other illegal character",
                    retryable=False,
                )
            headers[str(hname)] = value
        return headers

    def _idempotency_key(
        self, options: dict[str, Any], ctx: ActionContext, headers: dict[str, str]
    ) -> str | None:
        if any(k.lower() == IDEMPOTENCY_HEADER.lower() for k in headers):
            return None  # given in `headers`: sent as it is
        configured = options.get("idempotency_key")
        if configured is False:
            return None
        if isinstance(configured, str):
            key = _as_text(ctx, configured).strip()
            if any(c in key for c in "\r\n\0"):
                raise ActionError("webhook: idempotency_key contains a line break", retryable=False)
            if key:
                return key[:MAX_KEY]
        return default_idempotency_key(ctx)

    # -- running it ------------------------------------------------------------------------

    async def execute(self, options: dict[str, Any], ctx: ActionContext) -> ActionResult:
        url = _as_text(ctx, options.get("url")).strip()
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            shown = redact_url(url) if parts.scheme else url[:200]
            raise ActionError(
                f"webhook: url must be an absolute http(s) URL (got {shown!r})", retryable=False
            )
        shown_url = redact_url(url)
        method = (_as_text(ctx, options.get("method")) or "POST").strip().upper()
        if method not in METHODS:
            raise ActionError(f"webhook: unsupported method {method!r}", retryable=False)
        headers = self._headers(options, ctx)
        idempotency_key = self._idempotency_key(options, ctx, headers)
        if idempotency_key is not None:
            headers[IDEMPOTENCY_HEADER] = idempotency_key
        content, content_type = self._encode_body(options, ctx)
        if content_type and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = content_type
        timeout = _number(ctx, "timeout", options.get("timeout"), DEFAULT_TIMEOUT, duration=True)
        if timeout <= 0:
            raise ActionError("webhook: timeout must be more than 0 seconds", retryable=False)
        retries = int(_number(ctx, "retries", options.get("retries"), 0))
        retries = min(retries, MAX_RETRIES)
        backoff = _number(ctx, "retry_backoff", options.get("retry_backoff"), DEFAULT_BACKOFF, duration=True)
        label = f"webhook {method} {shown_url}"

        attempt = 0
        services = ctx.services
        async with _client(services) as client:
            while True:
                attempt += 1
                last = attempt > retries
                delay = min(backoff * (2 ** (attempt - 1)), MAX_BACKOFF)
                started = time.perf_counter()
                try:
                    stored = await send_once(client, method, url, headers, content, timeout)
                except trio.TooSlowError:
                    _observe(services, "timeout", started)
                    problem = f"{label}: no complete answer within {timeout:g}s"
                except httpx.TimeoutException as exc:
                    _observe(services, "timeout", started)
                    problem = f"{label}: timed out ({type(exc).__name__})"
                except (httpx.TransportError, OSError) as exc:
                    _observe(services, "connection_error", started)
                    problem = f"{label}: connection failed ({type(exc).__name__}: {_scrub(exc, url)})"
                except httpx.HTTPError as exc:  # e.g. too many redirects, an invalid URL
                    _observe(services, "error", started)
                    detail = f"{type(exc).__name__}: {_scrub(exc, url)}"
                    raise ActionError(f"{label}: {detail}", retryable=False) from None
                else:
                    status = stored["status"]
                    _observe(services, "ok" if stored["ok"] else f"http_{status // 100}xx", started)
                    if stored["ok"]:
                        output = {
                            "method": method,
                            "url": shown_url,
                            "status": status,
                            "attempts": attempt,
                            "idempotency_key": idempotency_key,
                        }
                        return ActionResult(output=output, store={"webhook": stored})
                    retryable = status == 429 or status >= 500
                    if not retryable or last:
                        snippet = " ".join(stored["body"][:200].split())
                        message = f"{label}: HTTP {status}" + (f" ({snippet})" if snippet else "")
                        if attempt > 1:
                            message += f" after {attempt} attempts"
                        raise WebhookError(
                            message, retryable=retryable, status=status, store={"webhook": stored}
                        )
                    after = retry_after(stored["headers"].get("retry-after"))
                    if after is not None:
                        delay = after
                    ctx.log("warning", f"{label}: HTTP {status}, retry {attempt}/{retries} in {delay:.2f}s")
                    if services.on_retry is not None:
                        services.on_retry("webhook")
                    await trio.sleep(delay)
                    continue
                if last:
                    if attempt > 1:
                        problem += f" after {attempt} attempts"
                    raise ActionError(problem, retryable=True)
                ctx.log("warning", f"{problem}; retry {attempt}/{retries} in {delay:.2f}s")
                if services.on_retry is not None:
                    services.on_retry("webhook")
                await trio.sleep(delay)
