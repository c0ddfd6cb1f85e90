"""What the HTTP channel serves: a table of sources, swapped atomically on reload."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class HttpSource:
    kind: str  # endpoints | webhooks | forms | sms | whatsapp
    name: str
    config: Any  # the source's config model
    active: bool = True
    api_key: str | None = None
    first_hash: str | None = None
    second_hash: str | None = None

    @property
    def source(self) -> str:
        return f"{self.kind}.{self.name}"


@dataclass
class RouteTable:
    endpoints: dict[tuple[str, str], HttpSource] = field(default_factory=dict)
    webhooks: dict[str, HttpSource] = field(default_factory=dict)
    forms: dict[str, HttpSource] = field(default_factory=dict)
    sms: dict[str, HttpSource] = field(default_factory=dict)
    whatsapp: dict[str, HttpSource] = field(default_factory=dict)
