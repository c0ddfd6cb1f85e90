"""The contract between a channel adapter and the router.

A channel turns raw input into an `Entity` and hands it to an `Intake` (implemented by the
router). It never touches the journal or the engine directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from engine.entity import Entity
from engine.ports import Responder


class Overloaded(Exception):
    """Too much work is waiting; the caller should retry after `retry_after` seconds."""

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__("overloaded")
        self.retry_after = retry_after


class JournalUnavailable(Exception):
    """The signal could not be written durably; nothing was acknowledged."""


@dataclass
class Submission:
    signal_id: str
    duplicate: bool = False
    ack: dict[str, Any] | None = None  # the original acknowledgement when `duplicate`
    workflows: int = 0  # how many workflows listen to the source
    sync: bool = False  # at least one of them runs in sync mode (its caller is held for the answer)


class CallerResponder(Responder, Protocol):
    """A responder a channel passes along; the router calls `finish` once every run ended."""

    def finish(self) -> None: ...


class Intake(Protocol):
    async def submit(
        self,
        entity: Entity,
        *,
        dedup_key: str | None = None,
        responder: CallerResponder | None = None,
        ack: dict[str, Any] | None = None,
    ) -> Submission:
        """Journal the entity durably (then return) and start its workflows.

        Raises `Overloaded` or `JournalUnavailable`; a returned Submission means it is on disk.
        """
        ...

    def render(self, template: str, data: dict[str, Any], *, html: bool = False) -> str:
        """Render a source-level template (return_data, redirect, dedup_key…) against `__data`."""
        ...

    def has_sync_listener(self, source: str) -> bool:
        """A workflow listening to `source` runs in sync mode: its caller waits for the runs (before
        submitting, a channel decides whether to hold the caller)."""
        ...
