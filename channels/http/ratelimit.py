"""Per-source rate limits (`rate_limit = "50/s"`, `rate_burst`): token buckets.

With `[http] workers = N` every worker process answers on the same port, so a bucket per
process would admit N times the configured rate. `SharedRateLimits` keeps the buckets in one
memory-mapped file that all processes of a node open (the main process makes it afresh at
start, in the node's shared-memory directory, beside the metrics): each bucket is one 48-byte
slot, updated under a POSIX record lock on just that slot, so two sources never wait on each
other. Time is CLOCK_MONOTONIC (`time.monotonic`), the same clock in every process of a
machine. Cost: two `fcntl` calls and a few `struct` reads per limited request (~3 µs here).

Across nodes nothing is shared: N nodes behind a balancer admit up to N times the rate (say so
to users; a cluster-wide limit belongs in the balancer).
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import time
from pathlib import Path
from typing import Any

SLOTS = 4096
# key hash (0 = free), rate, burst, tokens, stamp (monotonic seconds), padding
_SLOT = struct.Struct("<Qdddd8x")


class TokenBucket:
    """`rate` tokens a second, up to `burst`."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> float:
        """0 if allowed, else seconds until a token is available."""
        self.tokens, self.stamp, wait = _take(
            self.rate, self.burst, self.tokens, self.stamp, time.monotonic()
        )
        return wait


def _take(rate: float, burst: float, tokens: float, stamp: float, now: float) -> tuple[float, float, float]:
    tokens = min(burst, tokens + max(0.0, now - stamp) * rate)
    if tokens >= 1:
        return tokens - 1, now, 0.0
    return tokens, now, (1 - tokens) / rate


def _limits(source: Any) -> tuple[float, int] | None:
    rate = getattr(source.config, "rate_limit", None)
    if not rate:
        return None
    return float(rate), int(getattr(source.config, "rate_burst", None) or max(1, int(rate)))


class RateLimits:
    """Buckets of this process only (tests in one process, `router serve` without shared memory)."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, int, TokenBucket]] = {}

    def check(self, source: Any) -> float:
        limits = _limits(source)
        if limits is None:
            return 0.0
        rate, burst = limits
        entry = self._buckets.get(source.source)
        if entry is None or entry[0] != rate or entry[1] != burst:
            entry = (rate, burst, TokenBucket(rate, burst))
            self._buckets[source.source] = entry
        return entry[2].take()


class SharedRateLimits:
    """Buckets shared by every process that opens `path` (see the module docstring)."""

    def __init__(self, path: Path, *, create: bool = False) -> None:
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        self.fd = os.open(path, flags, 0o600)
        size = SLOTS * _SLOT.size
        if create:
            os.ftruncate(self.fd, 0)  # afresh: a restart after kill -9 forgets stale buckets
            os.ftruncate(self.fd, size)
        self.map = mmap.mmap(self.fd, size)
        self.slots: dict[str, int] = {}  # source -> its slot, found once per process
        self.local = RateLimits()  # if the table ever fills up (4096 limited sources)

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)

    def check(self, source: Any) -> float:
        limits = _limits(source)
        if limits is None:
            return 0.0
        rate, burst = limits
        key = int.from_bytes(hashlib.blake2b(source.source.encode(), digest_size=8).digest(), "little") or 1
        index = self.slots.get(source.source)
        start = index if index is not None else key % SLOTS
        for probe in range(SLOTS):
            slot = (start + probe) % SLOTS
            offset = slot * _SLOT.size
            fcntl.lockf(self.fd, fcntl.LOCK_EX, _SLOT.size, offset)
            try:
                owner, srate, sburst, tokens, stamp = _SLOT.unpack_from(self.map, offset)
                if owner not in (0, key):
                    continue
                now = time.monotonic()
                if owner == 0 or srate != rate or sburst != burst:  # new, or the limit changed on reload
                    tokens, stamp = float(burst), now
                tokens, stamp, wait = _take(rate, float(burst), tokens, stamp, now)
                _SLOT.pack_into(self.map, offset, key, rate, float(burst), tokens, stamp)
                self.slots[source.source] = slot
                return wait
            finally:
                fcntl.lockf(self.fd, fcntl.LOCK_UN, _SLOT.size, offset)
        return self.local.check(source)
