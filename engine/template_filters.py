"""Twig-like filters and tests for the template sandbox (the functions live in
`engine.template_functions`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import pass_eval_context
from jinja2.filters import do_title
from jinja2.nodes import EvalContext
from markupsafe import Markup, escape

from engine.coercion import (
    is_missing,
    number_to_python,
    to_datetime,
    to_json,
    to_str,
)
from engine.template_functions import (
    TemplateError,
    _group,
    _int_arg,
    _numeric,
    _timezone,
    check_printf_format,
    format_currency,
    format_datetime,
)

__all__ = ["make_filters", "make_tests"]

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


def f_date(value: Any, format: Any = "F j, Y H:i", timezone: Any = None) -> str:
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
