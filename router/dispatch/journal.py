"""The durable journal of signals, as trio callers use it.

The journal itself is part of the storage interface (`router.storage.base.Tx`: append, claim,
renew, settle); `Journal` runs those through the group-commit writer. Work is handed between
processes only through claims recorded there (owner + lease + epoch), never in memory.
"""

from __future__ import annotations

from typing import Any

from engine.entity import Entity
from router.storage.base import Storage
from router.storage.rows import Appended, NewSignal, Signal


class Journal:
    """Trio-facing wrapper: async writes through the group-commit writer."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def append(self, entity: Entity, **kwargs: Any) -> Appended:
        return await self.storage.append(NewSignal(entity, **kwargs))

    async def claim(self, owner: str, limit: int, lease: float) -> list[Signal]:
        return await self.storage.write(lambda tx: tx.claim(owner, limit, lease=lease))

    async def renew(self, owner: str, signal_ids: list[str], lease: float) -> None:
        await self.storage.write(lambda tx: tx.renew(owner, signal_ids, lease))
