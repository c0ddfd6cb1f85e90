"""What the HTTP channel serves: a table of sources, swapped atomically on reload."""

from __future__ import annotations

import time
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


class TokenBucket:
    """Per-source rate limit: `rate` tokens a second, up to `burst`."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> float:
        """0 if allowed, else seconds until a token is available."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class RateLimits:
    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, int, TokenBucket]] = {}

    def check(self, source: HttpSource) -> float:
        rate = getattr(source.config, "rate_limit", None)
        if not rate:
            return 0.0
        burst = getattr(source.config, "rate_burst", None) or max(1, int(rate))
        entry = self._buckets.get(source.source)
        if entry is None or entry[0] != rate or entry[1] != burst:
            entry = (rate, burst, TokenBucket(rate, burst))
            self._buckets[source.source] = entry
        return entry[2].take()
