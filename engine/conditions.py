"""Virtual conditions: the yes/no branches of a workflow (SPEC §8).

A condition is `{ left = "…", operator = "…", right = … }`, or a group `{ all = [ … ] }` /
`{ any = [ … ] }` whose members are conditions or groups, nesting freely. `left` and `right`
are templates, rendered against the entity before they are compared.

How values compare:

- Both sides are rendered first; text is stripped of surrounding whitespace. A missing value
  is the empty text "" (so `equal ""` is true for a missing field).
- **Numbers compare as numbers when both sides are numbers**: JSON numbers, or text such as
  "2500", "-3.5", "1e3", and "2,500.00" (a comma only as a thousands separator, in groups of
  three; "2.500,00" is not a number). So "2500" equals 2500.0 and "007" equals "7".
  Booleans are not numbers: they read as the text "true" / "false".
- Otherwise sides compare as text, **case-sensitively** (`equal`, `contains`, `begins_with`,
  `ends_with`, `matches` alike). For a case-insensitive test lower both sides in the template
  (`{{ __data.email|lower }}`) or use `matches` with `(?i)`. Lists and tables read as compact
  JSON text.
- `greater`, `greater_or_equal`, `less`, `less_or_equal`, `between`: numbers as numbers; when
  both sides are dates (ISO 8601, with or without a UTC offset, a missing offset meaning UTC; a
  bare date meaning midnight UTC; or epoch seconds against an ISO date) they compare as moments;
  two texts that are neither compare lexicographically. A number against a text that is not a
  number or a date is false, and so is any comparison with an empty side: a missing amount is
  neither greater nor less than 100.
- `between` takes `right = [low, high]`, bounds included, in either order, by the same rules
  (all three values must be numbers, or all dates, or all plain texts).
- `greater_than_now` / `less_than_now` take no `right`: `left` is an ISO 8601 date/time or epoch
  seconds (values of 10^11 and above are taken as milliseconds); anything else is false.
- `contains` / `not_contains`: on text, substring; on a list (or text that is a JSON list),
  membership by the `equal` rules; on a table, a key. `begins_with` / `ends_with` are text
  prefix and suffix tests. An empty `right` never matches (so the `not_` forms are then true).
- `is_empty` (`empty`) / `is_not_empty` (`not_empty`) take no `right`. Empty is: missing, null,
  "", whitespace only, an empty list or table (also the texts "[]" and "{}"). `0`, `"0"` and
  `false` are not empty.
- `matches`: a Python regular expression searched anywhere in `left` (anchor with `^…$` for a
  whole match); at most 512 characters of pattern and 1 MiB of input. Patterns that nest a
  variable quantifier inside another (`(a+)+`, `(\\w+\\s?)*`), the classic catastrophic
  backtracking shapes, are refused when the config loads; write them with a possessive
  quantifier or an atomic group instead (`(?:\\w++\\.)+`, `(?>\\w+\\.)+`). When the `regex`
  package is installed each match also stops after 0.25 s with an error.
- `not_*` operators are the exact negation of their positive form.
- `all` is true when every member is (checked in order, stopping at the first false); `any`
  when at least one is (stopping at the first true).
"""

from __future__ import annotations

import functools
import json
import re
import re._parser as _sre_parse  # type: ignore[import-not-found,unused-ignore]
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from engine.coercion import is_empty, to_datetime, to_number, to_str
from engine.templates import TemplateEngine

try:  # the `regex` package adds a match timeout; `re` with the static guard otherwise
    import regex as _regex  # type: ignore[import-untyped,unused-ignore]
except ImportError:  # pragma: no cover - depends on the installation
    _regex = None

__all__ = [
    "ALIASES",
    "MAX_MATCH_INPUT",
    "MAX_PATTERN_LENGTH",
    "OPERATORS",
    "REGEX_TIMEOUT",
    "ConditionError",
    "canonical_operator",
    "check_pattern",
    "evaluate",
    "validate_condition",
]

MAX_PATTERN_LENGTH = 512
MAX_MATCH_INPUT = 1024 * 1024
REGEX_TIMEOUT = 0.25  # seconds, when the `regex` package is available


class ConditionError(ValueError):
    """A condition could not be evaluated (unknown operator, unsafe or invalid pattern, regex
    timeout). The message is safe to show; retrying will not help."""


