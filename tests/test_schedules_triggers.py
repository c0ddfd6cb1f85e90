"""Slot math on APScheduler's triggers with fixed clocks: DST in Europe/Tirane (2026), misfires,
coalescing, interval anchoring. Nothing sleeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from config import ScheduleConfig
from router.schedules.triggers import after, build_trigger, local_iso, plan, slot_key, upcoming

TIRANE = ZoneInfo("Europe/Tirane")
# 2026 in Europe/Tirane: Sunday 29 March 02:00 CET -> 03:00 CEST (02:00-02:59 does not exist);
# Sunday 25 October 03:00 CEST -> 02:00 CET (02:00-02:59 happens twice).
SPRING = datetime(2026, 3, 28, 12, 0, tzinfo=TIRANE)
AUTUMN = datetime(2026, 10, 24, 12, 0, tzinfo=TIRANE)


def sched(**kw) -> ScheduleConfig:  # type: ignore[no-untyped-def]
    return ScheduleConfig(**kw)


def slots(model: ScheduleConfig, start: datetime, n: int) -> list[str]:
    """The next n slots after `start`, each as its real local time with offset."""
    trigger = build_trigger(model)
    out, cursor = [], start
    for _ in range(n):
        slot = after(trigger, cursor)
        assert slot is not None
        out.append(local_iso(slot, model.timezone))
        cursor = slot
    return out


# -- DST: Europe/Tirane, 2026 ---------------------------------------------------------------------


def test_spring_forward_daily_time_inside_the_gap_fires_once_an_hour_later() -> None:
    # 02:30 does not exist on 29 March: APScheduler fires at 02:30 "winter time" = 03:30 CEST.
    got = slots(sched(cron="30 2 * * *", timezone="Europe/Tirane"), SPRING, 3)
    assert got == ["2026-03-29T03:30:00+02:00", "2026-03-30T02:30:00+02:00", "2026-03-31T02:30:00+02:00"]


def test_spring_forward_hourly_skips_the_missing_hour() -> None:
    got = slots(
        sched(cron="0 * * * *", timezone="Europe/Tirane"), datetime(2026, 3, 29, 0, 30, tzinfo=TIRANE), 4
    )
    assert got == [
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T04:00:00+02:00",
        "2026-03-29T05:00:00+02:00",
    ]


def test_spring_forward_times_in_the_gap_merge_with_the_real_ones() -> None:
    # */30 between 01:00 and 03:59: 02:00 and 02:30 do not exist; they are the same instants as
    # 03:00 and 03:30, which fire once each.
    got = slots(
        sched(cron="*/30 1-3 * * *", timezone="Europe/Tirane"), datetime(2026, 3, 29, 0, 0, tzinfo=TIRANE), 5
    )
    assert got == [
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T01:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:30:00+02:00",
        "2026-03-30T01:00:00+02:00",
    ]


def test_spring_forward_time_outside_the_gap_is_unchanged() -> None:
    got = slots(sched(cron="0 3 * * *", timezone="Europe/Tirane"), SPRING, 2)
    assert got == ["2026-03-29T03:00:00+02:00", "2026-03-30T03:00:00+02:00"]
    # The UTC instant moves by an hour across the change, the wall time does not.
    t = build_trigger(sched(cron="0 3 * * *", timezone="Europe/Tirane"))
    first = after(t, SPRING)
    assert first is not None
    assert slot_key(first) == "2026-03-29T01:00:00Z"
    second = after(t, first)
    assert second is not None
    assert slot_key(second) == "2026-03-30T01:00:00Z"


def test_fall_back_daily_time_inside_the_repeated_hour_fires_twice() -> None:
    # 02:30 happens twice on 25 October (CEST, then CET): APScheduler 3.11 fires at both.
    got = slots(sched(cron="30 2 * * *", timezone="Europe/Tirane"), AUTUMN, 3)
    assert got == ["2026-10-25T02:30:00+02:00", "2026-10-25T02:30:00+01:00", "2026-10-26T02:30:00+01:00"]
    # Two distinct slots: two distinct dedup keys, so both fire even across restarts.
    t = build_trigger(sched(cron="30 2 * * *", timezone="Europe/Tirane"))
    a = after(t, AUTUMN)
    assert a is not None
    b = after(t, a)
    assert b is not None
    assert (slot_key(a), slot_key(b)) == ("2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z")


def test_fall_back_hourly_fires_for_both_two_oclocks() -> None:
    got = slots(
        sched(cron="0 * * * *", timezone="Europe/Tirane"), datetime(2026, 10, 25, 0, 30, tzinfo=TIRANE), 4
    )
    assert got == [
        "2026-10-25T01:00:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T03:00:00+01:00",
    ]


def test_fall_back_time_outside_the_repeated_hour_fires_once() -> None:
    got = slots(sched(cron="0 3 * * *", timezone="Europe/Tirane"), AUTUMN, 2)
    assert got == ["2026-10-25T03:00:00+01:00", "2026-10-26T03:00:00+01:00"]
    got = slots(sched(cron="30 1 * * *", timezone="Europe/Tirane"), AUTUMN, 2)
    assert got == ["2026-10-25T01:30:00+02:00", "2026-10-26T01:30:00+01:00"]


def test_restart_inside_the_repeated_hour_still_fires_the_second_pass() -> None:
    # The daemon fired 02:30 CEST, crashed, and comes back at 02:10 CET: the CET 02:30 is still due.
    t = build_trigger(sched(cron="30 2 * * *", timezone="Europe/Tirane"))
    first_pass = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    now = datetime(2026, 10, 25, 1, 10, tzinfo=UTC)  # 02:10 CET
    p = plan(t, first_pass, now, grace=60, coalesce=True)
    assert p.fire == [] and p.missed == 0
    assert p.next is not None and local_iso(p.next, "Europe/Tirane") == "2026-10-25T02:30:00+01:00"


def test_interval_is_elapsed_time_across_dst() -> None:
    # every = "1h" keeps 3600 s steps: the local clock shows 01:00 then 03:00 on spring day.
    got = slots(sched(every="1h", timezone="Europe/Tirane"), datetime(2026, 3, 29, 0, 30, tzinfo=TIRANE), 3)
    assert got == ["2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"]
    # every = "1d" is 86,400 s, anchored at local midnight 2000-01-01 (winter): it drifts to 01:00 in summer.
    got = slots(sched(every="1d", timezone="Europe/Tirane"), SPRING, 2)
    assert got == ["2026-03-29T00:00:00+01:00", "2026-03-30T01:00:00+02:00"]
    got = slots(sched(every="1h", timezone="Europe/Tirane"), datetime(2026, 10, 25, 1, 30, tzinfo=TIRANE), 3)
    assert got == ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"]


def test_crontab_weekday_zero_is_sunday() -> None:
    # APScheduler's own from_crontab reads 0 as Monday; the config normalises it to crontab's Sunday.
    got = slots(sched(cron="0 9 * * 0", timezone="Europe/Tirane"), SPRING, 1)
    assert got == ["2026-03-29T09:00:00+02:00"]  # 29 March 2026 is a Sunday
    got = slots(sched(cron="@hourly"), datetime(2026, 1, 1, 10, 5, tzinfo=UTC), 1)
    assert got == ["2026-01-01T11:00:00+00:00"]


# -- slots, anchoring, plan ---------------------------------------------------------------------------


def test_interval_slots_are_on_a_fixed_grid() -> None:
    t = build_trigger(sched(every="30s"))
    s = after(t, datetime(2026, 5, 1, 10, 0, 7, 123000, tzinfo=UTC))
    assert s is not None and slot_key(s) == "2026-05-01T10:00:30Z"
    s2 = after(t, s)
    assert s2 is not None and slot_key(s2) == "2026-05-01T10:01:00Z"
    # The same instant from a fresh trigger (another process, after a restart): the same slot.
    again = after(build_trigger(sched(every="30s")), datetime(2026, 5, 1, 10, 0, 29, tzinfo=UTC))
    assert again == s


def test_at_fires_once_and_only_once() -> None:
    t = build_trigger(sched(at="2026-12-01T09:00:00+01:00"))
    s = after(t, None)
    assert s is not None and slot_key(s) == "2026-12-01T08:00:00Z"
    assert after(t, s) is None
    assert upcoming(t, None, datetime(2026, 11, 1, tzinfo=UTC)) == [s]
    assert upcoming(t, s, datetime(2026, 11, 1, tzinfo=UTC)) == []


BASE = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)


def test_plan_within_grace_fires_once_coalesced() -> None:
    t = build_trigger(sched(every="10s"))
    p = plan(t, BASE, BASE + timedelta(seconds=35), grace=60, coalesce=True)
    assert [slot_key(s) for s in p.fire] == ["2026-06-01T12:00:30Z"]
    assert p.coalesced == 2 and p.missed == 0
    assert p.cursor == BASE + timedelta(seconds=30)
    assert p.next == BASE + timedelta(seconds=40)


def test_plan_without_coalesce_fires_each() -> None:
    t = build_trigger(sched(every="10s"))
    p = plan(t, BASE, BASE + timedelta(seconds=35), grace=60, coalesce=False)
    assert [slot_key(s) for s in p.fire] == [
        "2026-06-01T12:00:10Z",
        "2026-06-01T12:00:20Z",
        "2026-06-01T12:00:30Z",
    ]


def test_plan_skips_slots_older_than_grace() -> None:
    t = build_trigger(sched(every="10s"))
    p = plan(t, BASE, BASE + timedelta(seconds=35), grace=12, coalesce=False)
    assert [slot_key(s) for s in p.fire] == ["2026-06-01T12:00:30Z"]
    assert p.missed == 2 and p.first_missed == BASE + timedelta(seconds=10)
    # all too old
    p = plan(
        build_trigger(sched(cron="0 * * * *")),
        BASE,
        BASE + timedelta(hours=3, minutes=5),
        grace=60,
        coalesce=True,
    )
    assert p.fire == [] and p.missed == 3 and p.cursor == BASE + timedelta(hours=3)
    assert p.next == BASE + timedelta(hours=4)


def test_plan_exact_grace_boundary_fires() -> None:
    t = build_trigger(sched(every="10s"))
    p = plan(t, BASE, BASE + timedelta(seconds=70), grace=60, coalesce=False)
    assert [slot_key(s) for s in p.fire][0] == "2026-06-01T12:00:10Z"


def test_plan_long_downtime_jumps_instead_of_walking() -> None:
    t = build_trigger(sched(every="1s"))
    p = plan(t, BASE, BASE + timedelta(days=30), grace=5, coalesce=True)
    assert p.missed_more and p.missed >= 1000
    assert p.fire == [BASE + timedelta(days=30)]
    assert p.next == BASE + timedelta(days=30, seconds=1)


@pytest.mark.parametrize("offset,fires", [(-30, True), (-120, False)])
def test_plan_one_off_in_the_past(offset: int, fires: bool) -> None:
    at = BASE + timedelta(seconds=offset)
    t = build_trigger(sched(at=at.isoformat()))
    p = plan(t, None, BASE, grace=60, coalesce=True)
    assert p.fire == ([at] if fires else [])
    assert p.missed == (0 if fires else 1)
    assert p.cursor == at and p.next is None
