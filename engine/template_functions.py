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
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2.exceptions
import jwt
from jinja2 import pass_eval_context
from jinja2.filters import do_title
from jinja2.nodes import EvalContext
from markupsafe import Markup, escape

from engine.coercion import (
    format_iso,
    is_date_only,
    is_empty,
    is_missing,
    number_to_python,
    plain,
    shift,
    to_datetime,
    to_json,
    to_number,
    to_str,
)

if TYPE_CHECKING:  # pragma: no cover
    from engine.templates import RecordLookups

__all__ = [
    "TemplateError",
    "make_filters",
    "make_globals",
    "make_tests",
    "check_printf_format",
    "check_str_format",
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


def now(format: Any = None, timezone: Any = None) -> str:  # noqa: A002 - the template name
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


# --------------------------------------------------------------------------------- filters


def f_default(value: Any, default_value: Any = "", boolean: bool = False) -> Any:
    """Twig's default: the fallback for undefined, null, "", false and an empty list/table."""
    if boolean:
        return value if value else default_value
    if is_missing(value) or value is False or value == "":
        return default_value
    if isinstance(value, (list, tuple, Mapping)) and len(value) == 0:
        return default_value
    return value


def f_upper(value: Any) -> str:
    return to_str(value).upper()


def f_lower(value: Any) -> str:
    return to_str(value).lower()


def f_title(value: Any) -> str:
    return do_title(to_str(value))


def f_capitalize(value: Any) -> str:
    return to_str(value).capitalize()


def f_trim(value: Any, character_mask: Any = None, side: str = "both") -> str:
    text = to_str(value)
    chars = None if is_missing(character_mask) else to_str(character_mask)
    if side == "left":
        return text.lstrip(chars)
    if side == "right":
        return text.rstrip(chars)
    return text.strip(chars)


def f_number_format(value: Any, decimals: Any = 0, dec_point: Any = ".", thousands_sep: Any = ",") -> str:
    number = _numeric(value)
    if number is None:
        return ""
    return _group(
        number, _int_arg("number_format decimals", decimals, 0), to_str(dec_point), to_str(thousands_sep)
    )


@pass_eval_context
def f_json_encode(eval_ctx: EvalContext, value: Any, pretty: bool = False) -> str:
    """Compact JSON; in HTML templates the result is made safe to embed (<, >, &, ' escaped as
    \\u sequences) and is not escaped again."""
    text = to_json(value, pretty=bool(pretty))
    if eval_ctx.autoescape:
        return Markup(
            text.replace("<", "\\u003c")
            .replace(">", "\\u003e")
            .replace("&", "\\u0026")
            .replace("'", "\\u0027")
        )
    return text


def f_date(value: Any, format: Any = "F j, Y H:i", timezone: Any = None) -> str:  # noqa: A002
    """Twig's date: PHP format characters ("Y-m-d H:i:s") or strftime ("%Y-%m-%d"); value is ISO
    8601 text, epoch seconds or "now"; missing or unparsable -> ""."""
    moment = to_datetime(value)
    if moment is None:
        return ""
    if not is_missing(timezone):
        moment = moment.astimezone(_timezone(timezone))
    return format_datetime(moment, to_str(format))


def f_url_encode(value: Any) -> str:
    """Percent-encode text (spaces as %20), or a table as a query string."""
    if isinstance(value, Mapping):
        pairs = [(str(k), to_str(v)) for k, v in value.items() if not is_missing(v)]
        return urlencode(pairs, quote_via=quote)
    return quote(to_str(value), safe="")


def f_raw(value: Any) -> Markup:
    if isinstance(value, Markup):
        return value
    return Markup(to_str(value))


def f_length(value: Any) -> int:
    if is_missing(value):
        return 0
    if isinstance(value, (str, list, tuple, Mapping, set, frozenset)):
        return len(value)
    return len(to_str(value))


def f_split(value: Any, delimiter: Any = "", limit: Any = None) -> list[str]:
    """Twig's split: by delimiter (a positive limit caps the parts, the last keeping the rest;
    a negative one drops that many from the end); an empty delimiter splits into chunks of
    `limit` characters (default 1)."""
    if is_missing(value):
        return []
    text = to_str(value)
    sep = to_str(delimiter)
    count = None if is_missing(limit) else _int_arg("split limit", limit, 0)
    if sep == "":
        size = count if count and count > 0 else 1
        return [text[i : i + size] for i in range(0, len(text), size)]
    if count is None or count == 0:
        return text.split(sep)
    if count > 0:
        return text.split(sep, count - 1)
    return text.split(sep)[:count]


@pass_eval_context
def f_join(eval_ctx: EvalContext, value: Any, glue: Any = "", and_: Any = None) -> str:
    """Twig's join(glue, and): join(", ", " and ") -> "a, b and c"; a table joins its values."""
    if is_missing(value):
        return ""
    items = (
        list(value.values())
        if isinstance(value, Mapping)
        else list(value)
        if not isinstance(value, str)
        else [value]
    )
    parts: list[str]
    glue_text = to_str(glue)
    last_glue = glue_text if is_missing(and_) else to_str(and_)
    if eval_ctx.autoescape:
        parts = [str(escape(v if isinstance(v, str) else to_str(v))) for v in items]
        glue_text, last_glue = str(escape(glue_text)), str(escape(last_glue))
    else:
        parts = [to_str(v) for v in items]
    if len(parts) < 2:
        text = "".join(parts)
    else:
        text = glue_text.join(parts[:-1]) + last_glue + parts[-1]
    return Markup(text) if eval_ctx.autoescape else text


def f_first(value: Any) -> Any:
    if is_missing(value):
        return None
    if isinstance(value, Mapping):
        return next(iter(value.values()), None)
    if isinstance(value, (str, list, tuple)):
        return value[0] if value else None
    if isinstance(value, (int, float)):
        text = to_str(value)
        return text[0] if text else None
    return next(iter(value), None)


def f_last(value: Any) -> Any:
    if is_missing(value):
        return None
    if isinstance(value, Mapping):
        return list(value.values())[-1] if value else None
    if isinstance(value, (str, list, tuple)):
        return value[-1] if value else None
    if isinstance(value, (int, float)):
        text = to_str(value)
        return text[-1] if text else None
    items = list(value)
    return items[-1] if items else None


def f_keys(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        return list(value.keys())
    if isinstance(value, (list, tuple)):
        return list(range(len(value)))
    return []


def f_abs(value: Any) -> Any:
    number = _numeric(value)
    if number is None:
        return None
    return number_to_python(abs(number))


def f_round(value: Any, precision: Any = 0, method: str = "common") -> Any:
    """Twig's round: method common (half away from zero), ceil or floor."""
    number = _numeric(value)
    if number is None:
        return None
    places = _int_arg("round precision", precision, 0)
    rounding = {"common": ROUND_HALF_UP, "ceil": ROUND_CEILING, "floor": ROUND_FLOOR}.get(method)
    if rounding is None:
        raise TemplateError("round: method must be common, ceil or floor")
    try:
        result = number.quantize(Decimal(1).scaleb(-places), rounding=rounding)
    except InvalidOperation as exc:
        raise TemplateError("round: the number is too large") from exc
    return int(result) if places <= 0 else float(result)


def f_replace(value: Any, old: Any, new: Any = None, count: Any = None) -> str:
    """Twig's replace({"%name%": "Ann"}) (longest key first, one pass, as PHP strtr) or Jinja's
    replace("old", "new"[, count])."""
    text = to_str(value)
    if isinstance(old, Mapping):
        mapping = {to_str(k): to_str(v) for k, v in old.items() if to_str(k) != ""}
        if not mapping:
            return text
        pattern = re.compile("|".join(re.escape(k) for k in sorted(mapping, key=len, reverse=True)))
        return pattern.sub(lambda m: mapping[m.group(0)], text)
    if is_missing(new):
        raise TemplateError("replace: give a table of replacements, or the text to find and its replacement")
    times = -1 if is_missing(count) else _int_arg("replace count", count, -1)
    return text.replace(to_str(old), to_str(new), times)


def f_slice(value: Any, start: Any, length: Any = None) -> Any:
    """Twig's slice(start, length) on text, lists and tables; negative values count from the end."""
    if is_missing(value):
        return None
    begin = _int_arg("slice start", start, 0)
    size = None if is_missing(length) else _int_arg("slice length", length, 0)
    if isinstance(value, Mapping):
        items = list(value.items())
        return dict(_slice_seq(items, begin, size))
    seq = value if isinstance(value, (str, list, tuple)) else to_str(value)
    return _slice_seq(seq, begin, size)


def _slice_seq(seq: Any, begin: int, size: int | None) -> Any:
    if size is None:
        return seq[begin:]
    if size < 0:
        return seq[begin:size]
    start_index = begin if begin >= 0 else max(len(seq) + begin, 0)
    return seq[start_index : start_index + size]


@pass_eval_context
def f_nl2br(eval_ctx: EvalContext, value: Any) -> str:
    text = to_str(value)
    if eval_ctx.autoescape:
        return Markup(str(escape(text)).replace("\n", "<br />\n"))
    return text.replace("\n", "<br />\n")


def f_striptags(value: Any) -> str:
    return Markup(to_str(value)).striptags()


def f_merge(value: Any, other: Any) -> Any:
    """Twig's merge: lists concatenate, tables merge (right wins); missing acts as empty."""
    left = None if is_missing(value) else value
    right = None if is_missing(other) else other
    if isinstance(left, Mapping) or (left is None and isinstance(right, Mapping)):
        merged = dict(left or {})
        if right is not None:
            if not isinstance(right, Mapping):
                raise TemplateError("merge: a table can only be merged with a table")
            merged.update(right)
        return merged
    if left is None:
        left = []
    if right is None:
        right = []
    if isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
        return [*left, *right]
    if isinstance(left, (list, tuple)) and isinstance(right, Mapping):
        return [*left, *right.values()]
    raise TemplateError("merge: expects two lists or two tables")


def f_format(value: Any, *args: Any, **kwargs: Any) -> str:
    fmt = to_str(value)
    check_printf_format(fmt)
    return fmt % (kwargs or args)


def make_filters() -> dict[str, Callable[..., Any]]:
    """Filters as Twig's, installed over Jinja's own (which stay available otherwise)."""
    return {
        "default": f_default,
        "d": f_default,
        "upper": f_upper,
        "lower": f_lower,
        "title": f_title,
        "capitalize": f_capitalize,
        "trim": f_trim,
        "number_format": f_number_format,
        "json_encode": f_json_encode,
        "date": f_date,
        "url_encode": f_url_encode,
        "raw": f_raw,
        "length": f_length,
        "count": f_length,
        "split": f_split,
        "join": f_join,
        "first": f_first,
        "last": f_last,
        "keys": f_keys,
        "abs": f_abs,
        "round": f_round,
        "replace": f_replace,
        "slice": f_slice,
        "nl2br": f_nl2br,
        "striptags": f_striptags,
        "merge": f_merge,
        "format": f_format,
        "format_currency": format_currency,
    }


def _test_empty(value: Any) -> bool:
    """`x is empty` as Twig: undefined, null, "", false, [] and {}."""
    return f_default(value, _EMPTY_SENTINEL) is _EMPTY_SENTINEL


_EMPTY_SENTINEL = object()


def make_tests() -> dict[str, Callable[..., bool]]:
    return {
        "empty": _test_empty,
        "null": is_missing,
    }