# ----------------------------------------------------------------------------- comparisons


def _text(value: Any) -> str:
    return to_str(value).strip()


def _is_container(value: Any) -> bool:
    return isinstance(value, (list, tuple, Mapping))


def _equal(left: Any, right: Any) -> bool:
    a, b = to_number(left), to_number(right)
    if a is not None and b is not None:
        return a == b
    return _text(left) == _text(right)


def _ordering_keys(values: list[Any]) -> list[Any] | None:
    """Values made comparable with each other (numbers, moments or texts), or None when they
    are not all of one kind or one is empty."""
    if any(is_empty(v) or _is_container(v) for v in values):
        return None
    numbers = [to_number(v) for v in values]
    if all(n is not None for n in numbers):
        return numbers
    moments = [to_datetime(v) for v in values]
    if all(m is not None for m in moments):
        return moments
    if any(n is not None for n in numbers):
        return None  # a number against a text that is not a number or a date
    return [_text(v) for v in values]


def _compare(left: Any, right: Any, test: Callable[[Any, Any], bool]) -> bool:
    keys = _ordering_keys([left, right])
    return keys is not None and test(keys[0], keys[1])


def _between(left: Any, bounds: Any) -> bool:
    if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
        raise ConditionError("between needs right = [low, high]")
    keys = _ordering_keys([left, bounds[0], bounds[1]])
    if keys is None:
        return False
    value, low, high = keys
    if low > high:
        low, high = high, low
    return bool(low <= value <= high)


def _vs_now(left: Any, later: bool) -> bool:
    moment = to_datetime(left)
    if moment is None:
        return False
    now = datetime.now(UTC)
    return moment > now if later else moment < now


def _as_list(value: Any) -> list[Any] | None:
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            try:
                parsed = json.loads(text)
            except ValueError:
                return None
            return parsed if isinstance(parsed, list) else None
    return None


def _contains(left: Any, right: Any) -> bool:
    if is_empty(right):
        return False
    items = _as_list(left)
    if items is not None:
        return any(_equal(item, right) for item in items)
    if isinstance(left, Mapping):
        return _text(right) in {str(k) for k in left}
    return _text(right) in _text(left)


def _begins(left: Any, right: Any) -> bool:
    needle = _text(right)
    return needle != "" and _text(left).startswith(needle)


def _ends(left: Any, right: Any) -> bool:
    needle = _text(right)
    return needle != "" and _text(left).endswith(needle)


# ------------------------------------------------------------------------------ patterns


def _has_nested_quantifier(items: Any, in_loop: bool = False) -> bool:
    """True when a quantifier of variable count sits inside one that repeats."""
    for op, av in items:
        name = str(op)
        if name in ("MAX_REPEAT", "MIN_REPEAT"):
            low, high, sub = av
            if in_loop and high != low:
                return True
            if _has_nested_quantifier(sub, in_loop or high > 1):
                return True
        elif name == "POSSESSIVE_REPEAT":
            # never backtracks into itself; what it wraps is checked on its own
            if _has_nested_quantifier(av[2], False):
                return True
        elif name == "ATOMIC_GROUP":
            continue
        elif name == "SUBPATTERN":
            if _has_nested_quantifier(av[3], in_loop):
                return True
        elif name == "BRANCH":
            if any(_has_nested_quantifier(branch, in_loop) for branch in av[1]):
                return True
        elif name in ("ASSERT", "ASSERT_NOT"):
            if _has_nested_quantifier(av[1], in_loop):
                return True
        elif name == "GROUPREF_EXISTS":
            if any(sub is not None and _has_nested_quantifier(sub, in_loop) for sub in av[1:]):
                return True
    return False


