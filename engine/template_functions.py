"""The functions, filters and tests of router templates (Twig-like, as Flexie Scripting).

`engine.templates` installs these into its Jinja2 sandbox; this module holds no Jinja state.
Every function and filter treats a missing (undefined) or null value as empty rather than
failing, so a template over partial data still renders.
"""

from __future__ import annotations

import calendar
import hmac
import json
import re
import string
import uuid as _uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2.exceptions

from engine.coercion import (
    format_iso,
    is_date_only,
    is_empty,
    is_missing,
    number_to_python,
    plain,
    shift,
    to_datetime,
    to_number,
    to_str,
)

if TYPE_CHECKING:  # pragma: no cover
    from engine.templates import RecordLookups

__all__ = [
    "TemplateError",
    "check_printf_format",
    "check_str_format",
    "format_currency",
    "make_globals",
]

MAX_FIND_MANY = 1000
MAX_FORMAT_WIDTH = 1000


class TemplateError(jinja2.exceptions.TemplateError):
    """A template could not be compiled or rendered. The message says what went wrong and is
    safe to show. (It derives from Jinja's own TemplateError, so code that catches that one,
    or plain Exception, catches it too.)"""


# --------------------------------------------------------------------------------- helpers


def _numeric(value: Any) -> Decimal | None:
    return None if is_missing(value) else to_number(value)


def _timezone(name: Any) -> tzinfo:
    if is_missing(name) or name == "" or str(name).upper() in ("UTC", "Z"):
        return UTC
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise TemplateError(f"unknown timezone {str(name)!r}") from exc


_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_MONTHS = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
]  # fmt: skip


