"""Core actions: `respond`, `emit`, `store`, `reply`, `log` (SPEC §8)."""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from engine.actions.base import Action, ActionContext, ActionError, ActionResult, register
from engine.ports import Reply

RETURN_TYPES = {"data": "return_data", "html": "return_html", "redirect": "return_redirect"}
LEVELS = ("debug", "info", "warning", "error")
STORE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
EVENT_NAME = re.compile(r"^[^\r\n:]{1,200}$")


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def as_text(value: Any) -> str:
    """A rendered value as response text: strings as they are, anything else as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


# What HTTP allows in a header (RFC 9110): a token for the name; visible ASCII, spaces and tabs
# for the value (bytes past ASCII are obsolete and read differently by every client). Anything
# else could split the header or fail to send.
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_HEADER_VALUE = re.compile(r"^[\t\x20-\x7e]*$")


def _bad_header_name(name: str) -> bool:
    return not _HEADER_NAME.match(name)


def _bad_header_value(text: str) -> bool:
    return not _HEADER_VALUE.match(text)


@register
class Respond(Action):
    name: ClassVar[str] = "respond"
    optional: ClassVar[frozenset[str]] = frozenset(
        {"return_type", "return_data", "return_html", "return_redirect", "status", "headers"}
    )
    needs_caller: ClassVar[str | None] = "respond"

    def validate(self, options: dict[str, Any]) -> list[str]:
        problems: list[str] = []
        return_type = options.get("return_type", "data")
        if not isinstance(return_type, str):
            problems.append('respond: return_type must be "data", "html" or "redirect"')
        elif not is_template(return_type):
            if return_type not in RETURN_TYPES:
                problems.append(
                    f'respond: return_type must be "data", "html" or "redirect" (got {return_type!r})'
                )
            else:
                wanted = RETURN_TYPES[return_type]
                if return_type != "data" and wanted not in options:
                    problems.append(f'respond: return_type = "{return_type}" needs {wanted}')
                for other in sorted(set(RETURN_TYPES.values()) - {wanted}):
                    if other in options:
                        problems.append(f'respond: {other} is not used with return_type = "{return_type}"')
        for key in ("return_html", "return_redirect"):
            if key in options and not isinstance(options[key], str):
                problems.append(f"respond: {key} must be a string")
        status = options.get("status")
        if status is not None and not is_template(status):
            if isinstance(status, bool) or not isinstance(status, (int, str)) or not str(status).isdigit():
                problems.append(f"respond: status must be an HTTP status code such as 200 (got {status!r})")
            elif not 100 <= int(status) <= 599:
                problems.append(f"respond: status must be between 100 and 599 (got {status})")
        headers = options.get("headers")
        if headers is not None and not isinstance(headers, dict):
            problems.append('respond: headers must be a table of name = "value"')
        elif headers:
            problems += [
                f"respond: {name!r} is not a valid header name"
                for name in headers
                if _bad_header_name(str(name))
            ]
        return problems

    async def execute(self, options: dict[str, Any], ctx: ActionContext) -> ActionResult:
        return_type = ctx.render(options.get("return_type", "data")).strip() or "data"
        if return_type not in RETURN_TYPES:
            raise ActionError(f"respond: unknown return_type {return_type!r}", retryable=False)
        raw = options.get(RETURN_TYPES[return_type], "")
        if return_type == "html":
            if ctx.render_html is None:  # pragma: no cover - the runner always provides it
                raise ActionError("respond: no HTML renderer available", retryable=False)
            body = ctx.render_html(raw)
        elif return_type == "redirect":
            body = ctx.render(raw).strip()  # the HTTP channel percent-encodes what a Location cannot hold
            if not body:
                raise ActionError("respond: the redirect location rendered empty", retryable=False)
        else:
            body = as_text(ctx.render_value(raw))
        reply = Reply(
            return_type=return_type,
            body=body,
            status=self._status(options, ctx),
            headers=self._headers(options, ctx),
        )
        output: dict[str, Any] = {"return_type": return_type, "status": reply.status}
        if ctx.responder is None:
            ctx.log("info", "no caller to respond to (replayed or scheduled run); ignored")
            output["delivered"] = False
        elif not ctx.responder.respond(reply):
            ctx.log("info", "response already sent; ignored")
            output["delivered"] = False
        else:
            output["delivered"] = True
        return ActionResult(output=output)

    @staticmethod
    def _status(options: dict[str, Any], ctx: ActionContext) -> int | None:
        raw = options.get("status")
        if raw is None:
            return None
        text = str(ctx.render_value(raw) if isinstance(raw, str) else raw).strip()
        if not text:
            return None
        if not text.isdigit() or not 100 <= int(text) <= 599:
            raise ActionError(
                f"respond: status must be an HTTP status code, got {text[:50]!r}", retryable=False
            )
        return int(text)

    @staticmethod
    def _headers(options: dict[str, Any], ctx: ActionContext) -> dict[str, str]:
        raw = options.get("headers") or {}
        if not isinstance(raw, dict):
            raise ActionError("respond: headers must be a table", retryable=False)
        headers: dict[str, str] = {}
        for name, value in raw.items():
            text = ctx.render(value) if isinstance(value, str) else as_text(value)
            if _bad_header_name(str(name)) or _bad_header_value(text):
                raise ActionError(f"respond: header {name!r} contains an illegal character", retryable=False)
            headers[str(name)] = text
        return headers


@register
class Emit(Action):
    name: ClassVar[str] = "emit"
    optional: ClassVar[frozenset[str]] = frozenset({"event", "data"})
    needs_caller: ClassVar[str | None] = "emit"

    def validate(self, options: dict[str, Any]) -> list[str]:
        event = options.get("event")
        if event is not None and (
            not isinstance(event, str) or not (is_template(event) or EVENT_NAME.match(event))
        ):
            return [f"emit: event must be a name without line breaks or ':' (got {event!r})"]
        return []

    async def execute(self, options: dict[str, Any], ctx: ActionContext) -> ActionResult:
        event = ctx.render(options.get("event", "message")).strip() or "message"
        if not EVENT_NAME.match(event):
            raise ActionError(f"emit: invalid event name {event[:50]!r}", retryable=False)
        data = as_text(ctx.render_value(options.get("data", "")))
        if ctx.responder is None:
            ctx.log("info", "no caller to stream to; event ignored")
            return ActionResult(output={"event": event, "delivered": False})
        await ctx.responder.emit(event, data)
        return ActionResult(output={"event": event, "delivered": True})


@register
class Store(Action):
    name: ClassVar[str] = "store"
    required: ClassVar[frozenset[str]] = frozenset({"name", "value"})

    def validate(self, options: dict[str, Any]) -> list[str]:
        name = options.get("name")
        if not isinstance(name, str):
            return ["store: name must be a string"]
        if not is_template(name):
            return self._name_problems(name)
        return []

    @staticmethod
    def _name_problems(name: str) -> list[str]:
        if not STORE_NAME.match(name):
            return [f"store: name must be letters, digits and _ (got {name!r})"]
        if name.startswith("__"):
            return [f"store: names starting with __ are reserved for the router (got {name!r})"]
        return []

    async def execute(self, options: dict[str, Any], ctx: ActionContext) -> ActionResult:
        name = ctx.render(options["name"]).strip()
        problems = self._name_problems(name)
        if problems:
            raise ActionError(problems[0], retryable=False)
        value = ctx.render_value(options.get("value"))
        return ActionResult(output={"name": name, "value": value}, store={name: value})


@register
class ReplyAction(Action):
    name: ClassVar[str] = "reply"
    required: ClassVar[frozenset[str]] = frozenset({"message"})
    needs_caller: ClassVar[str | None] = "reply"

    async def execute(self, options: dict[str, Any], ctx: ActionContext) -> ActionResult:
        message = as_text(ctx.render_value(options["message"]))
        if ctx.responder is None:
            ctx.log("info", "no caller to reply to; ignored")
            return ActionResult(output={"delivered": False})
        ctx.responder.twiml_reply(message)
        return ActionResult(output={"delivered": True, "length": len(message)})


@register
class Log(Action):
    name: ClassVar[str] = "log"
    required: ClassVar[frozenset[str]] = frozenset({"message"})
    optional: ClassVar[frozenset[str]] = frozenset({"level"})

    def validate(self, options: dict[str, Any]) -> list[str]:
        level = options.get("level")
        if level is not None and not (is_template(level) or str(level).lower() in LEVELS):
            return [f"log: level must be one of {', '.join(LEVELS)} (got {level!r})"]
        return []

    async def execute(self, options: dict[str, Any], ctx: ActionContext) -> ActionResult:
        level = ctx.render(options.get("level", "info")).strip().lower() or "info"
        if level not in LEVELS:
            level = "info"
        message = as_text(ctx.render_value(options["message"]))
        ctx.log(level, message)
        return ActionResult(output={"level": level, "message": message})
