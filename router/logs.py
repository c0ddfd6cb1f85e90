"""One structured line per event: logfmt by default, JSON with `--log-format json`.

Log calls pass `key=value` pairs in the message (`"run workflow=%s status=%s"`); the formatter
adds time, level and logger. Secrets never reach a log line: the channels mask credentials
before they become data, and config values are never logged.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

_PAIR = re.compile(r"(\w+)=('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|\S+)")


def _quote(value: str) -> str:
    if value == "" or any(c in value for c in ' "=\t\n'):
        return json.dumps(value)
    return value


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        message = record.getMessage()
        head, _, _ = message.partition("=")
        event = head.rsplit(" ", 1)[0] if "=" in message else message
        pairs = message[len(event):].strip() if "=" in message else ""
        line = f"time={stamp} level={record.levelname.lower()} logger={record.name} msg={_quote(event)}"
        if pairs:
            line += " " + pairs
        if record.exc_info:
            line += " exc=" + _quote(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        event = message.split(" ", 1)[0] if "=" in message else message
        payload: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": event,
        }
        for key, value in _PAIR.findall(message):
            payload[key] = value.strip("'\"")
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload)


def setup(fmt: str = "logfmt", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("hypercorn.access", "httpx", "httpcore", "mail.log", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
