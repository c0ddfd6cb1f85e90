"""Replay: run failed or done signals again, one by id or every match of a filter.

A replay re-executes. It is a new round of attempts (`Tx.requeue`): every workflow listening to
the signal's source runs again and is recorded as new runs with the next attempt numbers, its
record steps write again, and its webhook steps send a key of their own (`…:replay-N`), so a
receiver that drops repeated keys still sees the replay. Retries and runs started over after a
crash stay inside their round and skip what it already did.

A signal whose source left the config, or that no workflow listens to any more, is not queued:
the caller is told why (nothing would run). Bulk replays spread their signals over `spread`
seconds (each gets a random delay), so a downstream that just recovered is not hit all at once.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from router.storage import Tx
from router.storage.rows import DONE, FAILED

REPLAYABLE = (FAILED, DONE)
# The default spread of a bulk replay: this many signals a second, at most MAX_SPREAD seconds.
SPREAD_RATE = 50.0
MAX_SPREAD = 300.0


def default_spread(count: int) -> float:
    return 0.0 if count <= 1 else min(MAX_SPREAD, count / SPREAD_RATE)


@dataclass
class Outcome:
    replayed: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


def why_not(
    cfg: Any, listeners: Callable[[str], Sequence[Any]], source: str, status: str | None
) -> str | None:
    """Why this signal cannot be replayed now, or None."""
    if status is None:
        return "not found"
    if status not in REPLAYABLE:
        return f"signal is {status}; only failed or done signals replay"
    if not listeners(source):
        if source not in cfg.source_names() and not source.startswith("deletions."):
            return f"source {source} no longer exists in the config: nothing would run"
        return f"no workflow listens to {source} any more: nothing would run"
    return None


def replay(
    tx: Tx,
    ids: Sequence[str],
    cfg: Any,
    listeners: Callable[[str], Sequence[Any]],
    *,
    spread: float = 0.0,
    rng: random.Random | None = None,
) -> Outcome:
    """Requeue each signal that can run again (one transaction); the others with their reason."""
    rng = rng or random.Random()
    out = Outcome()
    for sid in ids:
        sig = tx.get_signal(sid)
        problem = why_not(cfg, listeners, sig.source, sig.status) if sig is not None else "not found"
        if problem is None and tx.requeue(sid, delay=rng.uniform(0, spread) if spread > 0 else 0.0):
            out.replayed.append(sid)
        else:
            out.skipped.append({"id": sid, "reason": problem or "signal changed state meanwhile"})
    return out
