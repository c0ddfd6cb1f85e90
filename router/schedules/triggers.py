"""Slot arithmetic for `[schedules.NAME]`, on APScheduler 3's trigger classes.

No cron or calendar math is written here: every fire time comes from `CronTrigger`,
`IntervalTrigger` or `DateTrigger.get_next_fire_time`. What this module adds is the bookkeeping
around it: a *slot* is one fire time the trigger defines (timezone-aware, compared as instants);
a *cursor* is the last slot already handled (fired or skipped). `plan()` decides, for a cursor and
the current time, which slots fire now, which were missed for good and when the next one is due.

Triggers are built WITHOUT APScheduler's jitter: a slot must be the same instant every time it is
computed (it is the schedule's dedup key), so jitter delays the firing of a slot, not the slot.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from config import ScheduleConfig

# `every` slots are anchored here (midnight, 1 January 2000, in the schedule's timezone), so an
# interval schedule fires on the same grid across restarts: every = "1h" on the hour, "30s" at :00
# and :30, "1d" at the anchor's instant (elapsed time, so local midnight in winter only).
INTERVAL_ANCHOR = datetime(2000, 1, 1)
_EPSILON = timedelta(milliseconds=1)
SKIP_COUNT_LIMIT = 1000  # count missed slots one by one up to here, then jump


def build_trigger(model: ScheduleConfig) -> BaseTrigger:
    tz = ZoneInfo(model.timezone)
    if model.crontab is not None:
        return CronTrigger.from_crontab(model.crontab, timezone=tz)
    if model.every is not None:
        return IntervalTrigger(
            seconds=model.every, start_date=INTERVAL_ANCHOR.replace(tzinfo=tz), timezone=tz
        )
    assert model.at is not None
    return DateTrigger(run_date=model.at, timezone=tz)


def definition(model: ScheduleConfig) -> str:
    """What decides the slots; when it changes the schedule starts afresh (no back-fill)."""
    return json.dumps(
        {
            "cron": model.crontab,
            "every": model.every,
            "at": model.at.isoformat() if model.at else None,
            "timezone": model.timezone,
        },
        sort_keys=True,
    )


def slot_key(slot: datetime) -> str:
    """A slot as a UTC ISO 8601 string: the stable half of its dedup key."""
    utc = slot.astimezone(UTC)
    spec = "seconds" if utc.microsecond == 0 else "milliseconds"
    return utc.isoformat(timespec=spec).replace("+00:00", "Z")


def local_iso(slot: datetime, timezone: str) -> str:
    """A slot in its schedule's timezone, with the real UTC offset of that instant.

    APScheduler may hand back a wall time that does not exist (02:30 on a spring-forward day, with
    the winter offset); going through UTC names the instant by the local time it really has.
    """
    local = slot.astimezone(UTC).astimezone(ZoneInfo(timezone))
    return local.isoformat(timespec="seconds" if local.microsecond == 0 else "milliseconds")


def after(trigger: BaseTrigger, cursor: datetime | None) -> datetime | None:
    """The first slot strictly after `cursor` (the very first slot when cursor is None)."""
    # Slots are returned in UTC: two aware datetimes sharing a tzinfo compare by wall time, fold
    # ignored, so 02:30 CEST and 02:30 CET on a fall-back day would look equal in local time.
    if cursor is None:
        first = trigger.get_next_fire_time(None, datetime(1970, 1, 2, tzinfo=UTC))
        return None if first is None else first.astimezone(UTC)
    cursor = cursor.astimezone(UTC)
    slot = trigger.get_next_fire_time(None, cursor + _EPSILON)
    if slot is None:
        return None
    slot = slot.astimezone(UTC)
    return slot if slot > cursor else None  # a DateTrigger answers its run date, past or not


def upcoming(trigger: BaseTrigger, cursor: datetime | None, now: datetime, count: int = 3) -> list[datetime]:
    """The next `count` slots after both `cursor` and `now` (for `router schedules`)."""
    start = now if cursor is None or cursor < now else cursor
    out: list[datetime] = []
    if isinstance(trigger, DateTrigger):
        slot = after(trigger, cursor)
        return [slot] if slot is not None and slot > now else []
    slot = after(trigger, start)
    while slot is not None and len(out) < count:
        out.append(slot)
        slot = after(trigger, slot)
    return out


@dataclass
class Plan:
    fire: list[datetime] = field(default_factory=list)  # slots to fire now, oldest first
    missed: int = 0  # older than misfire_grace: skipped for good
    missed_more: bool = False  # counting stopped at SKIP_COUNT_LIMIT; more were skipped
    first_missed: datetime | None = None
    last_missed: datetime | None = None
    coalesced: int = 0  # within misfire_grace but folded into the latest one (coalesce = true)
    cursor: datetime | None = None  # the last slot handled once this plan is carried out
    next: datetime | None = None  # the first slot still in the future


def plan(
    trigger: BaseTrigger, cursor: datetime | None, now: datetime, *, grace: float, coalesce: bool
) -> Plan:
    """Which slots after `cursor` fire at `now`.

    A slot at or before `now` fires if it is at most `grace` seconds late, else it is missed (and
    logged by the caller). With `coalesce`, several slots due at once fire as one: the latest.
    """
    result = Plan(cursor=cursor)
    horizon = now - timedelta(seconds=grace)
    slot = after(trigger, cursor)
    while slot is not None and slot < horizon:
        result.missed += 1
        result.first_missed = result.first_missed or slot
        result.last_missed = slot
        result.cursor = slot
        if result.missed >= SKIP_COUNT_LIMIT:
            # Far behind (a long downtime on a short interval): jump to the grace window.
            jumped = trigger.get_next_fire_time(None, horizon)
            jumped = None if jumped is None else jumped.astimezone(UTC)
            slot = jumped if jumped is not None and jumped > slot else after(trigger, slot)
            result.missed_more = slot is not None
            while slot is not None and slot < horizon:  # only if the trigger could not jump
                result.cursor = slot
                slot = after(trigger, slot)
            break
        slot = after(trigger, slot)
    while slot is not None and slot <= now:
        result.fire.append(slot)
        result.cursor = slot
        slot = after(trigger, slot)
    result.next = slot
    if coalesce and len(result.fire) > 1:
        result.coalesced = len(result.fire) - 1
        result.fire = result.fire[-1:]
    return result


def jitter_delay(jitter: float) -> float:
    """Seconds to wait after a slot before firing it: uniform in [0, jitter]."""
    return random.uniform(0.0, jitter) if jitter > 0 else 0.0


def describe_spec(model: ScheduleConfig) -> dict[str, Any]:
    if model.cron is not None:
        return {"kind": "cron", "cron": model.cron}
    if model.every is not None:
        return {"kind": "every", "every": model.every}
    assert model.at is not None
    return {"kind": "at", "at": model.at.isoformat()}
