"""Templates: Jinja2's immutable sandbox, made Twig-like as Flexie Scripting is (SPEC §8).

Rules:

- A template sees one variable, `__data` (the virtual entity, SPEC §5), plus the functions
  `formatCurrency`, `findOne`, `findMany`, `findCount`, `now`, `dateAdd`, `jsonDecode`, `uuid`,
  `hashHmac`, `jwtEncode`, `coalesce` and Twig's filters (see `engine.template_functions`).
- The caller's data is only ever data: values are never compiled as template source, so a value
  `{{ 7*7 }}` or `{% raw %}` renders literally.
- Missing values render empty at any depth (`{{ __data.a.b.c }}` -> ""). Comparing a missing value
  (`<`, `>`, ...) is false; arithmetic with a missing value gives a missing value; use `default`.
- Rendering as text: null -> "", true/false -> "true"/"false", lists and tables -> compact JSON,
  2500.0 -> "2500".
- `__data.items` is the field "items" when there is one (a table's own methods such as
  `items()` are reached only when no such field exists).
- The sandbox refuses private/internal attributes (`''.__class__`), mutating data
  (`list.append`), huge repetitions (`'x' * 10**9`, `10 ** 10**9`, `'%999999999d'`), ranges over
  100,000 items, and output over 1 MiB; each is a `TemplateError` with a clear message.
- Twig syntax that Jinja lacks: use `x if c else y` for `c ? x : y`, `coalesce(a, b)` or
  `a|default(b)` for `a ?? b`, and `for k, v in t.items()` for `for k, v in t`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import jinja2.exceptions as jexc
from jinja2 import ChainableUndefined, nodes
from jinja2.environment import Template, TemplateExpression
from jinja2.sandbox import ImmutableSandboxedEnvironment, modifies_known_mutable
from markupsafe import Markup

from engine.coercion import is_missing, plain, to_str
from engine.template_filters import make_filters, make_tests
from engine.template_functions import TemplateError, check_printf_format, check_str_format, make_globals

__all__ = ["MAX_OUTPUT", "RecordLookups", "TemplateEngine", "TemplateError"]

MAX_OUTPUT = 1024 * 1024  # characters one render may produce
MAX_REPEAT_BITS = 64 * 1024  # largest integer `**` may build, in bits
CACHE_SIZE = 4096  # compiled templates kept per engine


class RecordLookups(Protocol):
    """Read access to the record store, for findOne/findMany/findCount (engine/records.py)."""

    def find_one(self, record_type: str, filters: dict[str, Any]) -> dict[str, Any] | None: ...

    def find_many(
        self, record_type: str, filters: dict[str, Any], limit: int = 100, order_by: str | None = None
    ) -> list[dict[str, Any]]: ...

    def find_count(self, record_type: str, filters: dict[str, Any]) -> int: ...


class _Missing(ChainableUndefined):
    """A missing value: renders "", chains (`a.b.c`), never crashes a comparison or a sum."""

    __slots__ = ()

    def _propagate(self, *_: Any) -> _Missing:
        return self

    def _false(self, _other: Any) -> bool:
        return False

    __add__ = __radd__ = __sub__ = __rsub__ = _propagate  # type: ignore[assignment]
    __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _propagate  # type: ignore[assignment]
    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _propagate  # type: ignore[assignment]
    __pow__ = __rpow__ = __pos__ = __neg__ = _propagate  # type: ignore[assignment]
    __lt__ = __le__ = __gt__ = __ge__ = _false  # type: ignore[assignment]


def _too_large() -> jexc.SecurityError:
    return jexc.SecurityError(f"the result would be larger than {MAX_OUTPUT} characters")


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, (str, list, tuple))
                    and isinstance(times, int)
                    and len(seq) * times > MAX_OUTPUT
                ):
                    raise _too_large()
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0:
                if max(abs(left).bit_length(), 1) * right > MAX_REPEAT_BITS and abs(left) > 1:
                    raise jexc.SecurityError("the power is too large")
        elif operator == "%" and isinstance(left, str):
            check_printf_format(left)
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        # `__data.items` means the field "items" when it exists (webhooks love such names).
        if isinstance(obj, Mapping):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
            try:
                value = getattr(obj, attribute)
            except AttributeError:
                return self.undefined(obj=obj, name=attribute)
            if modifies_known_mutable(obj, attribute):
                return self.undefined(obj=obj, name=attribute)  # a missing field, not a method
            if not self.is_safe_attribute(obj, attribute, value):
                return self.unsafe_undefined(obj, attribute)
            return value
        return super().getattr(obj, attribute)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        raise jexc.SecurityError(
            f"access to attribute {attribute!r} of a {type(obj).__name__!r} value is not allowed"
        )

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        check_str_format(value.__self__)
        return wrapped


def _finalize(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if is_missing(value):
        return ""
    if callable(value):  # e.g. a table's own method: never useful as output
        return ""
    return to_str(value)


# `{{ expr }}` alone, surrounding whitespace allowed: render_value keeps the expression's type.
_SINGLE_EXPRESSION = re.compile(r"\s*\{\{[-+]?(.*?)[-+]?\}\}\s*", re.S)
_TAG_MARKERS = ("{{", "}}", "{%", "%}", "{#", "#}")
_LOCAL_NAMES = {"caller", "super", "loop", "varargs", "kwargs", "self"}
# `__class__`, `__globals__`, ...: Python's internals, the first step of every sandbox escape and
# never a data field. (`__data.__headers` and friends have no trailing underscores.)
_DUNDER = re.compile(r"^__\w+__$")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, jexc.SecurityError):
        return f"unsafe template: {exc}"
    if isinstance(exc, jexc.TemplateSyntaxError):
        where = f" (line {exc.lineno})" if exc.lineno else ""
        return f"template syntax error: {exc.message}{where}"
    if isinstance(exc, jexc.UndefinedError):
        return f"template error: {exc.message}"
    if isinstance(exc, RecursionError):
        return "template error: too deeply nested (recursion)"
    if isinstance(exc, MemoryError):
        return "template error: out of memory"
    message = str(exc) or type(exc).__name__
    return f"template error: {message}"


class TemplateEngine:
    """Compiles and renders templates; compiled sources are cached (LRU) per engine."""

    def __init__(self, lookups: RecordLookups | None = None) -> None:
        self.lookups = lookups
        functions = make_globals(lookups)
        self._envs: dict[bool, _Sandbox] = {}
        for html in (False, True):
            env = _Sandbox(
                autoescape=html,
                undefined=_Missing,
                finalize=_finalize,
                keep_trailing_newline=True,
                auto_reload=False,
                cache_size=0,
            )
            env.globals.update(functions)
            env.filters.update(make_filters())
            env.tests.update(make_tests())
            self._envs[html] = env
        self._function_names = frozenset(self._envs[False].globals)
        self._own_functions = frozenset(functions) | {"range"}
        self._template = functools.lru_cache(maxsize=CACHE_SIZE)(self._compile_template)
        self._expression = functools.lru_cache(maxsize=CACHE_SIZE)(self._compile_expression)

    # ---------------------------------------------------------------- compiling (cached)

    def _compile_template(self, source: str, html: bool) -> Template:
        try:
            return self._envs[html].from_string(source)
        except Exception as exc:
            raise TemplateError(_describe(exc)) from exc

    def _compile_expression(self, source: str) -> TemplateExpression | None:
        """The compiled expression when `source` is exactly one `{{ expr }}`, else None."""
        match = _SINGLE_EXPRESSION.fullmatch(source)
        if match is None:
            return None
        inner = match.group(1)
        if any(marker in inner for marker in _TAG_MARKERS):
            return None
        try:
            return self._envs[False].compile_expression(inner, undefined_to_none=False)
        except Exception as exc:
            raise TemplateError(_describe(exc)) from exc

    # ------------------------------------------------------------------------- public API

    def check(self, source: str) -> str | None:
        """A problem with the template's syntax (or an unknown function), or None."""
        if not isinstance(source, str):
            return "a template must be text"
        if not _has_markup(source):
            return None
        try:
            self._template(source, False)
            self._expression(source)
        except TemplateError as exc:
            return str(exc)
        try:
            tree = self._envs[False].parse(source)
        except Exception as exc:  # noqa: BLE001  # pragma: no cover - compiled above
            return _describe(exc)
        unsafe = _dunder_access(tree)
        if unsafe is not None:
            return unsafe
        defined = set(_LOCAL_NAMES)
        defined.update(n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param"))
        defined.update(n.name for n in tree.find_all(nodes.Macro))
        for call in tree.find_all(nodes.Call):
            if isinstance(call.node, nodes.Name):
                name = call.node.name
                if name not in self._function_names and name not in defined:
                    known = ", ".join(sorted(self._own_functions))
                    return f"unknown function {name!r} (line {call.lineno}); functions are: {known}"
        return None

    def render(self, source: str, data: dict[str, Any], html: bool = False) -> str:
        """Render `source` with `__data` = `data`. html=True escapes output (autoescape)."""
        if not isinstance(source, str):
            raise TemplateError("a template must be text")
        if not _has_markup(source):
            return source
        template = self._template(source, html)
        chunks: list[str] = []
        size = 0
        try:
            for chunk in template.generate({"__data": data}):
                size += len(chunk)
                if size > MAX_OUTPUT:
                    raise TemplateError(f"template output is larger than {MAX_OUTPUT} characters")
                chunks.append(chunk)
        except TemplateError:
            raise
        except Exception as exc:
            raise TemplateError(_describe(exc)) from exc
        text = "".join(chunks)
        return str(text) if isinstance(text, Markup) else text

    def render_value(self, value: Any, data: dict[str, Any]) -> Any:
        """Render a value tree: strings are templates, tables and lists are walked (keys kept),
        other values are returned as they are. A string that is exactly one `{{ expression }}`
        (whitespace around allowed) keeps the expression's type: a number stays a number, a table
        a table; a missing value gives None."""
        if isinstance(value, str):
            if not _has_markup(value):
                return value
            expression = self._expression(value)
            if expression is None:
                return self.render(value, data)
            try:
                result = expression({"__data": data})
            except TemplateError:
                raise
            except Exception as exc:
                raise TemplateError(_describe(exc)) from exc
            return plain(result)
        if isinstance(value, Mapping):
            return {k: self.render_value(v, data) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.render_value(v, data) for v in value]
        return value


def _dunder_access(tree: nodes.Template) -> str | None:
    """The sandbox refuses these at run time whatever the value; the config is refused at load
    instead, where the mistake (or the attack) is seen by whoever wrote it."""
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        if isinstance(node, nodes.Getattr):
            name: object = node.attr
        elif isinstance(node, nodes.Getitem):
            name = node.arg.value if isinstance(node.arg, nodes.Const) else None
        elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args:
            first = node.args[0]
            name = first.value if isinstance(first, nodes.Const) else None
        else:
            name = None
        if isinstance(name, str) and _DUNDER.match(name):
            return f"unsafe template: access to {name!r} is not allowed (line {node.lineno})"
    return None


def _has_markup(source: str) -> bool:
    return "{{" in source or "{%" in source or "{#" in source
