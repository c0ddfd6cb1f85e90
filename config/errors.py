"""Configuration problems: one :class:`ConfigIssue` per mistake, all raised together."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["ConfigError", "ConfigIssue"]


@dataclass(frozen=True)
class ConfigIssue:
    """One mistake in the configuration.

    ``file`` is the file the offending key came from, ``key`` a dotted path such as
    ``endpoints.invoices.return_type`` or ``workflows.invoice-raised.steps[2].branch`` (empty
    when the problem concerns the whole file, e.g. a TOML syntax error) and ``message`` says
    what was wrong and what is allowed.
    """

    file: str
    key: str
    message: str

    def __str__(self) -> str:
        if self.key:
            return f"{self.file}: {self.key}: {self.message}"
        return f"{self.file}: {self.message}"


class ConfigError(Exception):
    """The configuration is invalid; ``issues`` lists every problem found in one pass."""

    def __init__(self, issues: Iterable[ConfigIssue], partial: Any = None) -> None:
        self.issues: list[ConfigIssue] = list(issues)
        # The parts that did validate (a `Config` with defaults elsewhere), so later checks can
        # still run and report their problems in the same pass; None when nothing usable parsed.
        self.partial = partial
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)

    def __repr__(self) -> str:
        return f"ConfigError({self.issues!r})"
