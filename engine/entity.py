"""The virtual entity: a disposable record made of one incoming signal (SPEC §5)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ulid import ULID


def new_signal_id() -> str:
    """A sortable, unique id (ULID) for a signal."""
    return str(ULID())


def utcnow_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Entity:
    """One signal as the engine sees it.

    `data` is the `__data` namespace. The meta keys `__signal_id`, `__channel`, `__source`
    and `__received_at` are always present in it.
    """

    channel: str
    source: str  # e.g. "endpoints.invoices"
    data: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_signal_id)
    received_at: str = field(default_factory=utcnow_iso)
    # The request body as received (HTTP channels): journaled beside the entity for the inspector,
    # never part of `data` (templates see the parsed values).
    raw: bytes | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.data.setdefault("__signal_id", self.id)
        self.data.setdefault("__channel", self.channel)
        self.data.setdefault("__source", self.source)
        self.data.setdefault("__received_at", self.received_at)

    def to_json(self) -> str:
        return json.dumps(self.data, separators=(",", ":"), default=str)

    @classmethod
    def from_row(cls, id: str, channel: str, source: str, received_at: str, data_json: str) -> Entity:
        return cls(channel=channel, source=source, data=json.loads(data_json), id=id, received_at=received_at)
