"""``${NAME}`` / ``${NAME:-default}`` expansion in string values, after TOML parsing.

``$${`` is a literal ``${``. ``${NAME:-default}`` uses the default when NAME is unset or
empty (as the shell does). A missing variable without a default is reported, never replaced
by an empty string silently.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["expand_env", "expand_string"]

_TOKEN_RE = re.compile(
    r"\$\$\{"  # escaped: literal ${
    r"|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<sep>:-(?P<default>[^}]*))?\}"
    r"|\$\{(?P<bad>[^}]*)\}?"
)

Path = tuple[str | int, ...]
Report = Callable[[Path, str], None]


def expand_string(value: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    """Expand one string; returns the result and a list of problems (empty when fine)."""
    problems: list[str] = []

    def replace(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "$${":
            return "${"
        name = match.group("name")
        if name is not None:
            current = environ.get(name)
            if match.group("sep") is not None:
                return current if current else match.group("default")
            if current is None:
                problems.append(
                    f"environment variable {name} is not set (use ${{{name}:-default}} for a default)"
                )
                return ""
            return current
        problems.append(
            f"malformed reference {text!r}: use ${{NAME}} or ${{NAME:-default}} with NAME made of "
            "letters, digits and '_', or write $${ for a literal ${"
        )
        return text

    result = _TOKEN_RE.sub(replace, value)
    return result, problems


def expand_env(data: Any, environ: Mapping[str, str], report: Report, path: Path = ()) -> Any:
    """Return a copy of ``data`` with every string value expanded; problems go to ``report``."""
    if isinstance(data, str):
        if "${" not in data:
            return data
        result, problems = expand_string(data, environ)
        for problem in problems:
            report(path, problem)
        return result
    if isinstance(data, dict):
        return {key: expand_env(value, environ, report, (*path, key)) for key, value in data.items()}
    if isinstance(data, list):
        return [expand_env(value, environ, report, (*path, index)) for index, value in enumerate(data)]
    return data
