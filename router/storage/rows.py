"""The rows the storage interface hands out: plain dataclasses, the same for every backend."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeAlias

from engine.entity import Entity

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
STATUSES = (PENDING, RUNNING, DONE, FAILED)

# Where the live feed stopped. SQLite: (rowid, ""); a PostgreSQL backend: (xid, id). Opaque to callers.
FeedCursor: TypeAlias = tuple[int, str]


@dataclass(frozen=True, slots=True)
class NewSignal:
    """One `Tx.append_signal` call as a value (its keyword arguments, same defaults), so that a
    writer can hand several to `Tx.append_signals` and journal them in a few statements."""

    entity: Entity
    dedup_key: str | None = None
    dedup_window: float = 86400.0
    owner: str | None = None
    lease: float = 15.0
    ack: dict[str, Any] | None = None
    settled: bool = False


@dataclass
class Appended:
    signal_id: str
    duplicate: bool = False
    ack: dict[str, Any] | None = None  # the original acknowledgement of a duplicate, if recorded


class ClaimRef(NamedTuple):
    """One claim on one signal: the fencing token a settle must present. `epoch` counts the
    claims of the signal, so an owner whose lease was taken over cannot settle any more."""

    signal_id: str
    owner: str
    epoch: int


@dataclass
class Signal:
    id: str
    channel: str
    source: str
    received_at: str
    entity: Entity
    status: str
    attempts: int
    last_error: str | None
    dedup_key: str | None
    owner: str | None = None
    epoch: int = 0
    updated_at: float = 0.0
    ack: dict[str, Any] | None = None
    replays: int = 0  # how many times it was replayed
    replay_from: int = 0  # the first attempt of the current round (a replay starts a new one)

    @property
    def claim(self) -> ClaimRef:
        assert self.owner is not None, "signal is not claimed"
        return ClaimRef(self.id, self.owner, self.epoch)

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "channel": self.channel,
            "source": self.source,
            "received_at": self.received_at,
            "status": self.status,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "dedup_key": self.dedup_key,
            "replays": self.replays,
        }


@dataclass
class SignalQuery:
    """Which signals to list, count, export or replay (`Tx.find_signals`, `Tx.count_signals`).

    Every field narrows: `search` is text search over the id, source, dedup key and the
    payload (the entity without its `__` meta: body fields, `__body`, `__json`, an email);
    words are matched whole, all of them, each word's parts in order (`ORD-4711`); a word ending in
    `*` matches as a prefix (a search lists in commit order, which is id order but for signals
    appended at the same moment). `since`/`until` bound `received_at` (journal format). `before`/`after`
    are the id cursor (exclusive); `upto` an inclusive newest id (what a count saw)."""

    search: str | None = None
    channel: str | None = None
    source: str | None = None
    status: str | None = None
    statuses: tuple[str, ...] = ()  # any of these (bulk replay: failed and done)
    workflow: str | None = None  # signals with a run of this workflow
    since: str | None = None
    until: str | None = None
    before: str | None = None
    after: str | None = None
    upto: str | None = None
    limit: int = 50


@dataclass
class Run:
    """One workflow run of one attempt of a signal, as recorded at settlement."""

    workflow: str
    attempt: int
    status: str
    started_at: str
    duration_ms: float
    error: str | None
    trace: list[dict[str, Any]]


@dataclass
class Previous:
    """Credentials a rotation replaced, still accepted until `until` (epoch seconds): the grace
    period. Only the ones that rotation replaced are set."""

    until: float
    first_hash: str | None = None
    second_hash: str | None = None
    api_key: str | None = None
    jwt_key: str | None = None
    jwt_secret: str | None = None


@dataclass
class SourceState:
    kind: str
    name: str
    first_hash: str | None
    second_hash: str | None
    api_key: str | None
    active_override: bool | None  # None: as the config says
    jwt_key: str | None = None  # generated; a configured endpoint_key / endpoint_secret wins
    jwt_secret: str | None = None
    previous: Previous | None = None  # set after a rotation with a grace period (maybe expired since)

    def grace(self, now: float) -> Previous | None:
        """The previous credentials if their grace period still runs at `now`."""
        return self.previous if self.previous is not None and self.previous.until > now else None


@dataclass
class ScheduleState:
    name: str
    definition: str
    since: float
    cursor_ts: float | None
    last_slot: str | None
    last_fired_at: str | None
    last_signal_id: str | None

    @property
    def cursor(self) -> datetime | None:
        return None if self.cursor_ts is None else datetime.fromtimestamp(self.cursor_ts, UTC)


@dataclass
class LeaseHolder:
    owner: str
    lease_until: float


@dataclass
class Refusal:
    """A request turned away before the journal, kept for inspection (masked, body capped)."""

    id: str  # sortable (a ULID): the newest has the greatest
    at: str  # the journal's timestamp format
    channel: str
    source: str  # `kind.name`, or "unknown" for a URL that names no source
    method: str
    path: str  # endpoint URL hashes shortened, as in the logs
    query: str  # credentials masked
    remote: str
    headers: dict[str, Any]  # secrets masked
    body: bytes  # the first REFUSED_BODY bytes
    body_size: int  # as received (or declared, for a body never read)
    status: int
    reason: str
    answer: str = ""  # the body we sent back (capped)
    request_id: str = ""

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "channel": self.channel,
            "source": self.source,
            "method": self.method,
            "path": self.path,
            "remote": self.remote,
            "status": self.status,
            "reason": self.reason,
            "body_size": self.body_size,
        }
