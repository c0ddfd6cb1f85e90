"""One structured line per event: logfmt by default, JSON with `--log-format json`.

Our code logs through structlog with the event name and its fields apart:
`log.info("retry", signal_id=sid, attempt=2, delay_s=4.0)`. Why structlog: fields are
keyword arguments, so a caller's text can only ever be a *value*; the stdlib's `extra=` would
need a wrapper at every call site and collides with LogRecord's own attribute names. Libraries
that log through the stdlib (hypercorn, aiosmtpd, quart, httpx) pass through the same renderer
with their formatted message as the one `msg` value.

Rendering is ours, not structlog's `LogfmtRenderer`, because that one leaves CR, tabs and
terminal escapes raw: here any value with a space, `=`, a quote, a backslash or a control
character is a JSON-quoted string, so every line parses as logfmt and carries no raw newline.
Text that is not valid UTF-8 (surrogate-escaped bytes) is written as `\\udcXX` escapes.

Under systemd (`JOURNAL_STREAM` names our stderr) each line starts with its syslog priority,
`<3>` … `<7>`, which journald strips and stores, so `journalctl -p err` filters.

Refused requests are logged through `refused()`: at most one line per source and status (the
kind of refusal: 401 bad credentials, 413 too large, 429 rate limited…) per second and process;
the next line that gets through carries `suppressed=N`, the number dropped since the last one,
so a flood costs a line a second, not a line a request. The key is not the reason's text,
which can quote the caller (a content type) and so could be varied to defeat the limit.

Secrets never reach a log line: the channels mask credentials before they become data, and
config values are never logged.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import MutableMapping
from typing import IO, Any

import structlog

_BARE = re.compile(r"[A-Za-z0-9_.:/@+\-,%\[\]()]+")
FIRST_KEYS = ("time", "level", "logger", "msg")
# syslog priorities (sd-daemon(3)) for the `<N>` prefix journald understands.
PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}
MAX_VALUE = 16 * 1024  # one caller-made value is cut here (with a note of how much was cut)

EventDict = MutableMapping[str, Any]


def clean_text(value: str) -> str:
    """Valid UTF-8, capped: lone surrogates (undecodable input bytes) become `\\udcXX` text."""
    if len(value) > MAX_VALUE:
        value = f"{value[:MAX_VALUE]}…[{len(value) - MAX_VALUE} more chars]"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _text(value: Any) -> str:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if value is None:
        return ""
    if isinstance(value, bytes):
        return clean_text(value.decode("utf-8", "surrogateescape"))
    return clean_text(str(value))


def logfmt_value(value: Any) -> str:
    text = _text(value)
    if _BARE.fullmatch(text):
        return text
    return json.dumps(text, ensure_ascii=False)


def _ordered(event: EventDict) -> list[tuple[str, Any]]:
    """time, level, logger, msg, then the fields in the order given; a field set to None is left out."""
    first = [(key, event[key]) for key in FIRST_KEYS if key in event]
    return first + [
        (key, value) for key, value in event.items() if key not in FIRST_KEYS and value is not None
    ]


def render_logfmt(_logger: Any, _method: str, event: EventDict) -> str:
    return " ".join(f"{key}={logfmt_value(value)}" for key, value in _ordered(event))


def render_json(_logger: Any, _method: str, event: EventDict) -> str:
    payload: dict[str, Any] = {}
    for key, value in _ordered(event):
        payload[key] = (
            value if isinstance(value, int | float | bool) and not isinstance(value, str) else _text(value)
        )
    return json.dumps(payload, ensure_ascii=False)


def _rename_event(_logger: Any, _method: str, event: EventDict) -> EventDict:
    event["msg"] = event.pop("event", "")
    if "exception" in event:
        event["exc"] = event.pop("exception")
    return event


def _level(_logger: Any, method: str, event: EventDict) -> EventDict:
    event["level"] = {"warn": "warning", "exception": "error", "fatal": "critical"}.get(method, method)
    return event


def _logger_name(logger: Any, _method: str, event: EventDict) -> EventDict:
    record = event.get("_record")
    event["logger"] = record.name if record is not None else getattr(logger, "name", "")
    return event


def _timestamp(_logger: Any, _method: str, event: EventDict) -> EventDict:
    record = event.get("_record")
    created = record.created if record is not None else time.time()
    event["time"] = (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"
    )
    return event


class Throttle:
    """Drops events whose `_throttle` key was already logged in the last `window` seconds."""

    def __init__(self, window: float = 1.0, max_keys: int = 4096) -> None:
        self.window = window
        self.max_keys = max_keys
        self.seen: dict[tuple[str, ...], list[float]] = {}  # key -> [last logged at, suppressed]

    def __call__(self, _logger: Any, _method: str, event: EventDict) -> EventDict:
        key = event.pop("_throttle", None)
        if key is None:
            return event
        key = tuple(str(part) for part in key)
        now = time.monotonic()
        entry = self.seen.get(key)
        if entry is not None and now - entry[0] < self.window:
            entry[1] += 1
            raise structlog.DropEvent
        if entry is not None and entry[1]:
            event["suppressed"] = int(entry[1])
        if len(self.seen) >= self.max_keys:
            self.seen = {k: v for k, v in self.seen.items() if now - v[0] < self.window}
            if len(self.seen) >= self.max_keys:  # a flood of distinct keys: forget the counts
                self.seen.clear()
        self.seen[key] = [now, 0]
        return event


class JournalPrefix(logging.Formatter):
    """Wraps a formatter: `<N>` before every line when stderr is journald's stream."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        level = logging.getLevelName(record.levelno).lower()
        return f"<{PRIORITY.get(level, 6)}>" + self.inner.format(record)


def stream_is_journal(stream: IO[str]) -> bool:
    """systemd sets JOURNAL_STREAM=dev:ino for the stream it connected to journald (systemd.exec(5))."""
    wanted = os.environ.get("JOURNAL_STREAM", "")
    if not wanted:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return wanted == f"{st.st_dev}:{st.st_ino}"


def setup(fmt: str = "logfmt", level: str = "info", stream: IO[str] | None = None) -> None:
    stream = stream if stream is not None else sys.stderr
    renderer = render_json if fmt == "json" else render_logfmt
    common: list[Any] = [_logger_name, _level, _timestamp]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            Throttle(),
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter: logging.Formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.processors.format_exc_info],
        processors=[
            *common,  # before remove_processors_meta: they read the stdlib record it removes
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _rename_event,
            renderer,
        ],
        pass_foreign_args=False,
    )
    if stream_is_journal(stream):
        formatter = JournalPrefix(formatter)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("hypercorn.access", "httpx", "httpcore", "mail.log", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


_refusals = structlog.get_logger("router.refused")


def refused(channel: str, source: str, status: int | str, reason: str, **fields: Any) -> None:
    """A request turned away before the journal: logged at info, throttled per source and reason."""
    _refusals.info(
        "refused",
        channel=channel,
        source=source,
        status=status,
        reason=reason,
        **fields,
        _throttle=(channel, source, str(status)),
    )
