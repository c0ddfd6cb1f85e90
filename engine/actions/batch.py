"""The `for_each` action: its children run once per element of a list (providers that post arrays).

Keys: `items` (a template that renders to a list, e.g. `"{{ __data.__json }}"`; a string is
read as JSON text), `as` (default `item`: each run of the children sees `__data.item` and
`__data.item_index`), `concurrency` (default 1: in order; at most 100 at once).

The step itself only renders and checks the list; the runner (engine/runner.py) runs the
`success` children once per element, each with its own trace entries (`item_index`) and its own
effect key, so record steps write once per element and each element's webhook calls get their
own `Idempotency-Key`. The `failure` children run when `items` is not a list.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from engine.actions.base import Action, ActionContext, ActionError, ActionResult, Each, register
from engine.actions.core import STORE_NAME, is_template

MAX_ITEMS = 10_000
MAX_CONCURRENCY = 100


def _concurrency(value: Any) -> int | None:
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 1 <= value <= MAX_CONCURRENCY else None


@register
class ForEach(Action):
    name: ClassVar[str] = "for_each"
    required: ClassVar[frozenset[str]] = frozenset({"items"})
    optional: ClassVar[frozenset[str]] = frozenset({"as", "concurrency"})

    def validate(self, options: dict[str, Any]) -> list[str]:
        problems: list[str] = []
        items = options.get("items")
        if not isinstance(items, str | list):
            problems.append('for_each: items must be a template such as "{{ __data.__json }}" or a list')
        name = options.get("as", "item")
        if not isinstance(name, str) or not STORE_NAME.match(name) or name.startswith("__"):
            problems.append(f"for_each: as must be a name of letters, digits and _ (got {name!r})")
        concurrency = options.get("concurrency")
        if concurrency is not None and not is_template(concurrency) and _concurrency(concurrency) is None:
            problems.append(f"for_each: concurrency must be a whole number from 1 to {MAX_CONCURRENCY}")
        return problems

    async def execute(self, options: dict[str, Any], ctx: ActionContext) -> ActionResult:
        items = ctx.render_value(options["items"])
        if isinstance(items, str):
            try:
                items = json.loads(items) if items.strip() else []
            except ValueError:
                raise ActionError(
                    "for_each: items rendered to text that is not a JSON list", retryable=False
                ) from None
        if not isinstance(items, list | tuple):
            raise ActionError(
                f"for_each: items must render to a list, got {type(items).__name__}", retryable=False
            )
        if len(items) > MAX_ITEMS:
            raise ActionError(f"for_each: {len(items)} items, more than {MAX_ITEMS}", retryable=False)
        raw = options.get("concurrency", 1)
        concurrency = _concurrency(ctx.render(raw) if isinstance(raw, str) else raw)
        if concurrency is None:
            raise ActionError(
                f"for_each: concurrency must be a whole number from 1 to {MAX_CONCURRENCY}", retryable=False
            )
        name = str(options.get("as", "item"))
        return ActionResult(
            output={"count": len(items), "as": name, "concurrency": concurrency},
            each=Each(name, list(items), concurrency),
        )