def check_pattern(pattern: str) -> str | None:
    """A problem with a `matches` pattern, or None."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"the pattern is longer than {MAX_PATTERN_LENGTH} characters"
    try:
        tree = _sre_parse.parse(pattern)
    except re.error as exc:
        return f"invalid regular expression: {exc}"
    except RecursionError:
        return "invalid regular expression: nested too deeply"
    if _has_nested_quantifier(tree):
        return (
            "the pattern nests a repeated part inside another repetition (like (a+)+), which can take "
            "forever on some inputs; use a possessive quantifier or an atomic group instead, "
            "e.g. (?:\\w++\\.)+ or (?>\\w+\\.)+"
        )
    return None


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Any:
    problem = check_pattern(pattern)
    if problem is not None:
        raise ConditionError(f"matches: {problem}")
    try:
        if _regex is not None:
            return _regex.compile(pattern, _regex.V0)
        return re.compile(pattern)
    except Exception as exc:  # a pattern `re` accepts but `regex` does not
        raise ConditionError(f"matches: invalid regular expression: {exc}") from exc


def _matches(left: Any, right: Any) -> bool:
    pattern = _text(right)
    if pattern == "":
        return False
    compiled = _compiled(pattern)
    subject = _text(left)
    if len(subject) > MAX_MATCH_INPUT:
        raise ConditionError(f"matches: the value is longer than {MAX_MATCH_INPUT} characters")
    if _regex is None:
        return compiled.search(subject) is not None
    try:
        return compiled.search(subject, timeout=REGEX_TIMEOUT) is not None
    except TimeoutError as exc:
        raise ConditionError(
            f"matches: the pattern took longer than {REGEX_TIMEOUT} s on this value"
        ) from exc


# ----------------------------------------------------------------------------- operators

_BINARY: dict[str, Callable[[Any, Any], bool]] = {
    "equal": _equal,
    "not_equal": lambda a, b: not _equal(a, b),
    "greater": lambda a, b: _compare(a, b, lambda x, y: x > y),
    "greater_or_equal": lambda a, b: _compare(a, b, lambda x, y: x >= y),
    "less": lambda a, b: _compare(a, b, lambda x, y: x < y),
    "less_or_equal": lambda a, b: _compare(a, b, lambda x, y: x <= y),
    "between": _between,
    "contains": _contains,
    "not_contains": lambda a, b: not _contains(a, b),
    "begins_with": _begins,
    "not_begins_with": lambda a, b: not _begins(a, b),
    "ends_with": _ends,
    "not_ends_with": lambda a, b: not _ends(a, b),
    "matches": _matches,
}

_UNARY: dict[str, Callable[[Any], bool]] = {
    "is_empty": is_empty,
    "is_not_empty": lambda a: not is_empty(a),
    "greater_than_now": lambda a: _vs_now(a, True),
    "less_than_now": lambda a: _vs_now(a, False),
}

ALIASES: dict[str, str] = {"empty": "is_empty", "not_empty": "is_not_empty"}

OPERATORS: frozenset[str] = frozenset(_BINARY) | frozenset(_UNARY) | frozenset(ALIASES)

_CANONICAL_ORDER = [
    "equal", "not_equal", "greater", "greater_or_equal", "less", "less_or_equal",
    "greater_than_now", "less_than_now", "between", "contains", "not_contains",
    "begins_with", "not_begins_with", "ends_with", "not_ends_with",
    "is_empty", "empty", "is_not_empty", "not_empty", "matches",
]  # fmt: skip


def canonical_operator(name: Any) -> str | None:
    """The operator's canonical name (aliases resolved), or None when unknown."""
    if not isinstance(name, str):
        return None
    key = name.strip()
    key = ALIASES.get(key, key)
    return key if key in _BINARY or key in _UNARY else None


# ---------------------------------------------------------------------------- validation

_CONDITION_KEYS = {"left", "operator", "right"}


def _template_problem(value: Any) -> str | None:
    if not isinstance(value, str) or ("{{" not in value and "{%" not in value and "{#" not in value):
        return None
    return _template_checker().check(value)


@functools.lru_cache(maxsize=1)
def _template_checker() -> TemplateEngine:
    return TemplateEngine()


