"""Crontab expressions: alias expansion, validation and APScheduler 3 compatibility.

APScheduler 3's ``CronTrigger.from_crontab`` numbers weekdays from Monday (0 = Monday), unlike
crontab (0 and 7 = Sunday). :func:`normalize_crontab` rewrites the day-of-week field with day
names so that ``CronTrigger.from_crontab(normalize_crontab(expr))`` has crontab semantics.
"""

from __future__ import annotations

__all__ = ["CRON_ALIASES", "normalize_crontab", "validate_crontab"]

CRON_ALIASES: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_DAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_HELP = 'use 5 fields "minute hour day-of-month month day-of-week" (e.g. "0 2 * * *") or one of ' + ", ".join(
    CRON_ALIASES
)


def _day_number(token: str, expr: str) -> int:
    token = token.strip().lower()
    if token in _DAY_NAMES:
        return _DAY_NAMES.index(token)
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token) % 7
    raise ValueError(f"invalid day of week {token!r} in {expr!r}: use 0-7 (0 and 7 = Sunday) or sun-sat")


def _weekdays(field: str, expr: str) -> set[int]:
    days: set[int] = set()
    for part in field.split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ValueError(f"invalid step {step_text!r} in {expr!r}")
            step = int(step_text)
        if base == "*":
            start, end = 0, 6
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _day_number(first, expr), _day_number(last, expr)
            if last.strip() == "7":
                end = 7
            if start > end:
                raise ValueError(f"invalid day-of-week range {base!r} in {expr!r}")
        else:
            start = _day_number(base, expr)
            end = 6 if step_text else start
        days.update(day % 7 for day in range(start, end + 1, step))
    return days


def normalize_crontab(expr: str) -> str:
    """Expand aliases and spell the day-of-week field as day names (see module docstring)."""
    text = " ".join(expr.split())
    text = CRON_ALIASES.get(text.lower(), text)
    fields = text.split(" ")
    if len(fields) != 5:
        raise ValueError(f"cron expression {expr!r} has {len(fields)} fields, expected 5; {_HELP}")
    if fields[4] != "*":
        days = _weekdays(fields[4], expr)
        fields[4] = ",".join(_DAY_NAMES[day] for day in sorted(days))
    return " ".join(fields)


def validate_crontab(expr: str, timezone: str = "UTC") -> str:
    """Return the normalised expression; ValueError with a clear message when invalid."""
    from apscheduler.triggers.cron import CronTrigger

    if not isinstance(expr, str) or not expr.strip():
        raise ValueError(f"cron expression must be a non-empty string; {_HELP}")
    normalized = normalize_crontab(expr)
    try:
        CronTrigger.from_crontab(normalized, timezone=timezone)
    except ValueError as exc:
        raise ValueError(f"invalid cron expression {expr!r}: {exc}; {_HELP}") from None
    return normalized
