"""Frames between the daemon (trio) and its SMTP worker process (asyncio): 4-byte big-endian
length + one JSON object. Both ends are ours and run the same code; the link is a socketpair.

Worker → daemon:
    {"t": "ready"}                                   listening with the first config applied
    {"t": "deliver", "n": SEQ, "batch": [ENTITY…], "info": {…}}   journal these, one per mailbox
    {"t": "log", "level": 20, "logger": "router.smtp", "msg": "…"}
    {"t": "sessions", "n": 3}                        open SMTP sessions
    {"t": "refused", "reason": "no_such_mailbox"}    a command refused (counted by the daemon)
Daemon → worker:
    {"t": "config", "smtp": {[smtp] as JSON}, "mailboxes": [{"name", "address", "active"}…], "log_level": 20}
    {"t": "result", "n": SEQ, "results": [{"ok": true, "signal_id", "duplicate"} | {"ok": false, "error"}…]}
    {"t": "stop"}
ENTITY = {"id", "channel", "source", "received_at", "dedup_key", "data"}.
"""

from __future__ import annotations

import json
import struct
from typing import Any

_HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)  # one, not one per frame


def pack(message: dict[str, Any]) -> bytes:
    body = _ENCODER.encode(message).encode("utf-8")
    return _HEADER.pack(len(body)) + body


class FrameReader:
    """Feed received bytes, get whole messages back (a frame may span several reads)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buf += data
        out: list[dict[str, Any]] = []
        offset = 0
        while len(self._buf) - offset >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buf, offset)
            if size > MAX_FRAME:
                raise ValueError(f"frame of {size} bytes exceeds {MAX_FRAME}")
            end = offset + _HEADER.size + size
            if len(self._buf) < end:
                break
            out.append(json.loads(bytes(self._buf[offset + _HEADER.size : end])))
            offset = end
        if offset:
            del self._buf[:offset]
        return out