def validate_condition(cond: Any, where: str = "condition") -> list[str]:
    """Problems with a condition (or group), each prefixed with its dotted path, e.g.
    "condition.all[1].operator: unknown operator 'equals'; use one of: …". Empty when valid."""
    if not isinstance(cond, Mapping):
        return [
            f'{where}: must be a table: {{ left = "…", operator = "…", right = "…" }}, '
            f"or a group {{ all = [ … ] }} / {{ any = [ … ] }}"
        ]
    groups = [key for key in ("all", "any") if key in cond]
    if groups:
        return _validate_group(cond, groups, where)
    problems: list[str] = []
    unknown = sorted(str(k) for k in cond if k not in _CONDITION_KEYS)
    if unknown:
        problems.append(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"a condition has left, operator and right (or is an all/any group)"
        )
    if cond.get("left") is None:
        problems.append(f'{where}.left: missing; the value to test, e.g. left = "{{{{ __data.email }}}}"')
    else:
        problem = _template_problem(cond["left"])
        if problem:
            problems.append(f"{where}.left: {problem}")

    allowed = ", ".join(_CANONICAL_ORDER)
    raw_op = cond.get("operator")
    op = canonical_operator(raw_op)
    if raw_op is None:
        problems.append(f"{where}.operator: missing; use one of: {allowed}")
    elif op is None:
        problems.append(f"{where}.operator: unknown operator {raw_op!r}; use one of: {allowed}")

    has_right = cond.get("right") is not None
    right = cond.get("right")
    if op in _UNARY:
        if has_right:
            problems.append(f"{where}.right: {raw_op} takes no right value; remove it")
        return problems
    if op is not None and not has_right:
        example = ' = ["1", "10"]' if op == "between" else ' = "…"'
        problems.append(f"{where}.right: missing; {raw_op} compares left with right (right{example})")
        return problems
    if op == "between":
        if not isinstance(right, (list, tuple)) or len(right) != 2:
            problems.append(f'{where}.right: between needs a list of two bounds, e.g. right = ["1", "10"]')
            return problems
        for i, bound in enumerate(right):
            if _is_container(bound):
                problems.append(f"{where}.right[{i}]: a bound must be a single value")
            elif problem := _template_problem(bound):
                problems.append(f"{where}.right[{i}]: {problem}")
        return problems
    if has_right:
        if _is_container(right):
            problems.append(f"{where}.right: must be a single value (only between takes a list)")
        elif problem := _template_problem(right):
            problems.append(f"{where}.right: {problem}")
        elif op == "matches" and isinstance(right, str) and "{{" not in right and "{%" not in right:
            if problem := check_pattern(right.strip()):
                problems.append(f"{where}.right: {problem}")
    return problems


def _validate_group(cond: Mapping[str, Any], groups: list[str], where: str) -> list[str]:
    problems: list[str] = []
    if len(groups) > 1:
        problems.append(f"{where}: use either all or any in one table, not both (nest one inside the other)")
    extra = sorted(str(k) for k in cond if k not in ("all", "any"))
    if extra:
        problems.append(f"{where}: a group takes only all or any; unexpected {', '.join(extra)}")
    for key in groups:
        members = cond[key]
        if not isinstance(members, (list, tuple)):
            problems.append(f"{where}.{key}: must be a list of conditions")
        elif not members:
            problems.append(f"{where}.{key}: is empty; give at least one condition")
        else:
            for i, member in enumerate(members):
                problems.extend(validate_condition(member, f"{where}.{key}[{i}]"))
    return problems


# ---------------------------------------------------------------------------- evaluation


def _rendered(value: Any, render: Callable[[Any], Any]) -> Any:
    return render(value) if isinstance(value, str) else value


def evaluate(cond: Mapping[str, Any], render: Callable[[Any], Any]) -> bool:
    """Evaluate a condition or group. `render` turns a template string into its value (the
    engine's `render_value`, so a lone `{{ expr }}` keeps its type; a plain text renderer works
    too). Raises ConditionError for an unknown operator or a bad `matches` pattern, and lets the
    renderer's TemplateError through."""
    if "all" in cond:
        return all(evaluate(member, render) for member in cond["all"])
    if "any" in cond:
        return any(evaluate(member, render) for member in cond["any"])
    raw_op = cond.get("operator")
    op = canonical_operator(raw_op)
    if op is None:
        raise ConditionError(f"unknown operator {raw_op!r}")
    left = _rendered(cond.get("left"), render)
    if op in _UNARY:
        return bool(_UNARY[op](left))
    right = cond.get("right")
    if op == "between":
        if not isinstance(right, (list, tuple)) or len(right) != 2:
            raise ConditionError("between needs right = [low, high]")
        right = [_rendered(bound, render) for bound in right]
    else:
        right = _rendered(right, render)
    return bool(_BINARY[op](left, right))
