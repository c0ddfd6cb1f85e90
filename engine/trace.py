"""Helpers for run traces: what a step rendered, with secrets hidden and long text cut."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

SECRET_KEY = re.compile(r"secret|passw(or)?d|token|authori[sz]ation|api[_-]?key|cookie", re.IGNORECASE)
REDACTED = "***"
MAX_TEXT = 4000


def redact(value: Any, *, _depth: int = 0) -> Any:
    """A JSON-friendly copy of `value`: values under secret-looking keys become "***"."""
    if _depth > 20:
        return "…"
    if isinstance(value, dict):
        return {
            str(k): REDACTED if SECRET_KEY.search(str(k)) else redact(v, _depth=_depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact(v, _depth=_depth + 1) for v in value]
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            return value[:MAX_TEXT] + f"…({len(value) - MAX_TEXT} more characters)"
        return value
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)


class Recorder:
    """Remembers what a step's render functions produced, to show rendered inputs in the trace.

    Actions render their own options (`ctx.render`, `ctx.render_value`); the runner wraps those
    functions with `wrap` and afterwards maps the raw options to what was actually rendered.
    """

    def __init__(self) -> None:
        self._by_id: dict[int, Any] = {}
        self._by_text: dict[str, Any] = {}
        self._keep: list[Any] = []  # keeps rendered containers alive so their ids stay unique

    def wrap(self, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def wrapped(value: Any) -> Any:
            result = fn(value)
            if isinstance(value, str):
                self._by_text[value] = result
            elif isinstance(value, (dict, list, tuple)):
                self._by_id[id(value)] = result
                self._keep.append(value)
            return result

        return wrapped

    def rendered(self, value: Any) -> Any:
        """`value` with every part that was rendered replaced by its rendering."""
        if isinstance(value, (dict, list, tuple)) and id(value) in self._by_id:
            return self._by_id[id(value)]
        if isinstance(value, str):
            return self._by_text.get(value, value)
        if isinstance(value, dict):
            return {k: self.rendered(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.rendered(v) for v in value]
        return value
