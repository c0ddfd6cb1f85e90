"""What the engine needs from the outside world, as small protocols.

The engine never imports a channel or the router: whoever runs a workflow passes objects that
satisfy these protocols. The router's storage backends implement `Database` and `RecordTx`
(router/storage/), the router implements `DeletionSink`; channels implement `Responder` for
callers that can receive a reply.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias, TypeVar

T = TypeVar("T")

# (signal id, workflow name, step id): one step of one run, the same on every retry of that run.
EffectKey: TypeAlias = tuple[str, str, str]
Record: TypeAlias = dict[str, Any]


class StorageError(Exception):
    """The storage layer failed: I/O, a lock held too long, a constraint. Every backend raises
    this (or a subclass) instead of its driver's own errors, so callers need not know the driver."""


@dataclass(frozen=True)
class Effect:
    """A record step that already ran: the record it touched (None: it found none)."""

    record_id: str | None


class RecordTx(Protocol):
    """Records and step effects inside ONE storage transaction (the engine's view of `Tx`).

    Record ids are ULIDs; `created_at`/`updated_at` are set by the store. Invalid record types
    or field names raise `engine.records.RecordError`; storage failures `StorageError`.
    """

    def record_get(self, record_type: str, record_id: str) -> Record | None: ...

    def record_create(self, record_type: str, fields: Mapping[str, Any] | None) -> Record: ...

    def record_update(
        self, record_type: str, record_id: str, fields: Mapping[str, Any] | None
    ) -> Record | None: ...

    def record_upsert(
        self, record_type: str, key_fields: list[str], fields: Mapping[str, Any] | None
    ) -> Record:
        """Update the first record whose `key_fields` equal those in `fields`, or create one; two
        concurrent upserts of one key never create two records."""
        ...

    def record_delete(self, record_type: str, record_id: str) -> Record | None:
        """Delete a record, returning its last fields (None if absent)."""
        ...

    def record_find(
        self,
        record_type: str,
        filters: Mapping[str, Any] | None = None,
        limit: int | None = 100,
        order_by: str | None = None,
    ) -> list[Record]:
        """Records whose fields equal `filters` (None matches NULL, a list any of its values);
        `order_by` a field, `-field` descending; default oldest first. A filter on a field no
        record has matches nothing; an unknown `order_by` is ignored."""
        ...

    def record_count(self, record_type: str, filters: Mapping[str, Any] | None = None) -> int: ...

    def record_list(self, record_type: str, limit: int = 100, offset: int = 0) -> list[Record]:
        """Records of a type, newest first."""
        ...

    def record_types(self) -> list[str]: ...

    def effect_recall(self, key: EffectKey) -> Effect | None:
        """What this step of this run already wrote, or None if it has not run."""
        ...

    def effect_remember(self, key: EffectKey, record_id: str | None) -> None: ...

    def effects_forget(self, *signal_ids: str) -> None:
        """The signals are done (or pruned): a later replay is a new run whose steps write again."""
        ...


class Database(Protocol):
    """The storage seam as the engine sees it.

    `write` runs `fn(tx)` inside a writer's transaction (group-committed with other writes) and
    returns its result once the transaction is durable. `read` runs `fn(tx)` on a read
    transaction. Both take plain synchronous functions of a `RecordTx`.
    """

    async def write(self, fn: Callable[[RecordTx], T]) -> T: ...

    def read(self, fn: Callable[[RecordTx], T]) -> T: ...


class DeletionSink(Protocol):
    """Called inside the delete's own transaction so a deletion never happens without its signal;
    returns the id of the signal it journaled, if any."""

    def record_deleted(self, tx: RecordTx, record_type: str, record: Record) -> str | None: ...


@dataclass
class Reply:
    """A response a workflow produced for its caller (the `respond` action)."""

    return_type: str  # data | html | redirect
    body: str = ""
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


class Responder(Protocol):
    """The caller's side of a run: only channels that can answer provide one."""

    def respond(self, reply: Reply) -> bool:
        """Deliver a reply; returns False if one was already delivered (later ones are ignored)."""
        ...

    async def emit(self, event: str, data: str) -> None:
        """Send one SSE frame (sse endpoints)."""
        ...

    def twiml_reply(self, message: str) -> None:
        """Set the SMS/WhatsApp TwiML answer (the `reply` action)."""
        ...
