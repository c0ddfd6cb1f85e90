"""Record actions: `create_record`, `update_record`, `upsert_record`, `delete_record` (SPEC §8).

Field values are rendered with `render_value`, so a field that is exactly one `{{ expression }}`
keeps its type. `create_record` and `upsert_record` set `__data.__entity_inserted_id`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from engine.actions.base import Action, ActionContext, ActionError, ActionResult, register
from engine.actions.core import is_template
from engine.ports import StorageError
from engine.records import TYPE_RE, RecordError, RecordStore

INSERTED_ID = "__entity_inserted_id"


def _type_problems(action: str, options: dict[str, Any]) -> list[str]:
    record_type = options.get("record_type")
    if not isinstance(record_type, str):
        return [f"{action}: record_type must be a string"]
    if not is_template(record_type) and not TYPE_RE.match(record_type):
        return [
            f"{action}: record_type {record_type!r} must be lowercase letters, digits and _, "
            "starting with a letter (at most 63 characters)"
        ]
    return []


def _fields_problems(action: str, options: dict[str, Any]) -> list[str]:
    fields = options.get("fields")
    if fields is not None and not isinstance(fields, (dict, str)):
        return [f"{action}: fields must be a table of name = value"]
    return []


def _record_type(ctx: ActionContext, options: dict[str, Any]) -> str:
    record_type = ctx.render(options["record_type"]).strip()
    if not TYPE_RE.match(record_type):
        raise ActionError(f"invalid record type {record_type[:80]!r}", retryable=False)
    return record_type


def _fields(ctx: ActionContext, options: dict[str, Any]) -> dict[str, Any]:
    raw = options.get("fields")
    if raw is None:
        return {}
    fields = ctx.render_value(raw)
    if fields in (None, ""):
        return {}
    if not isinstance(fields, dict):
        raise ActionError(f"fields must render to a table, got {type(fields).__name__}", retryable=False)
    return fields


def _record_id(ctx: ActionContext, options: dict[str, Any]) -> str:
    raw = options["record_id"]
    record_id = str(ctx.render(raw) if isinstance(raw, str) else raw).strip()
    if not record_id:
        raise ActionError("record id rendered empty", retryable=False)
    return record_id


def _store(ctx: ActionContext) -> RecordStore:
    return RecordStore(ctx.services.db, ctx.services.deletions)


class _RecordAction(Action):
    async def run(self, options: dict[str, Any], ctx: ActionContext) -> ActionResult:
        raise NotImplementedError

    async def execute(self, options: dict[str, Any], ctx: ActionContext) -> ActionResult:
        try:
            return await self.run(options, ctx)
        except RecordError as exc:
            raise ActionError(f"{self.name}: {exc}", retryable=False) from None
        except StorageError as exc:
            raise ActionError(f"{self.name}: database error: {exc}", retryable=True) from None


@register
class CreateRecord(_RecordAction):
    name: ClassVar[str] = "create_record"
    required: ClassVar[frozenset[str]] = frozenset({"record_type"})
    optional: ClassVar[frozenset[str]] = frozenset({"fields"})

    def validate(self, options: dict[str, Any]) -> list[str]:
        return _type_problems(self.name, options) + _fields_problems(self.name, options)

    async def run(self, options: dict[str, Any], ctx: ActionContext) -> ActionResult:
        record_type = _record_type(ctx, options)
        record = await _store(ctx).create(record_type, _fields(ctx, options), effect=ctx.effect_key)
        return ActionResult(
            output={"record_type": record_type, "id": record["id"]}, store={INSERTED_ID: record["id"]}
        )


@register
class UpdateRecord(_RecordAction):
    name: ClassVar[str] = "update_record"
    required: ClassVar[frozenset[str]] = frozenset({"record_type", "record_id", "fields"})

    def validate(self, options: dict[str, Any]) -> list[str]:
        return _type_problems(self.name, options) + _fields_problems(self.name, options)

    async def run(self, options: dict[str, Any], ctx: ActionContext) -> ActionResult:
        record_type = _record_type(ctx, options)
        record_id = _record_id(ctx, options)
        record = await _store(ctx).update(
            record_type, record_id, _fields(ctx, options), effect=ctx.effect_key
        )
        if record is None:
            raise ActionError(f"update_record: no {record_type} with id {record_id[:80]!r}", retryable=False)
        return ActionResult(output={"record_type": record_type, "id": record_id})


@register
class UpsertRecord(_RecordAction):
    name: ClassVar[str] = "upsert_record"
    required: ClassVar[frozenset[str]] = frozenset({"record_type", "key", "fields"})

    def validate(self, options: dict[str, Any]) -> list[str]:
        problems = _type_problems(self.name, options) + _fields_problems(self.name, options)
        key = options.get("key")
        if isinstance(key, str):
            key = [key]
        if not isinstance(key, list) or not key or not all(isinstance(k, str) and k for k in key):
            problems.append('upsert_record: key must be a list of field names, e.g. key = ["email"]')
        elif isinstance(options.get("fields"), dict):
            missing = [k for k in key if not is_template(k) and k not in options["fields"]]
            if missing:
                problems.append(f"upsert_record: key field(s) {', '.join(missing)} missing from fields")
        return problems

    async def run(self, options: dict[str, Any], ctx: ActionContext) -> ActionResult:
        record_type = _record_type(ctx, options)
        raw_key = options["key"]
        key = [ctx.render(k).strip() for k in ([raw_key] if isinstance(raw_key, str) else raw_key)]
        record = await _store(ctx).upsert(record_type, key, _fields(ctx, options), effect=ctx.effect_key)
        return ActionResult(
            output={"record_type": record_type, "id": record["id"]}, store={INSERTED_ID: record["id"]}
        )


@register
class DeleteRecord(_RecordAction):
    name: ClassVar[str] = "delete_record"
    required: ClassVar[frozenset[str]] = frozenset({"record_type", "record_id"})

    def validate(self, options: dict[str, Any]) -> list[str]:
        return _type_problems(self.name, options)

    async def run(self, options: dict[str, Any], ctx: ActionContext) -> ActionResult:
        record_type = _record_type(ctx, options)
        record_id = _record_id(ctx, options)
        record = await _store(ctx).delete(record_type, record_id, effect=ctx.effect_key)
        if record is None:
            # Already gone (perhaps by an earlier try of this run): deleting is idempotent.
            ctx.log("info", f"no {record_type} with id {record_id[:80]!r}; nothing to delete")
        return ActionResult(
            output={"record_type": record_type, "id": record_id, "deleted": record is not None}
        )
