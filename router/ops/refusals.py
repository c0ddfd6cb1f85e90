"""Refused requests kept for inspection: the integrator whose signature is wrong can see it.

A request turned away before the journal (bad key or signature, 413, 429, malformed body,
unknown URL…) is kept with its time, method, path (endpoint hashes shortened, as in the logs),
remote address, headers and query with secrets masked, the first 16 KiB of its body, the status,
reason and answer we gave. Bounded so a flood cannot fill the disk: the newest `[admin]
refused_keep` (200) per source, and as many for URLs that name no source.

Off the hot path: `note` only appends to a per-source deque of that same bound (so memory is
bounded too); a task writes what gathered once a second as ONE job of the group-commit writer,
at most FLUSH_BYTES of bodies per flush, newest first (older ones would soon be dropped by the
bound anyway). A flood therefore costs the journal at most one small job a second, whatever its
rate (tests/test_refused.py measures good signals' latency during one).
"""

from __future__ import annotations

import base64
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, quote

import structlog
import trio

from channels.http.asgi import DRAIN_KEEP, loggable_path
from engine.entity import new_signal_id, utcnow_iso
from router.admin.queries import MASK, SECRET_FIELD, mask_headers
from router.storage import Storage, StorageUnavailable
from router.storage.rows import Refusal

log = structlog.get_logger("router.refused")

BODY_KEEP = DRAIN_KEEP  # 16 KiB
ANSWER_KEEP = 4096
FLUSH_INTERVAL = 1.0
FLUSH_BYTES = 256 * 1024
UNKNOWN = "unknown"


def _query(raw: str) -> str:
    """The query string with credentials (apiKey, token…) masked."""
    pairs = parse_qsl(raw, keep_blank_values=True)
    return "&".join(
        f"{quote(k, safe='')}=" + (MASK if SECRET_FIELD.search(k) else quote(v, safe="")) for k, v in pairs
    )[:2048]


def from_http(request: Any, status: int, channel: str, source: str | None, reason: str) -> Refusal:
    """A refusal from the HTTP channel's request (channels.http.asgi.Request) as answered."""
    if request.body_read and request.body:
        body, size = request.body[:BODY_KEEP], len(request.body)
    else:
        body, size = request.extra.get("drained", (b"", 0))
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > size:
            size = int(declared)  # never read (413, or closed early): what the caller announced
    answer = request.extra.get("answer")
    text = answer.body[:ANSWER_KEEP].decode("utf-8", "replace") if answer is not None else ""
    return Refusal(
        id=new_signal_id(),
        at=utcnow_iso(),
        channel=channel,
        source=source or UNKNOWN,
        method=request.method[:16],
        path=loggable_path(request.path),
        query=_query(request.query_string),
        remote=request.client,
        headers=mask_headers(request.headers),
        body=bytes(body),
        body_size=size,
        status=status,
        reason=reason[:500],
        answer=text,
        request_id=request.request_id,
    )


def from_smtp(reason: str, detail: dict[str, str]) -> Refusal:
    """A command the SMTP worker refused: the recipient stands where an HTTP path would."""
    answer = detail.get("answer", "")
    code = answer[:3]
    headers = {"mail-from": detail["mail_from"]} if detail.get("mail_from") else {}
    return Refusal(
        id=new_signal_id(),
        at=utcnow_iso(),
        channel="smtp",
        source="smtp",
        method=detail.get("command", "SMTP")[:16],
        path=detail.get("rcpt", ""),
        query="",
        remote=detail.get("peer", ""),
        headers=headers,
        body=b"",
        body_size=0,
        status=int(code) if code.isdigit() else 0,
        reason=reason,
        answer=answer[:ANSWER_KEEP],
    )


def refusal_detail(r: Refusal) -> dict[str, Any]:
    text = r.body.decode("utf-8", "replace")
    return {
        **r.summary(),
        "query": r.query,
        "headers": r.headers,
        "body": text,
        "body_base64": base64.b64encode(r.body).decode(),
        "body_kept": len(r.body),
        "body_truncated": r.body_size > len(r.body),
        "answer": r.answer,
        "request_id": r.request_id,
    }


class RefusalLog:
    """Per process: gathers refusals in memory, flushed by `run` through the storage writer."""

    def __init__(self, storage: Storage, keep: Callable[[], int]) -> None:
        self.storage = storage
        self.keep = keep
        self.pending: dict[str, deque[Refusal]] = {}
        self.written = 0
        self.skipped = 0  # gathered but not written: past a flush's byte budget, or the journal failed

    def note(self, refusal: Refusal) -> None:
        keep = self.keep()
        if keep <= 0:
            return
        queue = self.pending.get(refusal.source)
        if queue is None or queue.maxlen != keep:
            queue = self.pending[refusal.source] = deque(queue or (), maxlen=keep)
        queue.append(refusal)

    def take(self) -> list[Refusal]:
        """What the next flush writes: newest first per source, within FLUSH_BYTES of bodies."""
        budget = FLUSH_BYTES
        out: list[Refusal] = []
        for queue in self.pending.values():
            while queue:
                item = queue.pop()
                cost = len(item.body) + len(item.answer) + 256
                if cost > budget:
                    self.skipped += 1 + len(queue)
                    queue.clear()
                    break
                budget -= cost
                out.append(item)
        self.pending.clear()
        return out

    async def flush(self) -> None:
        batch = self.take()
        if not batch:
            return
        keep = max(1, self.keep())
        try:
            await self.storage.write(lambda tx: tx.refused_add(batch, keep))
            self.written += len(batch)
        except StorageUnavailable as exc:
            self.skipped += len(batch)
            log.warning("refused requests not kept", count=len(batch), error=str(exc))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(FLUSH_INTERVAL)
            await self.flush()
