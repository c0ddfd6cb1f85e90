"""Value coercion shared by templates and conditions.

One place decides what "empty", "a number" and "a date" mean, so that a template's `default`
filter, `coalesce()`, and the `is_empty` / `greater` / `*_than_now` condition operators agree.
"""

from __future__ import annotations

import calendar
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from jinja2 import Undefined

# "2500", "-3.5", ".5", "1e3"; and with thousands commas in groups of three: "2,500.00".
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_GROUPED_NUMBER = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
# A value whose text form is longer than this is never taken for a number or a date.
_MAX_PARSE_LEN = 100
# Epoch values at or above this are taken as milliseconds (1e11 s is the year 5138).
_EPOCH_MS_THRESHOLD = 100_000_000_000


def is_missing(value: Any) -> bool:
    """Undefined (a missing template value) or None."""
    return value is None or isinstance(value, Undefined)


def is_empty(value: Any) -> bool:
    """The router's notion of empty, used by conditions and `coalesce`.

    Empty: missing/None, a string that is empty or only whitespace (also the texts "[]" and "{}",
    which is how an empty list or table renders), an empty list/tuple/set/table.
    Not empty: 0, "0", false, and everything else.
    """
    if is_missing(value):
        return True
    if isinstance(value, str):
        stripped = value.strip()
        return stripped in ("", "[]", "{}")
    if isinstance(value, (list, tuple, set, frozenset, Mapping)):
        return len(value) == 0
    return False


def to_str(value: Any) -> str:
    """How a value renders as text: missing -> "", booleans -> "true"/"false",
    lists and tables -> compact JSON, integral floats without ".0" (2500.0 -> "2500")."""
    if isinstance(value, str):
        return value
    if is_missing(value):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, (Mapping, list, tuple)):
        return to_json(value)
    if isinstance(value, datetime):
        return format_iso(value)
    return str(value)


def plain(value: Any) -> Any:
    """Turn a template result into plain data: Undefined -> None, Markup -> str, tuples -> lists,
    recursively."""
    if isinstance(value, Undefined):
        return None
    if isinstance(value, str):
        return str(value) if type(value) is not str else value
    if isinstance(value, Mapping):
        return {(k if isinstance(k, str) else to_str(k)): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, Undefined):
        return None
    if isinstance(value, datetime):
        return format_iso(value)
    if isinstance(value, (date, Decimal)):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return list(value)
    return str(value)


def to_json(value: Any, *, pretty: bool = False) -> str:
    """Compact JSON (UTF-8 kept as is); undefined values become null."""
    value = plain(value)
    if pretty:
        return json.dumps(value, ensure_ascii=False, indent=2, default=_json_default)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)


def to_number(value: Any) -> Decimal | None:
    """A number, or None. Accepts int/float (not bool, not NaN/inf) and strings such as
    "2500", " -3.5 ", "1e3" and "2,500.00" (commas only as thousands separators in groups of 3)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if not isinstance(value, str) or len(value) > _MAX_PARSE_LEN:
        return None
    text = value.strip()
    if _PLAIN_NUMBER.fullmatch(text):
        pass
    elif _GROUPED_NUMBER.fullmatch(text):
        text = text.replace(",", "")
    else:
        return None
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the patterns only admit valid decimals
        return None


def number_to_python(number: Decimal) -> int | float:
    return int(number) if number == number.to_integral_value() and abs(number) < 10**18 else float(number)


def _from_epoch(seconds: Decimal) -> datetime | None:
    try:
        if abs(seconds) >= _EPOCH_MS_THRESHOLD:
            seconds = seconds / 1000
        return datetime.fromtimestamp(float(seconds), UTC)
    except (ArithmeticError, OSError, ValueError):
        return None


def to_datetime(value: Any, *, epoch: bool = True) -> datetime | None:
    """An aware datetime, or None.

    Accepts ISO 8601 strings (date only = midnight UTC; "Z" or an offset; no offset = UTC), a
    datetime/date object, and, when `epoch` is true, epoch seconds as a number or numeric
    string (values >= 1e11 are taken as milliseconds). "now" is the current time.
    """
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if is_missing(value) or isinstance(value, bool):
        return None
    number = to_number(value)
    if number is not None:
        return _from_epoch(number) if epoch else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > _MAX_PARSE_LEN:
        return None
    if text.lower() == "now":
        return datetime.now(UTC)
    if not text[:4].isdigit():
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def is_date_only(value: Any) -> bool:
    """True for a bare ISO date such as "2026-05-01"."""
    return isinstance(value, str) and re.fullmatch(r"\s*\d{4}-\d{2}-\d{2}\s*", value) is not None


def format_iso(moment: datetime) -> str:
    """ISO 8601 with seconds (microseconds kept when present); UTC written as "Z"."""
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def add_months(moment: datetime, months: int) -> datetime:
    """Calendar month arithmetic; the day is clamped to the target month's last day."""
    index = moment.year * 12 + (moment.month - 1) + months
    year, month = divmod(index, 12)
    if not 1 <= year <= 9999:
        raise OverflowError("date out of range")
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


_UNITS = {
    "second": "seconds",
    "minute": "minutes",
    "hour": "hours",
    "day": "days",
    "week": "weeks",
    "month": "months",
    "year": "years",
}


def normalise_unit(unit: str) -> str | None:
    key = unit.strip().lower()
    key = key[:-1] if key.endswith("s") else key
    return _UNITS.get(key)


def shift(moment: datetime, amount: float | int, unit: str) -> datetime:
    """Add `amount` `unit`s (seconds ... years) to `moment`. Raises ValueError on a bad unit or a
    fractional month/year amount, OverflowError when out of range."""
    name = normalise_unit(unit)
    if name is None:
        raise ValueError(f"unknown unit {unit!r} (use seconds, minutes, hours, days, weeks, months or years)")
    if name in ("months", "years"):
        if not float(amount).is_integer():
            raise ValueError(f"{name} must be a whole number")
        months = int(amount) * (12 if name == "years" else 1)
        return add_months(moment, months)
    return moment + timedelta(**{name: float(amount)})
