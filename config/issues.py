"""Turning locations and pydantic errors into :class:`ConfigIssue` (dotted key + file)."""

from __future__ import annotations

import difflib
import re
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from .errors import ConfigIssue
from .types import RULE_ERROR

__all__ = ["Locator", "allowed_keys", "split_key"]

Loc = tuple[str | int, ...]
_KEY_PART_RE = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def split_key(key: str) -> Loc:
    """``"steps[2].branch"`` -> ``("steps", 2, "branch")``."""
    return tuple(int(index) if index else name for name, index in _KEY_PART_RE.findall(key))


class Locator:
    """Names keys and files for locations in one (merged) data dict."""

    def __init__(self, raw: dict[str, Any], origins: dict[Loc, str], default_file: str) -> None:
        self.raw = raw
        self.origins = origins
        self.default_file = default_file
        self._workflow_labels = self._label_workflows(raw.get("workflows"))

    @staticmethod
    def _label_workflows(workflows: Any) -> dict[int, str]:
        if not isinstance(workflows, list):
            return {}
        names = [wf.get("name") if isinstance(wf, dict) else None for wf in workflows]
        labels = {}
        for index, name in enumerate(names):
            usable = isinstance(name, str) and name.strip() and names.count(name) == 1
            labels[index] = (
                f"workflows.{name.strip()}" if usable and isinstance(name, str) else f"workflows[{index}]"
            )
        return labels

    def key(self, loc: Loc) -> str:
        text = ""
        start = 0
        if len(loc) >= 2 and loc[0] == "workflows" and isinstance(loc[1], int):
            text = self._workflow_labels.get(loc[1], f"workflows[{loc[1]}]")
            start = 2
        for part in loc[start:]:
            if isinstance(part, int):
                text += f"[{part}]"
            else:
                text += f".{part}" if text else str(part)
        return text

    def file(self, loc: Loc) -> str:
        for end in range(len(loc), 0, -1):
            found = self.origins.get(tuple(loc[:end]))
            if found is not None:
                return found
        return self.default_file

    def issue(self, loc: Loc, message: str) -> ConfigIssue:
        return ConfigIssue(file=self.file(loc), key=self.key(loc), message=message)

    def from_validation_error(self, exc: ValidationError, prefix: Loc, model: Any) -> list[ConfigIssue]:
        """Issues for a pydantic error raised validating ``model`` at ``prefix``."""
        issues: list[ConfigIssue] = []
        for error in exc.errors():
            loc = tuple(part for part in error["loc"] if not _is_internal(part))
            if error["type"] == RULE_ERROR:
                for field, text in error.get("ctx", {}).get("problems", []):
                    issues.append(self.issue((*prefix, *loc, *split_key(field)), text))
                continue
            issues.append(self.issue((*prefix, *loc), _message(error, model, loc)))
        return issues


def _is_internal(part: str | int) -> bool:
    """pydantic adds union member / validator tags such as ``function-after[...]`` to locs."""
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def _message(error: Any, model: Any, loc: Loc) -> str:
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        allowed = allowed_keys(model, loc[:-1])
        unknown = str(loc[-1]) if loc else "?"
        if not allowed:
            return f"unknown key {unknown!r}"
        close = difflib.get_close_matches(unknown, allowed, n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        return f"unknown key {unknown!r}{hint}; allowed keys: {', '.join(allowed)}"
    if kind == "missing":
        return "this key is required"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"invalid value {value!r}; expected {expected}"
    if kind == "bool_type":  # StrictBool: "yes", "1" or "false" (quoted) are mistakes, not booleans
        return f"expected true or false (a TOML boolean, unquoted), got {value!r}"
    message = str(error["msg"])
    if kind == "value_error":
        return message.removeprefix("Value error, ")
    if isinstance(value, dict | list):
        return message
    return f"{message} (got {value!r})"


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def allowed_keys(model: Any, loc: Loc) -> list[str]:
    """The keys a table at ``loc`` (relative to ``model``) accepts, sorted; [] if unknown."""
    current = _unwrap(model)
    for part in loc:
        if _is_model(current):
            fields = current.model_fields
            field = fields.get(part) if isinstance(part, str) else None
            if field is None:
                field = next((f for f in fields.values() if f.alias == part), None)
            if field is None:
                return []
            current = _unwrap(field.annotation)
        elif get_origin(current) is dict:
            current = _unwrap(get_args(current)[1])
        elif get_origin(current) is list:
            current = _unwrap(get_args(current)[0])
        else:
            return []
    if not _is_model(current):
        return []
    return sorted(field.alias or name for name, field in current.model_fields.items())
