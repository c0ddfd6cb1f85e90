"""engine.templates: the Twig-like sandboxed template engine (SPEC §8)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from engine.templates import MAX_OUTPUT, TemplateEngine, TemplateError

SECRET = "s" * 32

DATA: dict[str, Any] = {
    "customer_email": "ann@example.com",
    "name": "ann lee",
    "invoice_amount": 2500,
    "amount_text": "2,500.50",
    "price": 19.99,
    "whole": 2500.0,
    "paid": True,
    "unpaid": False,
    "nothing": None,
    "blank": "",
    "items": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1}],
    "keys": "a field named keys",
    "customer": {"name": "Ann", "address": {"city": "Tirana"}},
    "html": "<b>bold</b> & co",
    "injected": "{{ 7*7 }}",
    "raw_tag": "{% raw %}",
    "escape_attempt": "{{ ''.__class__.__mro__ }}",
    "when": "2026-05-01T10:30:00Z",
    "__headers": {"x-token": "abc"},
}


@pytest.fixture
def engine() -> TemplateEngine:
    return TemplateEngine()


def r(engine: TemplateEngine, source: str, data: dict[str, Any] | None = None) -> str:
    return engine.render(source, DATA if data is None else data)


# ----------------------------------------------------------------------- data stays data


def test_data_is_never_compiled(engine: TemplateEngine) -> None:
    assert r(engine, "{{ __data.injected }}") == "{{ 7*7 }}"
    assert r(engine, "{{ __data.raw_tag }}") == "{% raw %}"
    assert r(engine, "{{ __data.escape_attempt }}") == "{{ ''.__class__.__mro__ }}"
    # and a keep-type render returns the text untouched too
    assert engine.render_value("{{ __data.injected }}", DATA) == "{{ 7*7 }}"


def test_same_text_as_template_is_code(engine: TemplateEngine) -> None:
    assert r(engine, "{{ 7*7 }}") == "49"
    assert r(engine, "{% raw %}{{ 1 }}{% endraw %}{{ 2 }}") == "{{ 1 }}2"
    with pytest.raises(TemplateError, match="unsafe template"):
        r(engine, DATA["escape_attempt"])


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ __data.__class__ }}",
        "{{ __data.customer.__init__ }}",
        "{{ formatCurrency.__globals__ }}",
        "{{ __data.missing.__class__ }}",
        "{{ __data['__class__'] }}",
    ],
)
def test_sandbox_escapes_raise(engine: TemplateEngine, source: str) -> None:
    with pytest.raises(TemplateError, match="unsafe template"):
        r(engine, source)


def test_sandbox_refuses_mutating_the_data(engine: TemplateEngine) -> None:
    data = {"list": [1]}
    with pytest.raises(TemplateError, match="unsafe"):
        engine.render("{{ __data.list.append(2) }}", data)
    assert data == {"list": [1]}


@pytest.mark.parametrize(
    "source, message",
    [
        ("{{ 'x' * 100000000 }}", "larger than"),
        ("{{ __data.name * 10000000 }}", "larger than"),
        ("{{ 10 ** 100000000 }}", "too large"),
        ("{{ '%0999999999d' % 1 }}", "format width"),
        ("{{ '%0999999999d'|format(1) }}", "format width"),
        ("{{ '{:0999999999}'.format(1) }}", "format width"),
        ("{{ range(100000000)|list }}", "Range too big"),
        ("{% for i in range(90000) %}{{ __data.customer_email }}{% endfor %}", "larger than"),
    ],
)
def test_resource_limits(engine: TemplateEngine, source: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        r(engine, source)


def test_output_just_under_the_limit_is_fine(engine: TemplateEngine) -> None:
    assert len(r(engine, "{{ 'x' * " + str(MAX_OUTPUT) + " }}")) == MAX_OUTPUT


# -------------------------------------------------------------------------- missing values


@pytest.mark.parametrize(
    "source, expected",
    [
        ("[{{ __data.a.b.c }}]", "[]"),
        ("[{{ customer_email }}]", "[]"),  # body fields are under __data only (SPEC §5)
        ("[{{ __data.customer.phone.number }}]", "[]"),
        ("[{{ __data.nothing.deeper }}]", "[]"),
        ("[{{ __data.items[7].sku }}]", "[]"),
        ("[{{ __data.missing['x'][0] }}]", "[]"),
        ("[{{ __data.nothing }}]", "[]"),
        ("{{ __data.missing > 5 }}", "false"),
        ("{{ __data.missing < 5 }}", "false"),
        ("{{ __data.missing == 5 }}", "false"),
        ("[{{ __data.missing + 1 }}]", "[]"),
        ("[{{ 1 - __data.missing }}]", "[]"),
        ("[{{ __data.missing|upper }}]", "[]"),
        ("[{{ __data.nothing|upper }}]", "[]"),
        ("[{{ __data.missing|number_format(2) }}]", "[]"),
        ("[{{ __data.missing|date('Y') }}]", "[]"),
        ("[{{ __data.missing|first }}]", "[]"),
        ("{{ __data.missing|length }}", "0"),
        ("[{{ __data.missing|join(',') }}]", "[]"),
        ("{% if __data.missing %}yes{% else %}no{% endif %}", "no"),
        ("{% if __data.missing > 3 %}yes{% else %}no{% endif %}", "no"),
        ("{% for x in __data.missing %}{{ x }}{% endfor %}.", "."),
        ("{{ __data.customer.address.city }}", "Tirana"),
        ("{{ __data.__headers['x-token'] }}", "abc"),
    ],
)
def test_missing_values_render_empty(engine: TemplateEngine, source: str, expected: str) -> None:
    assert r(engine, source) == expected


def test_calling_an_unknown_function_is_an_error(engine: TemplateEngine) -> None:
    with pytest.raises(TemplateError, match="formatCurency"):
        r(engine, "{{ formatCurency(1, '$') }}")


# ------------------------------------------------------------------------------ rendering


@pytest.mark.parametrize(
    "source, expected",
    [
        ("{{ __data.paid }}/{{ __data.unpaid }}", "true/false"),
        ("{{ __data.whole }}", "2500"),
        ("{{ __data.price }}", "19.99"),
        ("{{ __data.customer }}", '{"name":"Ann","address":{"city":"Tirana"}}'),
        ("{{ __data.items|length }}", "2"),
        ("{{ __data.items[0].sku }}", "A"),  # a field named like a dict method wins
        ("{{ __data.keys }}", "a field named keys"),
        ("{% for k, v in __data.customer.items() %}{{ k }};{% endfor %}", "name;address;"),
        ("line\n", "line\n"),  # trailing newline kept
        ("no markup at all {", "no markup at all {"),
    ],
)
def test_rendering(engine: TemplateEngine, source: str, expected: str) -> None:
    assert r(engine, source) == expected


def test_html_mode_escapes_and_raw_does_not(engine: TemplateEngine) -> None:
    assert engine.render("{{ __data.html }}", DATA, html=True) == "&lt;b&gt;bold&lt;/b&gt; &amp; co"
    assert engine.render("{{ __data.html|raw }}", DATA, html=True) == "<b>bold</b> & co"
    assert engine.render("{{ __data.html }}", DATA) == "<b>bold</b> & co"
    out = engine.render("<script>var c = {{ {'a': '</script>'}|json_encode }};</script>", DATA, html=True)
    assert "</script>'" not in out and "\\u003c/script\\u003e" in out
    assert engine.render("{{ 'a\nb'|nl2br }}", DATA, html=True) == "a<br />\nb"
    assert engine.render("{{ '<i>\n'|nl2br }}", DATA, html=True) == "&lt;i&gt;<br />\n"


def test_render_value_keeps_types(engine: TemplateEngine) -> None:
    rv = engine.render_value
    assert rv("{{ __data.invoice_amount }}", DATA) == 2500
    assert rv("  {{ __data.price }}  ", DATA) == 19.99
    assert rv("{{ __data.customer }}", DATA) == DATA["customer"]
    assert rv("{{ __data.items }}", DATA) == DATA["items"]
    assert rv("{{ __data.paid }}", DATA) is True
    assert rv("{{ __data.missing }}", DATA) is None
    assert rv("{{ __data.nothing }}", DATA) is None
    assert rv("{{- __data.invoice_amount * 2 -}}", DATA) == 5000
    assert rv("{{ {'total': __data.invoice_amount, 'gone': __data.missing} }}", DATA) == {
        "total": 2500,
        "gone": None,
    }
    # anything else is rendered as text
    assert rv("{{ __data.invoice_amount }} EUR", DATA) == "2500 EUR"
    assert rv("{{ __data.invoice_amount }}{{ __data.price }}", DATA) == "250019.99"
    assert rv("plain", DATA) == "plain"
    # trees are walked; non-strings are returned as they are
    tree = {"a": ["{{ __data.invoice_amount }}", 3, None, True], "b": {"c": "x {{ __data.name }}"}}
    assert rv(tree, DATA) == {"a": [2500, 3, None, True], "b": {"c": "x ann lee"}}
    assert rv(42, DATA) == 42
    assert rv(None, DATA) is None


def test_render_value_errors_are_template_errors(engine: TemplateEngine) -> None:
    with pytest.raises(TemplateError, match="syntax"):
        engine.render_value("{{ 1 + }}", DATA)
    with pytest.raises(TemplateError, match="unsafe"):
        engine.render_value("{{ ''.__class__ }}", DATA)


def test_compiled_once(engine: TemplateEngine) -> None:
    source = "{{ __data.name|upper }}"
    for _ in range(5):
        assert r(engine, source) == "ANN LEE"
    info = engine._template.cache_info()
    assert info.misses == 1 and info.hits == 4


# -------------------------------------------------------------------------------- check


def test_check(engine: TemplateEngine) -> None:
    assert engine.check("Hello {{ __data.name|title }}") is None
    assert engine.check("no template here") is None
    assert engine.check("{% macro m(x) %}{{ x }}{% endmacro %}{{ m(1) }}") is None
    problem = engine.check("{{ __data.name ")
    assert problem and problem.startswith("template syntax error") and "line 1" in problem
    assert "No filter named 'shout'" in (engine.check("{{ x|shout }}") or "")
    assert "unknown function 'formatCurency'" in (engine.check("{{ formatCurency(1) }}") or "")
    assert engine.check("{% if x %}") is not None


# ------------------------------------------------------------------------------ functions


@pytest.mark.parametrize(
    "source, expected",
    [
        ('{{ formatCurrency(2500, "€") }}', "€2,500.00"),
        ('{{ formatCurrency(__data.invoice_amount, "€") }}', "€2,500.00"),
        ('{{ formatCurrency("2,500.50", "$") }}', "$2,500.50"),
        ('{{ formatCurrency(1234567.891, "£", 1) }}', "£1,234,567.9"),
        ('{{ formatCurrency(-12.5, "€") }}', "-€12.50"),
        ('{{ formatCurrency(0.005, "€") }}', "€0.01"),
        ('{{ formatCurrency(2500, "€", 0) }}', "€2,500"),
        ('[{{ formatCurrency("abc", "€") }}]', "[]"),
        ('[{{ formatCurrency(__data.missing, "€") }}]', "[]"),
        ('{{ coalesce(__data.missing, __data.blank, __data.nothing, "fallback") }}', "fallback"),
        ("{{ coalesce(__data.missing, 0, 1) }}", "0"),
        ("[{{ coalesce(__data.missing) }}]", "[]"),
        ('{{ jsonDecode(\'{"a": {"b": [1, 2]}}\').a.b[1] }}', "2"),
        ("[{{ jsonDecode('{not json') }}]", "[]"),
        ("[{{ jsonDecode(__data.missing) }}]", "[]"),
        ("{{ dateAdd('2026-01-31', 1, 'months') }}", "2026-02-28"),
        ("{{ dateAdd('2024-02-29', 1, 'years') }}", "2025-02-28"),
        ("{{ dateAdd('2026-05-01', -2) }}", "2026-04-29"),
        ("{{ dateAdd('2026-05-01', 2, 'weeks') }}", "2026-05-15"),
        ("{{ dateAdd('2026-05-01', 90, 'minutes') }}", "2026-05-01T01:30:00Z"),
        ("{{ dateAdd('2026-05-01T23:00:00+02:00', 2, 'hours') }}", "2026-05-02T01:00:00+02:00"),
        ("{{ dateAdd('2026-05-01T10:00:00', 30, 'seconds') }}", "2026-05-01T10:00:30Z"),
        ("{{ dateAdd(0, 1, 'day') }}", "1970-01-02T00:00:00Z"),
        ("{{ dateAdd(__data.when, 1, 'hour') }}", "2026-05-01T11:30:00Z"),
        ("[{{ dateAdd('not a date', 1) }}]", "[]"),
        ("[{{ dateAdd(__data.missing, 1) }}]", "[]"),
    ],
)
def test_functions(engine: TemplateEngine, source: str, expected: str) -> None:
    assert r(engine, source) == expected


def test_date_add_now(engine: TemplateEngine) -> None:
    result = datetime.fromisoformat(r(engine, "{{ dateAdd('now', 1, 'days') }}"))
    assert abs(result - (datetime.now(UTC) + timedelta(days=1))) < timedelta(seconds=5)


@pytest.mark.parametrize(
    "source, message",
    [
        ("{{ dateAdd('2026-05-01', 1, 'fortnights') }}", "unknown unit"),
        ("{{ dateAdd('2026-05-01', 'x') }}", "amount must be a number"),
        ("{{ dateAdd('2026-05-01', 1.5, 'months') }}", "whole number"),
        ("{{ hashHmac('crc32', 'a', 'b') }}", "unknown algorithm"),
        ("{{ jwtEncode('not a table', 'k') }}", "payload must be a table"),
        ("{{ jwtEncode({'a': 1}, 'k', 'XX999') }}", "jwtEncode"),
        ("{{ now('Y', 'Mars/Olympus') }}", "unknown timezone"),
    ],
)
def test_function_errors(engine: TemplateEngine, source: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        r(engine, source)


def test_now(engine: TemplateEngine) -> None:
    iso = r(engine, "{{ now() }}")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", iso)
    assert abs(datetime.fromisoformat(iso) - datetime.now(UTC)) < timedelta(seconds=5)
    assert r(engine, "{{ now('Y') }}") == str(datetime.now(UTC).year)
    assert r(engine, "{{ now('%Y-%m') }}") == datetime.now(UTC).strftime("%Y-%m")
    assert r(engine, "{{ now('P', 'Asia/Tokyo') }}") == "+09:00"


def test_uuid_hmac_jwt(engine: TemplateEngine) -> None:
    first, second = r(engine, "{{ uuid() }}"), r(engine, "{{ uuid() }}")
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", first)
    assert first != second
    for algo in ("sha1", "sha256", "sha384", "sha512", "md5"):
        expected = hmac.new(b"key", b"ann@example.com", getattr(hashlib, algo)).hexdigest()
        assert r(engine, f"{{{{ hashHmac('{algo}', __data.customer_email, 'key') }}}}") == expected
    token = r(
        engine,
        "{{ jwtEncode({'sub': __data.customer_email, 'n': 1}, __data.secret) }}",
        {**DATA, "secret": SECRET},
    )
    assert jwt.decode(token, SECRET, algorithms=["HS256"]) == {"sub": "ann@example.com", "n": 1}
    token = r(engine, "{{ jwtEncode({'sub': 'x'}, __data.secret, 'HS512') }}", {"secret": SECRET * 2})
    assert jwt.get_unverified_header(token)["alg"] == "HS512"


# ------------------------------------------------------------------------ record lookups


class FakeLookups:
    """A trivial in-memory RecordLookups: exact-match filters over a list of rows."""

    def __init__(self) -> None:
        self.rows = {
            "contact": [
                {"id": 1, "email": "ann@example.com", "name": "Ann", "city": "Tirana"},
                {"id": 2, "email": "bob@example.com", "name": "Bob", "city": "Tirana"},
                {"id": 3, "email": "cy@example.com", "name": "Cy", "city": "Durres"},
            ]
        }
        self.calls: list[Any] = []

    def _match(self, record_type: str, filters: dict[str, Any]) -> list[dict[str, Any]]:
        rows = self.rows.get(record_type, [])
        return [row for row in rows if all(row.get(k) == v for k, v in filters.items())]

    def find_one(self, record_type: str, filters: dict[str, Any]) -> dict[str, Any] | None:
        self.calls.append(("one", record_type, filters))
        found = self._match(record_type, filters)
        return found[0] if found else None

    def find_many(
        self, record_type: str, filters: dict[str, Any], limit: int = 100, order_by: str | None = None
    ) -> list[dict[str, Any]]:
        self.calls.append(("many", record_type, filters, limit, order_by))
        return self._match(record_type, filters)[:limit]

    def find_count(self, record_type: str, filters: dict[str, Any]) -> int:
        self.calls.append(("count", record_type, filters))
        return len(self._match(record_type, filters))


def test_record_lookups() -> None:
    lookups = FakeLookups()
    engine = TemplateEngine(lookups)
    assert r(engine, "{{ findOne('contact', 'email', __data.customer_email).name }}") == "Ann"
    assert lookups.calls[-1] == ("one", "contact", {"email": "ann@example.com"})
    assert r(engine, "{{ findOne('contact', {'city': 'Tirana', 'name': 'Bob'}).id }}") == "2"
    assert r(engine, "[{{ findOne('contact', 'email', 'nobody').name }}]") == "[]"
    assert r(engine, "{{ findCount('contact', 'city', 'Tirana') }}") == "2"
    source = "{% for c in findMany('contact', 'city', 'Tirana', limit=1, order_by='name') %}{{ c.name }}{% endfor %}"
    assert r(engine, source) == "Ann"
    assert lookups.calls[-1] == ("many", "contact", {"city": "Tirana"}, 1, "name")
    assert r(engine, "{{ findMany('contact')|length }}") == "3"
    assert lookups.calls[-1][3] == 100
    r(engine, "{{ findMany('contact', limit=10**6) }}")
    assert lookups.calls[-1][3] == 1000  # capped
    # keep-type: a found record stays a table
    assert engine.render_value("{{ findOne('contact', 'id', 3) }}", DATA)["city"] == "Durres"


@pytest.mark.parametrize(
    "source, message",
    [
        ("{{ findOne('contact', 'email') }}", "field/value pairs"),
        ("{{ findOne('', 'email', 'x') }}", "record type"),
        ("{{ findMany('contact', limit=0) }}", "limit"),
    ],
)
def test_record_lookup_errors(source: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        r(TemplateEngine(FakeLookups()), source)


@pytest.mark.parametrize("fn", ["findOne('c', 'a', 1)", "findMany('c')", "findCount('c')"])
def test_record_lookups_unavailable(engine: TemplateEngine, fn: str) -> None:
    with pytest.raises(TemplateError, match="record lookups are not available here"):
        r(engine, "{{ " + fn + " }}")


def test_lookup_failures_become_template_errors() -> None:
    class Broken(FakeLookups):
        def find_one(self, record_type: str, filters: dict[str, Any]) -> dict[str, Any] | None:
            raise RuntimeError("no such table: contact")

    with pytest.raises(TemplateError, match="findOne failed: no such table"):
        r(TemplateEngine(Broken()), "{{ findOne('contact', 'id', 1) }}")


# -------------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    "source, expected",
    [
        ("{{ __data.missing|default('n/a') }}", "n/a"),
        ("{{ __data.blank|default('n/a') }}", "n/a"),
        ("{{ __data.nothing|default('n/a') }}", "n/a"),
        ("{{ __data.unpaid|default('n/a') }}", "n/a"),  # Twig: false is empty
        ("{{ 0|default('n/a') }}", "0"),
        ("{{ '0'|default('n/a') }}", "0"),
        ("{{ __data.name|default('n/a') }}", "ann lee"),
        ("{{ __data.name|upper }}", "ANN LEE"),
        ("{{ 'ÀB'|lower }}", "àb"),
        ("{{ __data.name|title }}", "Ann Lee"),
        ("{{ 'hELLO wORLD'|capitalize }}", "Hello world"),
        ("[{{ '  pad  '|trim }}]", "[pad]"),
        ("[{{ '--x--'|trim('-', 'left') }}]", "[x--]"),
        ("{{ 1234567.891|number_format }}", "1,234,568"),
        ("{{ 1234567.891|number_format(2) }}", "1,234,567.89"),
        ("{{ 1234567.891|number_format(2, ',', '.') }}", "1.234.567,89"),
        ("{{ __data.amount_text|number_format(1) }}", "2,500.5"),
        ("{{ 0.5|number_format }}", "1"),
        ("{{ {'a': [1, 'x'], 'b': none, 'c': 'é'}|json_encode }}", '{"a":[1,"x"],"b":null,"c":"é"}'),
        ("{{ __data.missing|json_encode }}", "null"),
        ("{{ __data.when|date('Y-m-d H:i:s') }}", "2026-05-01 10:30:00"),
        ("{{ __data.when|date('D, d M Y') }}", "Fri, 01 May 2026"),
        ("{{ __data.when|date('l jS \\\\o\\\\f F y, g:i A') }}", "Friday 1st of May 26, 10:30 AM"),
        ("{{ __data.when|date('c') }}", "2026-05-01T10:30:00+00:00"),
        ("{{ __data.when|date('H:i T', 'Europe/Tirane') }}", "12:30 CEST"),
        ("{{ __data.when|date('%d/%m/%Y') }}", "01/05/2026"),
        ("{{ 0|date('Y-m-d') }}", "1970-01-01"),
        ("{{ __data.when|date('U') }}", "1777631400"),
        ("{{ 'a b&c/d'|url_encode }}", "a%20b%26c%2Fd"),
        ("{{ {'q': 'a b', 'n': 1}|url_encode }}", "q=a%20b&n=1"),
        ("{{ [1, 2, 3]|length }}/{{ 'abcd'|length }}/{{ {'a': 1}|length }}", "3/4/1"),
        ("{{ 'a,b,c'|split(',')|join('|') }}", "a|b|c"),
        ("{{ 'a,b,c'|split(',', 2)|last }}", "b,c"),
        ("{{ 'abcde'|split('', 2)|join(' ') }}", "ab cd e"),
        ("{{ ['a', 'b', 'c']|join(', ', ' and ') }}", "a, b and c"),
        ("{{ [1, 2, 3]|first }}{{ [1, 2, 3]|last }}{{ 'xyz'|first }}{{ 'xyz'|last }}", "13xz"),
        ("{{ {'a': 1, 'b': 2}|keys|join(',') }}", "a,b"),
        ("{{ -5|abs }}/{{ '-2.5'|abs }}", "5/2.5"),
        (
            "{{ 2.5|round }}/{{ 3.14159|round(2) }}/{{ 2.1|round(0, 'ceil') }}/{{ 2.9|round(0, 'floor') }}",
            "3/3.14/3/2",
        ),
        ("{{ 'Hello %name%'|replace({'%name%': __data.customer.name}) }}", "Hello Ann"),
        ("{{ 'aaa'|replace('a', 'b') }}", "bbb"),
        ("{{ 'ab'|replace({'a': 'b', 'b': 'a'}) }}", "ba"),
        (
            "{{ 'abcdef'|slice(1, 3) }}/{{ 'abcdef'|slice(-2) }}/{{ [1, 2, 3, 4]|slice(1, 2)|join }}",
            "bcd/ef/23",
        ),
        ("{{ 'a\nb'|nl2br }}", "a<br />\nb"),
        ("{{ '<p>Hi <b>there</b></p>'|striptags }}", "Hi there"),
        ("{{ [1, 2]|merge([3])|join(',') }}", "1,2,3"),
        ("{{ {'a': 1, 'b': 2}|merge({'b': 3})|json_encode }}", '{"a":1,"b":3}'),
        ("{{ __data.missing|merge([1])|json_encode }}", "[1]"),
        ("{{ '<b>'|raw }}", "<b>"),
        ("{% if __data.blank is empty %}E{% endif %}{% if __data.nothing is null %}N{% endif %}", "EN"),
        ("{{ __data.items|map(attribute='sku')|join(',') }}", "A,B"),  # Jinja's own filters remain
        ("{{ __data.items|sum(attribute='qty') }}", "3"),
    ],
)
def test_filters(engine: TemplateEngine, source: str, expected: str) -> None:
    assert r(engine, source) == expected


def test_json_encode_roundtrips(engine: TemplateEngine) -> None:
    assert json.loads(r(engine, "{{ __data.items|json_encode }}")) == DATA["items"]


@pytest.mark.parametrize(
    "source, message",
    [
        ("{{ formatCurrency('1e999999', '$') }}", "too large"),
        ("{{ '1e999999'|number_format(2) }}", "too large"),
        ("{{ '1e999999'|round(2) }}", "too large"),
    ],
)
def test_absurd_numbers_fail_cleanly(engine: TemplateEngine, source: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        r(engine, source)