def _offset(moment: datetime, colon: bool) -> str:
    delta = moment.utcoffset()
    seconds = int(delta.total_seconds()) if delta is not None else 0
    sign = "-" if seconds < 0 else "+"
    hours, minutes = divmod(abs(seconds) // 60, 60)
    return f"{sign}{hours:02d}{':' if colon else ''}{minutes:02d}"


def _php_char(moment: datetime, char: str) -> str:
    """One PHP date() format character (English names, as PHP)."""
    m = moment
    if char == "d":
        return f"{m.day:02d}"
    if char == "D":
        return _DAYS[m.weekday()][:3]
    if char == "j":
        return str(m.day)
    if char == "l":
        return _DAYS[m.weekday()]
    if char == "N":
        return str(m.isoweekday())
    if char == "S":
        if 11 <= m.day % 100 <= 13:
            return "th"
        return {1: "st", 2: "nd", 3: "rd"}.get(m.day % 10, "th")
    if char == "w":
        return str(m.isoweekday() % 7)
    if char == "z":
        return str(m.timetuple().tm_yday - 1)
    if char == "W":
        return f"{m.isocalendar()[1]:02d}"
    if char == "F":
        return _MONTHS[m.month - 1]
    if char == "m":
        return f"{m.month:02d}"
    if char == "M":
        return _MONTHS[m.month - 1][:3]
    if char == "n":
        return str(m.month)
    if char == "t":
        return str(calendar.monthrange(m.year, m.month)[1])
    if char == "L":
        return "1" if calendar.isleap(m.year) else "0"
    if char == "o":
        return str(m.isocalendar()[0])
    if char == "Y":
        return f"{m.year:04d}"
    if char == "y":
        return f"{m.year % 100:02d}"
    if char == "a":
        return "am" if m.hour < 12 else "pm"
    if char == "A":
        return "AM" if m.hour < 12 else "PM"
    if char == "g":
        return str(m.hour % 12 or 12)
    if char == "G":
        return str(m.hour)
    if char == "h":
        return f"{m.hour % 12 or 12:02d}"
    if char == "H":
        return f"{m.hour:02d}"
    if char == "i":
        return f"{m.minute:02d}"
    if char == "s":
        return f"{m.second:02d}"
    if char == "u":
        return f"{m.microsecond:06d}"
    if char == "v":
        return f"{m.microsecond // 1000:03d}"
    if char == "e":
        return getattr(m.tzinfo, "key", None) or m.tzname() or "UTC"
    if char == "T":
        return m.tzname() or "UTC"
    if char == "P":
        return _offset(m, True)
    if char == "p":
        return "Z" if not m.utcoffset() else _offset(m, True)
    if char == "O":
        return _offset(m, False)
    if char == "Z":
        delta = m.utcoffset()
        return str(int(delta.total_seconds()) if delta is not None else 0)
    if char == "c":
        return m.replace(microsecond=0).isoformat()
    if char == "r":
        return f"{_DAYS[m.weekday()][:3]}, {m.day:02d} {_MONTHS[m.month - 1][:3]} {m.year:04d} {m:%H:%M:%S} {_offset(m, False)}"
    if char == "U":
        return str(int(m.timestamp()))
    return char


def format_datetime(moment: datetime, fmt: str) -> str:
    """Format with PHP date() characters (Twig's `date` filter: "Y-m-d H:i"), or with strftime
    when the format contains a "%" ("%Y-%m-%d")."""
    if "%" in fmt:
        return moment.strftime(fmt)
    out: list[str] = []
    escaped = False
    for char in fmt:
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            out.append(_php_char(moment, char))
    return "".join(out)


_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def check_printf_format(fmt: str) -> None:
    """Refuse `%`-formats whose width/precision would allocate huge strings."""
    for match in _PRINTF_SPEC.finditer(fmt):
        for part in match.groups():
            if part == "*" or (part is not None and int(part) > MAX_FORMAT_WIDTH):
                raise TemplateError(f"format width or precision above {MAX_FORMAT_WIDTH} is not allowed")


def check_str_format(fmt: str) -> None:
    """Refuse str.format specs whose width/precision would allocate huge strings."""
    try:
        parts = list(string.Formatter().parse(fmt))
    except ValueError as exc:
        raise TemplateError(f"invalid format string: {exc}") from exc
    for _literal, _field, spec, _conv in parts:
        if not spec:
            continue
        if "{" in spec or any(int(n) > MAX_FORMAT_WIDTH for n in re.findall(r"\d+", spec)):
            raise TemplateError(f"format width or precision above {MAX_FORMAT_WIDTH} is not allowed")


# ------------------------------------------------------------------------------- functions


def _filters_from(name: str, args: tuple[Any, ...]) -> dict[str, Any]:
    if len(args) == 1 and isinstance(args[0], Mapping):
        return {str(k): plain(v) for k, v in args[0].items()}
    if len(args) % 2:
        raise TemplateError(f"{name}: expects field/value pairs or one table of filters")
    filters: dict[str, Any] = {}
    for i in range(0, len(args), 2):
        field = args[i]
        if not isinstance(field, str) or not field:
            raise TemplateError(f"{name}: field names must be non-empty text")
        filters[field] = plain(args[i + 1])
    return filters


def make_globals(lookups: RecordLookups | None) -> dict[str, Callable[..., Any]]:
    """The template functions; the record look-ups are bound to `lookups`."""

    def _need_lookups(name: str, record_type: Any) -> RecordLookups:
        if lookups is None:
            raise TemplateError("record lookups are not available here")
        if not isinstance(record_type, str) or not record_type:
            raise TemplateError(f"{name}: the record type must be non-empty text")
        return lookups

    def _call(name: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except TemplateError:
            raise
        except Exception as exc:  # a store error, shown as a template error
            raise TemplateError(f"{name} failed: {exc}") from exc

    def find_one(record_type: Any, *args: Any) -> Any:
        store = _need_lookups("findOne", record_type)
        filters = _filters_from("findOne", args)
        return _call("findOne", lambda: store.find_one(record_type, filters))

    def find_many(record_type: Any, *args: Any, limit: Any = 100, order_by: Any = None) -> Any:
        store = _need_lookups("findMany", record_type)
        filters = _filters_from("findMany", args)
        count = _numeric(limit)
        if count is None or count < 1:
            raise TemplateError("findMany: limit must be a positive number")
        size = min(int(count), MAX_FIND_MANY)
        order = None if is_missing(order_by) or order_by == "" else str(order_by)
        return _call("findMany", lambda: store.find_many(record_type, filters, limit=size, order_by=order))

    def find_count(record_type: Any, *args: Any) -> Any:
        store = _need_lookups("findCount", record_type)
        filters = _filters_from("findCount", args)
        return _call("findCount", lambda: store.find_count(record_type, filters))

    return {
        "formatCurrency": format_currency,
        "findOne": find_one,
        "findMany": find_many,
        "findCount": find_count,
        "now": now,
        "dateAdd": date_add,
        "jsonDecode": json_decode,
        "uuid": new_uuid,
        "hashHmac": hash_hmac,
        "jwtEncode": jwt_encode,
        "coalesce": coalesce,
    }


def _group(number: Decimal, decimals: int, dec_point: str = ".", thousands_sep: str = ",") -> str:
    decimals = max(0, min(decimals, 20))
    quantum = Decimal(1).scaleb(-decimals)
    try:
        rounded = number.quantize(quantum, rounding=ROUND_HALF_UP)
    except InvalidOperation as exc:
        raise TemplateError("the number is too large to format") from exc
    if rounded == 0:
        rounded = abs(rounded)  # no "-0.00"
    text = f"{rounded:,.{decimals}f}"
    return text.replace(",", "\0").replace(".", dec_point).replace("\0", thousands_sep)


def _int_arg(name: str, value: Any, default: int) -> int:
    if is_missing(value):
        return default
    number = to_number(value)
    if number is None or number != number.to_integral_value():
        raise TemplateError(f"{name} must be a whole number")
    return int(number)


def format_currency(value: Any, symbol: Any = "", decimals: Any = 2) -> str:
    """formatCurrency(2500, "€") -> "€2,500.00"; negative -> "-€2,500.00"; not a number -> ""."""
    number = _numeric(value)
    if number is None:
        return ""
    text = _group(abs(number), _int_arg("formatCurrency decimals", decimals, 2))
    negative = number < 0 and text.strip("0.,") != ""
    return f"{'-' if negative else ''}{to_str(symbol)}{text}"


def now(format: Any = None, timezone: Any = None) -> str:  # `format`: the template's own name
    """now() -> "2026-05-01T09:30:00Z"; now("Y-m-d") or now("%Y-%m-%d") formats; a timezone name
    as second argument converts first."""
    moment = datetime.now(UTC).replace(microsecond=0).astimezone(_timezone(timezone))
    if is_missing(format) or format == "":
        return format_iso(moment)
    return format_datetime(moment, to_str(format))


def date_add(value: Any, amount: Any, unit: Any = "days") -> str | None:
    """dateAdd(date, amount, unit) -> ISO 8601 text, or None when `date` is missing or not a date.

    `date`: ISO 8601 text, epoch seconds, or "now". Units: seconds, minutes, hours, days, weeks,
    months, years (singular accepted). A bare date ("2026-05-01") with a whole-day unit stays a
    bare date; otherwise the result keeps the input's UTC offset (no offset = UTC, written "Z").
    """
    moment = to_datetime(value)
    if moment is None:
        return None
    number = _numeric(amount)
    if number is None:
        raise TemplateError("dateAdd: amount must be a number")
    try:
        result = shift(moment, number_to_python(number), to_str(unit))
    except ValueError as exc:
        raise TemplateError(f"dateAdd: {exc}") from exc
    except OverflowError as exc:
        raise TemplateError("dateAdd: date out of range") from exc
    if is_date_only(value) and result.time() == datetime.min.time():
        return result.date().isoformat()
    return format_iso(result)


def json_decode(value: Any) -> Any:
    """jsonDecode('{"a": 1}') -> {"a": 1}; invalid or missing -> None; a table or list is
    returned as is."""
    if isinstance(value, (Mapping, list)):
        return value
    if is_missing(value) or not isinstance(value, (str, bytes)):
        return None
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return None


def new_uuid() -> str:
    """A random UUID (version 4) as text."""
    return str(_uuid.uuid4())


_HMAC_ALGOS = {"md5", "sha1", "sha256", "sha384", "sha512"}


def hash_hmac(algo: Any, data: Any, key: Any) -> str:
    """hashHmac("sha256", data, key) -> hex digest (as PHP's hash_hmac)."""
    name = to_str(algo).lower().replace("-", "")
    if name not in _HMAC_ALGOS:
        raise TemplateError(
            f"hashHmac: unknown algorithm {to_str(algo)!r} (use {', '.join(sorted(_HMAC_ALGOS))})"
        )
    return hmac.new(to_str(key).encode(), to_str(data).encode(), name).hexdigest()


def jwt_encode(payload: Any, secret: Any, algo: Any = "HS256") -> str:
    """jwtEncode({"sub": "1"}, secret) -> a signed JWT (PyJWT); default HS256."""
    import jwt  # PyJWT pulls in cryptography (~50 ms, ~5 MB): only for templates that sign

    claims = plain(payload)
    if not isinstance(claims, dict):
        raise TemplateError("jwtEncode: the payload must be a table")
    if is_missing(secret) or secret == "":
        raise TemplateError("jwtEncode: the secret is empty")
    try:
        return jwt.encode(claims, to_str(secret), algorithm=to_str(algo))
    except (NotImplementedError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
        raise TemplateError(f"jwtEncode: {exc}") from exc


def coalesce(*values: Any) -> Any:
    """The first value that is not empty (see `engine.coercion.is_empty`), else None."""
    for value in values:
        if not is_empty(value):
            return value
    return None
