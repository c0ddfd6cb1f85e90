"""What the HTTP channel serves: a table of sources, swapped atomically on reload.

During a rotation's grace period a source answers with its previous credentials too: the old
endpoint URL is a second entry in `endpoints` (with `expires`), the old API key and JWT pair sit
in `previous`. Each request compares the deadline with the clock, so expiry needs no rebuild.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Previous:
    until: float  # epoch seconds
    api_key: str | None = None
    jwt_key: str | None = None
    jwt_secret: str | None = None


@dataclass
class HttpSource:
    kind: str  # endpoints | webhooks | forms | sms | whatsapp
    name: str
    config: Any  # the source's config model
    active: bool = True
    api_key: str | None = None
    first_hash: str | None = None
    second_hash: str | None = None
    jwt_key: str | None = None  # generated: used when the config sets no endpoint_key / endpoint_secret
    jwt_secret: str | None = None
    previous: Previous | None = None
    expires: float | None = None  # this entry is a previous endpoint URL, answered until then

    @property
    def source(self) -> str:
        return f"{self.kind}.{self.name}"

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires

    def grace(self, now: float) -> Previous | None:
        return self.previous if self.previous is not None and now < self.previous.until else None


@dataclass
class RouteTable:
    endpoints: dict[tuple[str, str], HttpSource] = field(default_factory=dict)
    webhooks: dict[str, HttpSource] = field(default_factory=dict)
    forms: dict[str, HttpSource] = field(default_factory=dict)
    sms: dict[str, HttpSource] = field(default_factory=dict)
    whatsapp: dict[str, HttpSource] = field(default_factory=dict)
