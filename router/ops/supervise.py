"""How the daemon keeps its parts running: channels restarted with backoff when they crash,
and the garbage collector tuned once everything is loaded."""

from __future__ import annotations

import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
import trio

log = structlog.get_logger("router.daemon")


class _StartOnce:
    """Forwards `started()` to the nursery once, whichever attempt of a channel gets there, and
    marks the channel up in `up` on every attempt that gets there (read by /readyz)."""

    def __init__(self, task_status: Any, name: str, up: dict[str, bool]) -> None:
        self.task_status = task_status
        self.done = False
        self.name = name
        self.up = up

    def started(self, value: Any = None) -> None:
        self.up[self.name] = True
        if not self.done:
            self.done = True
            self.task_status.started(value)


async def supervise(
    name: str,
    run: Callable[..., Awaitable[None]],
    *,
    up: dict[str, bool] | None = None,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a channel; if it crashes, log it and start it again with backoff.

    A channel that fails before it is listening is retried too, and the daemon reports ready
    only once it listens (every attempt gets the same start signal). `up[name]` says whether
    the channel is serving now: False from a crash until its next attempt has started.
    """
    up = {} if up is None else up
    up[name] = False
    status = _StartOnce(task_status, name, up)
    delay = 0.5
    while True:
        started_at = time.monotonic()
        try:
            await run(task_status=status)
            up[name] = False
            return
        except Exception:
            up[name] = False
            log.exception("channel crashed", channel=name, restart_in_s=round(delay, 3))
        await trio.sleep(delay)
        delay = 0.5 if time.monotonic() - started_at > 60 else min(delay * 2, 30.0)


# Python's default (a young-generation pass every 700 net allocations) spends most of the time of
# accepting a connection in the collector once thousands are open: 10,000 idle connections took
# ~12 s of accepting (~450 µs of CPU each) on 2 cores, ~5 s (~200 µs) with these thresholds.
GC_THRESHOLDS = (20_000, 20, 50)


def tune_gc() -> None:
    """Fewer collections, and none over the objects that exist once the daemon is loaded."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
