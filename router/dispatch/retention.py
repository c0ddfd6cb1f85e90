"""Retention: the journal forgets settled signals older than `[router] retention`.

Done and failed signals older than the retention (by their id: a ULID, whose first 10
characters are its arrival time, so the primary key serves the range), with their runs and
step effects, are deleted in batches of `BATCH`, each its own short transaction through the
group-commit writer so arrivals keep flowing between them. Pending and running signals are never
pruned, whatever their age. Expired idempotency keys go too. Uploaded files stay: records may
point at them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
import trio
from ulid import ULID

from router.storage import Storage, StorageUnavailable

log = structlog.get_logger("router.retention")

BATCH = 2000
MAX_INTERVAL = 3600.0
STANDBY = 1.0


def id_cutoff(before: float) -> str:
    """Signal ids below this string arrived before `before` (epoch seconds)."""
    return str(ULID.from_timestamp(max(0.0, before)))[:10]


async def prune(storage: Storage, retention: float, now: float | None = None) -> tuple[int, int]:
    """One pass: (signals pruned, idempotency keys expired)."""
    now = time.time() if now is None else now
    cutoff = id_cutoff(now - retention)
    signals = 0
    while True:
        n = await storage.write(lambda tx: tx.prune_settled(cutoff, BATCH))
        signals += n
        if n < BATCH:
            break
        await trio.lowlevel.checkpoint()  # let waiting appends into the next group commit
    keys = await storage.write(lambda tx: tx.prune_dedup(now))
    return signals, keys


async def run_retention(
    storage: Storage, retention: Callable[[], float], active: Callable[[], bool] = lambda: True
) -> None:
    """Prune now and then every min(retention / 2, 1 h); `retention()` is read each time (reloads).
    While `active()` is false (another node holds the scheduler lease) it waits, looking every
    `STANDBY` seconds, and prunes as soon as it becomes true."""
    while True:
        if not active():
            await trio.sleep(STANDBY)
            continue
        keep = retention()
        if keep > 0:
            try:
                signals, keys = await prune(storage, keep)
            except StorageUnavailable as exc:
                log.warning("retention pass failed", error=str(exc))
            else:
                if signals or keys:
                    log.info("pruned", signals=signals, idempotency_keys=keys, older_than_s=round(keep))
        await trio.sleep(min(keep / 2, MAX_INTERVAL) if keep > 0 else MAX_INTERVAL)
