"""engine.conditions: operators, groups, validation and the regex guard (SPEC §8)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine import conditions
from engine.conditions import (
    OPERATORS,
    ConditionError,
    check_pattern,
    evaluate,
    validate_condition,
)
from engine.templates import TemplateEngine

ENGINE = TemplateEngine()

DATA: dict[str, Any] = {
    "amount": 2500,
    "amount_text": "2,500.00",
    "price": "19.99",
    "zero": 0,
    "zero_text": "0",
    "flag": False,
    "email": "Ann@Example.com",
    "name": "  padded  ",
    "blank": "",
    "spaces": "   ",
    "nothing": None,
    "tags": ["vip", "new", "42"],
    "no_tags": [],
    "meta": {"source": "web"},
    "no_meta": {},
    "date": "2026-05-01",
    "stamp": "2026-05-01T10:00:00+02:00",
}


def _iso(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


PAST = _iso(-timedelta(days=1))
FUTURE = _iso(timedelta(days=1))
PAST_EPOCH = int((datetime.now(UTC) - timedelta(hours=1)).timestamp())
FUTURE_EPOCH_MS = int((datetime.now(UTC) + timedelta(hours=1)).timestamp() * 1000)


def render(value: Any) -> Any:
    return ENGINE.render_value(value, DATA)


def text_render(value: Any) -> Any:
    """The plain-text renderer: every side arrives as a string."""
    return ENGINE.render(value, DATA)


def check(left: Any, operator: str, right: Any = None, renderer: Any = render) -> bool:
    cond: dict[str, Any] = {"left": left, "operator": operator}
    if right is not None:
        cond["right"] = right
    return evaluate(cond, renderer)


# Every operator and alias: (left, operator, right, expected). None as right means "no right".
CASES: list[tuple[Any, str, Any, bool]] = [
    # equal / not_equal: numbers as numbers when both sides are numbers, else case-sensitive text
    ("{{ __data.amount }}", "equal", "2500", True),
    ("{{ __data.amount }}", "equal", "2500.00", True),
    ("{{ __data.amount_text }}", "equal", 2500, True),
    ("{{ __data.amount }}", "equal", 2500.0, True),
    ("007", "equal", "7", True),
    ("1e3", "equal", "1000", True),
    ("2.500,00", "equal", "2500", False),
    ("{{ __data.email }}", "equal", "Ann@Example.com", True),
    ("{{ __data.email }}", "equal", "ann@example.com", False),
    ("{{ __data.email|lower }}", "equal", "ann@example.com", True),
    ("{{ __data.name }}", "equal", "padded", True),
    ("{{ __data.missing }}", "equal", "", True),
    ("{{ __data.nothing }}", "equal", "", True),
    ("{{ __data.flag }}", "equal", "false", True),
    ("{{ __data.flag }}", "equal", "0", False),
    ("{{ __data.zero }}", "equal", "0", True),
    ("{{ __data.tags }}", "equal", '["vip","new","42"]', True),
    ("{{ __data.amount }}", "not_equal", "2500", False),
    ("{{ __data.email }}", "not_equal", "bob@example.com", True),
    ("{{ __data.missing }}", "not_equal", "x", True),
    # greater / greater_or_equal / less / less_or_equal
    ("{{ __data.amount }}", "greater", "999", True),  # numeric, not "2500" < "999" as text
    ("{{ __data.amount_text }}", "greater", "2499.99", True),
    ("{{ __data.price }}", "greater", 19.99, False),
    ("{{ __data.price }}", "greater_or_equal", 19.99, True),
    ("{{ __data.amount }}", "less", "10000", True),
    ("-5", "less", "-4", True),
    ("{{ __data.amount }}", "less_or_equal", "2500", True),
    ("{{ __data.amount }}", "less_or_equal", "2499", False),
    ("b", "greater", "a", True),
    ("B", "greater", "a", False),  # text compares by code point
    ("apple", "less", "banana", True),
    ("{{ __data.date }}", "greater", "2026-04-30T23:59:59Z", True),
    ("{{ __data.stamp }}", "less", "2026-05-01T09:00:00Z", True),  # 08:00 UTC
    ("{{ __data.stamp }}", "greater_or_equal", "2026-05-01T08:00:00Z", True),
    ("{{ __data.stamp }}", "less_or_equal", "2026-05-01T08:00:00", True),  # naive = UTC
    ("2026-05-01", "greater", 1700000000, True),  # ISO date against epoch seconds
    ("{{ __data.missing }}", "greater", "100", False),  # empty is neither greater
    ("{{ __data.missing }}", "less", "100", False),  # nor less
    ("{{ __data.blank }}", "less_or_equal", "100", False),
    ("abc", "greater", "5", False),  # text against a number
    ("abc", "less", "5", False),
    ("{{ __data.zero }}", "less", "1", True),
    # greater_than_now / less_than_now
    (FUTURE, "greater_than_now", None, True),
    (PAST, "greater_than_now", None, False),
    (PAST, "less_than_now", None, True),
    (FUTURE, "less_than_now", None, False),
    (PAST_EPOCH, "less_than_now", None, True),
    (str(PAST_EPOCH), "greater_than_now", None, False),
    (FUTURE_EPOCH_MS, "greater_than_now", None, True),
    ("2000-01-01", "less_than_now", None, True),
    ("2999-01-01T00:00:00+05:00", "greater_than_now", None, True),
    ("not a date", "greater_than_now", None, False),
    ("not a date", "less_than_now", None, False),
    ("{{ __data.missing }}", "less_than_now", None, False),
    ("{{ __data.blank }}", "greater_than_now", None, False),
    # between: inclusive, bounds in either order, numbers / dates / text
    ("{{ __data.amount }}", "between", ["1000", "5000"], True),
    ("{{ __data.amount }}", "between", ["2500", "2500.00"], True),
    ("{{ __data.amount }}", "between", ["5000", "1000"], True),
    ("{{ __data.amount }}", "between", [1, 2499], False),
    ("{{ __data.amount_text }}", "between", ["2,000", "3,000"], True),
    ("{{ __data.date }}", "between", ["2026-01-01", "2026-12-31"], True),
    ("{{ __data.stamp }}", "between", ["2026-05-01T08:00:00Z", "2026-05-01T08:00:00Z"], True),
    ("{{ __data.date }}", "between", ["2026-06-01", "2026-12-31"], False),
    ("m", "between", ["a", "z"], True),
    ("M", "between", ["a", "z"], False),
    ("{{ __data.missing }}", "between", ["0", "10"], False),
    ("5", "between", ["{{ __data.missing }}", "10"], False),
    ("5", "between", ["a", "z"], False),  # a number against texts
    # contains / not_contains
    ("{{ __data.email }}", "contains", "@Example", True),
    ("{{ __data.email }}", "contains", "@example", False),
    ("{{ __data.tags }}", "contains", "vip", True),
    ("{{ __data.tags }}", "contains", "vi", False),  # membership, not substring
    ("{{ __data.tags }}", "contains", 42, True),  # by the equal rules
    ('["a", "b"]', "contains", "b", True),  # text holding a JSON list
    ("{{ __data.meta }}", "contains", "source", True),  # a table's key
    ("{{ __data.email }}", "contains", "", False),  # an empty needle never matches
    ("{{ __data.missing }}", "contains", "x", False),
    ("{{ __data.email }}", "not_contains", "zzz", True),
    ("{{ __data.tags }}", "not_contains", "vip", False),
    ("{{ __data.email }}", "not_contains", "{{ __data.missing }}", True),
    # begins_with / ends_with and their negations
    ("{{ __data.email }}", "begins_with", "Ann", True),
    ("{{ __data.email }}", "begins_with", "ann", False),
    ("{{ __data.name }}", "begins_with", "pad", True),  # stripped
    ("{{ __data.email }}", "begins_with", "", False),
    ("{{ __data.email }}", "not_begins_with", "Bob", True),
    ("{{ __data.email }}", "not_begins_with", "Ann", False),
    ("{{ __data.email }}", "ends_with", ".com", True),
    ("{{ __data.amount }}", "ends_with", "00", True),
    ("{{ __data.email }}", "ends_with", ".org", False),
    ("{{ __data.email }}", "not_ends_with", ".org", True),
    ("{{ __data.email }}", "not_ends_with", ".com", False),
    ("{{ __data.missing }}", "not_ends_with", ".com", True),
    # is_empty / empty / is_not_empty / not_empty
    ("{{ __data.missing }}", "is_empty", None, True),
    ("{{ __data.nothing }}", "is_empty", None, True),
    ("{{ __data.blank }}", "is_empty", None, True),
    ("{{ __data.spaces }}", "empty", None, True),
    ("{{ __data.no_tags }}", "is_empty", None, True),
    ("{{ __data.no_meta }}", "empty", None, True),
    ("{{ __data.zero }}", "is_empty", None, False),
    ("{{ __data.zero_text }}", "empty", None, False),
    ("{{ __data.flag }}", "is_empty", None, False),
    ("{{ __data.tags }}", "is_empty", None, False),
    ("{{ __data.email }}", "is_not_empty", None, True),
    ("{{ __data.zero }}", "not_empty", None, True),
    ("{{ __data.missing }}", "is_not_empty", None, False),
    ("{{ __data.spaces }}", "not_empty", None, False),
    # matches: Python regex, searched anywhere; (?i) for case-insensitive
    ("{{ __data.email }}", "matches", r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", True),
    ("{{ __data.email }}", "matches", "example", False),
    ("{{ __data.email }}", "matches", "(?i)example", True),
    ("{{ __data.amount }}", "matches", r"^\d{4}$", True),
    ("{{ __data.missing }}", "matches", "^$", True),
    ("{{ __data.email }}", "matches", "{{ __data.missing }}", False),  # empty pattern
    ("INV-2026-0042", "matches", r"INV-\d{4}-\d+", True),
]


def test_every_operator_and_alias_is_covered() -> None:
    assert {op for _, op, _, _ in CASES} == OPERATORS
    assert {"empty", "not_empty", "is_empty", "is_not_empty", "matches", "between"} <= OPERATORS


@pytest.mark.parametrize("left, operator, right, expected", CASES)
def test_operator(left: Any, operator: str, right: Any, expected: bool) -> None:
    assert check(left, operator, right) is expected


# The same table through a plain-text renderer: every side arrives as a string (lists and
# tables as JSON text), and the answers do not change.
@pytest.mark.parametrize("left, operator, right, expected", CASES)
def test_operator_with_text_rendering(left: Any, operator: str, right: Any, expected: bool) -> None:
    assert check(left, operator, right, renderer=text_render) is expected


def test_not_forms_are_exact_negations() -> None:
    pairs = [("equal", "not_equal"), ("contains", "not_contains"), ("begins_with", "not_begins_with")]
    pairs += [("ends_with", "not_ends_with"), ("is_empty", "is_not_empty"), ("empty", "not_empty")]
    for positive, negative in pairs:
        for left, op, right, _ in CASES:
            if op == positive:
                assert check(left, negative, right) is not check(left, positive, right)


def test_groups_nest() -> None:
    yes = {"left": "{{ __data.amount }}", "operator": "greater", "right": "100"}
    no = {"left": "{{ __data.email }}", "operator": "is_empty"}
    assert evaluate({"all": [yes, yes]}, render) is True
    assert evaluate({"all": [yes, no]}, render) is False
    assert evaluate({"any": [no, yes]}, render) is True
    assert evaluate({"any": [no, no]}, render) is False
    nested = {"all": [yes, {"any": [no, {"all": [yes, {"any": [yes]}]}]}]}
    assert evaluate(nested, render) is True
    assert evaluate({"any": [no, {"all": [yes, {"any": [no]}]}]}, render) is False
    assert validate_condition(nested) == []


def test_groups_short_circuit() -> None:
    seen: list[Any] = []

    def spy(value: Any) -> Any:
        seen.append(value)
        return render(value)

    first = {"left": "first", "operator": "is_empty"}
    second = {"left": "second", "operator": "is_empty"}
    evaluate({"all": [first, second]}, spy)
    assert seen == ["first"]
    seen.clear()
    evaluate({"any": [{"left": "x", "operator": "not_empty"}, second]}, spy)
    assert seen == ["x"]


def test_render_sees_left_and_each_bound() -> None:
    seen: list[Any] = []

    def spy(value: Any) -> Any:
        seen.append(value)
        return render(value)

    evaluate({"left": "{{ __data.amount }}", "operator": "between", "right": ["1", "{{ 9000 }}"]}, spy)
    assert seen == ["{{ __data.amount }}", "1", "{{ 9000 }}"]


def test_unknown_operator_at_run_time() -> None:
    with pytest.raises(ConditionError, match="unknown operator"):
        evaluate({"left": "a", "operator": "equals", "right": "a"}, render)


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    "cond, expected",
    [
        ({"left": "{{ __data.a }}", "operator": "equal", "right": "x"}, []),
        ({"left": "{{ __data.a }}", "operator": "not_empty"}, []),
        ({"left": "{{ __data.a }}", "operator": "between", "right": [1, "{{ __data.max }}"]}, []),
        ({"left": "{{ __data.a }}", "operator": "matches", "right": "{{ __data.pattern }}"}, []),
        ({"left": 5, "operator": "less", "right": 6}, []),
        ("equal", ["condition: must be a table"]),
        ({"operator": "equal", "right": "x"}, ["condition.left: missing"]),
        ({"left": "a", "right": "x"}, ["condition.operator: missing; use one of: equal, not_equal"]),
        (
            {"left": "a", "operator": "equals", "right": "x"},
            ["condition.operator: unknown operator 'equals'"],
        ),
        ({"left": "a", "operator": "equal"}, ["condition.right: missing; equal compares"]),
        (
            {"left": "a", "operator": "between", "right": "1"},
            ["condition.right: between needs a list of two"],
        ),
        (
            {"left": "a", "operator": "between", "right": [1, 2, 3]},
            ["condition.right: between needs a list of two"],
        ),
        ({"left": "a", "operator": "between"}, ["condition.right: missing"]),
        (
            {"left": "a", "operator": "is_empty", "right": "x"},
            ["condition.right: is_empty takes no right value"],
        ),
        ({"left": "a", "operator": "empty", "right": ""}, ["condition.right: empty takes no right value"]),
        (
            {"left": "a", "operator": "greater_than_now", "right": "x"},
            ["condition.right: greater_than_now takes no"],
        ),
        ({"left": "a", "operator": "equal", "right": ["x"]}, ["condition.right: must be a single value"]),
        (
            {"left": "a", "operator": "matches", "right": "([a-z"},
            ["condition.right: invalid regular expression"],
        ),
        ({"left": "a", "operator": "matches", "right": "(a+)+$"}, ["condition.right: the pattern nests"]),
        (
            {"left": "a", "operator": "matches", "right": "x" * 600},
            ["condition.right: the pattern is longer"],
        ),
        ({"left": "{{ __data.a ", "operator": "not_empty"}, ["condition.left: template syntax error"]),
        (
            {"left": "a", "operator": "equal", "right": "{{ nope( }}"},
            ["condition.right: template syntax error"],
        ),
        (
            {"left": "a", "operator": "equal", "right": "{{ fmt(1) }}"},
            ["condition.right: unknown function 'fmt'"],
        ),
        (
            {"left": "a", "operator": "equal", "rigth": "x"},
            ["condition: unknown key rigth", "condition.right: missing"],
        ),
        ({"all": []}, ["condition.all: is empty"]),
        ({"any": "x"}, ["condition.any: must be a list"]),
        (
            {"all": [{"left": "a", "operator": "not_empty"}], "any": [{"left": "a", "operator": "empty"}]},
            ["condition: use either all or any"],
        ),
        (
            {"all": [{"left": "a", "operator": "not_empty"}], "left": "x"},
            ["condition: a group takes only all or any"],
        ),
        (
            {"all": [{"left": "a", "operator": "not_empty"}, {"left": "a", "operator": "nope"}]},
            ["condition.all[1].operator: unknown operator 'nope'"],
        ),
        (
            {"any": [{"all": [{"left": "a", "operator": "between", "right": [1]}]}]},
            ["condition.any[0].all[0].right: between needs"],
        ),
    ],
)
def test_validate_condition(cond: Any, expected: list[str]) -> None:
    problems = validate_condition(cond)
    assert len(problems) == len(expected), problems
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start), problem


def test_validate_lists_allowed_operators_and_uses_where() -> None:
    [problem] = validate_condition(
        {"left": "a", "operator": "like", "right": "b"}, where="workflows[0].steps[2].condition"
    )
    assert problem.startswith("workflows[0].steps[2].condition.operator: unknown operator 'like'")
    for name in ("equal", "between", "is_empty", "empty", "not_empty", "matches", "less_than_now"):
        assert name in problem


# ------------------------------------------------------------------------- regex safety


@pytest.mark.parametrize(
    "pattern", [r"(a+)+$", r"(a*)*b", r"(\w+\s?)*$", r"^(\d+|x)+y", r"(?:a{1,9}){2,}", r"((ab)*c?)+"]
)
def test_nested_quantifiers_are_refused(pattern: str) -> None:
    assert check_pattern(pattern) is not None
    started = time.monotonic()
    with pytest.raises(ConditionError, match="nests a repeated part"):
        check("a" * 50_000 + "!", "matches", pattern)
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    "pattern",
    [
        r"^[^@]+@[^@]+$",
        r"(\d{3}-)+\d{4}",
        r"(?:\w++\.)+\w+",
        r"(?>\w+\.)+\w+",
        r"^\s*(\w+)\s*=\s*(\w+)\s*$",
        r"(foo|bar)+",
    ],
)
def test_safe_patterns_are_accepted(pattern: str) -> None:
    assert check_pattern(pattern) is None


def test_possessive_rewrite_is_fast() -> None:
    started = time.monotonic()
    assert check("a" * 50_000 + "!", "matches", r"^(?:a++)+$") is False
    assert time.monotonic() - started < 1


def test_pathological_pattern_stops_with_timeout() -> None:
    pytest.importorskip("regex")
    started = time.monotonic()
    with pytest.raises(ConditionError, match="took longer"):
        check("a" * 5000 + "!", "matches", r"(a|aa)+$")  # overlapping alternation: not caught statically
    assert time.monotonic() - started < 2


def test_templated_pattern_is_checked_at_run_time() -> None:
    data = {"pattern": "(x+)+y", "bad": "[unclosed"}
    with pytest.raises(ConditionError, match="nests"):
        evaluate(
            {"left": "xxx", "operator": "matches", "right": "{{ __data.pattern }}"},
            lambda v: ENGINE.render_value(v, data),
        )
    with pytest.raises(ConditionError, match="invalid regular expression"):
        evaluate(
            {"left": "xxx", "operator": "matches", "right": "{{ __data.bad }}"},
            lambda v: ENGINE.render_value(v, data),
        )


def test_match_input_is_capped() -> None:
    with pytest.raises(ConditionError, match="longer than"):
        check("a" * (conditions.MAX_MATCH_INPUT + 1), "matches", "a")


def test_works_without_the_regex_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conditions, "_regex", None)
    conditions._compiled.cache_clear()
    try:
        assert check("INV-42", "matches", r"^INV-\d+$") is True
        with pytest.raises(ConditionError, match="nests"):
            check("a" * 100 + "!", "matches", r"(a+)+$")
    finally:
        conditions._compiled.cache_clear()
