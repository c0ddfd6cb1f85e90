"""The virtual entity: a disposable record made of one incoming signal (SPEC §5)."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32, the ULID alphabet
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # 10 bits -> 2 characters
_last_id = [0, 0]  # (milliseconds, randomness) of the previous id made in this process
_time_part: tuple[int, str] = (-1, "")  # the previous id's millisecond and its 10 characters
_id_lock = threading.Lock()
# json.dumps with options builds an encoder per call: a third of the cost for a small entity.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)


def ulid_time(ms: int) -> str:
    """The first 10 characters of a ULID made at `ms` (milliseconds since the epoch): ids sort by
    them, so a time bound is an id bound."""
    # 48 bits in 10 characters (50 bits: the first character's top 2 are 0).
    return "".join(_PAIRS[(ms >> shift) & 1023] for shift in (40, 30, 20, 10, 0))


def new_signal_id() -> str:
    """A sortable, unique id (ULID) for a signal: 48 bits of milliseconds, 80 random bits; ids
    made in the same millisecond count up from the first (monotonic, as python-ulid's `ULID()`),
    at a third of its cost (it encodes character by character)."""
    global _time_part
    ms = time.time_ns() // 1_000_000
    with _id_lock:
        if ms == _last_id[0]:
            r = _last_id[1] + 1
            if r >> 80:  # 2**80 ids in one millisecond: move on to the next one
                ms, r = ms + 1, int.from_bytes(os.urandom(10), "big")
        else:
            r = int.from_bytes(os.urandom(10), "big")
        _last_id[0], _last_id[1] = ms, r
    head = _time_part
    if head[0] != ms:
        head = _time_part = (ms, ulid_time(ms))  # then the 80 random bits in 16 characters
    p = _PAIRS
    return (
        head[1]
        + p[r >> 70]
        + p[(r >> 60) & 1023]
        + p[(r >> 50) & 1023]
        + p[(r >> 40) & 1023]
        + p[(r >> 30) & 1023]
        + p[(r >> 20) & 1023]
        + p[(r >> 10) & 1023]
        + p[r & 1023]
    )


_second_prefix: tuple[int, str] = (-1, "")


def utcnow_iso() -> str:
    """Now in UTC as `2026-12-01T12:00:00.123Z` (the date and time formatted once a second)."""
    global _second_prefix
    now = time.time_ns() // 1_000_000
    second, ms = divmod(now, 1000)
    cached = _second_prefix
    if cached[0] != second:
        cached = _second_prefix = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{ms:03d}Z"


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
        return _ENCODER.encode(self.data)

    @classmethod
    def from_row(cls, id: str, channel: str, source: str, received_at: str, data_json: str) -> Entity:
        return cls(channel=channel, source=source, data=json.loads(data_json), id=id, received_at=received_at)
