"""``[[workflows]]`` and their ``[[workflows.steps]]``."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import ConfigDict, Field, StrictBool, field_validator

from .types import PositiveDuration, StrictModel, StrList

__all__ = ["LISTEN_KINDS", "SOURCE_KINDS", "StepConfig", "WorkflowConfig", "record_id_spelling_problem"]

SOURCE_KINDS = ("endpoints", "webhooks", "forms", "mailboxes", "sms", "whatsapp", "schedules")
LISTEN_KINDS = (*SOURCE_KINDS, "deletions")
_LISTEN_RE = re.compile(r"^(?P<kind>[a-z]+)\.(?P<name>[A-Za-z0-9_-]+|\*)$")
_LISTEN_HELP = (
    'use "KIND.NAME" with KIND one of '
    + ", ".join(LISTEN_KINDS)
    + ' (e.g. "endpoints.invoices", "webhooks.*", "deletions.contact")'
)
CONDITION_BRANCHES = ("yes", "no")
ACTION_BRANCHES = ("success", "failure")
RECORD_ID_ACTIONS = ("update_record", "delete_record")


def record_id_spelling_problem(action: str | None, step_id: str | None) -> str | None:
    """What is wrong with a record step whose own `id` is a template. Before SPEC §8 said
    `record_id`, `id` held the record id on these actions; now `id` names the step as on every
    step, and a template there is the old spelling (no child's `parent` could ever match it).
    Shared by both checking layers (here and `engine.workflow`) so that they agree."""
    if action in RECORD_ID_ACTIONS and step_id and ("{{" in step_id or "{%" in step_id):
        verb = action.split("_")[0]
        return (
            f"step id {step_id!r} looks like a template: the record to {verb} goes in "
            f"record_id = {step_id!r} (SPEC §8); id names the step"
        )
    return None


class StepConfig(StrictModel):
    """One step: a ``condition`` or an ``action``. Action-specific keys (``return_data``,
    ``fields``, ``url`` …) are kept as extras and checked by the engine."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str | None = None
    parent: str | None = None
    branch: str | None = None
    condition: dict[str, Any] | None = None
    action: str | None = None

    def options(self) -> dict[str, Any]:
        """The action-specific keys (everything but id, parent, branch, condition, action)."""
        return dict(self.model_extra or {})

    @property
    def kind(self) -> Literal["condition", "action"]:
        return "condition" if self.condition is not None else "action"

    def rule_problems(self) -> list[tuple[str, str]]:
        if (self.condition is None) == (self.action is None):
            found = "both" if self.condition is not None else "neither"
            return [("", f"a step needs exactly one of condition or action (found {found})")]
        problem = record_id_spelling_problem(self.action, self.id)
        return [("id", problem)] if problem else []


class WorkflowConfig(StrictModel):
    """One ``[[workflows]]`` entry: a tree of steps run for signals from ``listen``."""

    name: str = Field(min_length=1)
    listen: StrList = Field(min_length=1)
    run_mode: Literal["sync", "async"] = "async"
    timeout: PositiveDuration | None = None
    max_attempts: int | None = Field(default=None, ge=1)
    active: StrictBool = True
    description: str = ""
    steps: list[StepConfig] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _strip_name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("workflow name must not be blank")
        return value.strip()

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: list[str]) -> list[str]:
        result = []
        for ref in value:
            ref = ref.strip()
            match = _LISTEN_RE.match(ref)
            if match is None or match["kind"] not in LISTEN_KINDS:
                raise ValueError(f"invalid source reference {ref!r}; {_LISTEN_HELP}")
            result.append(ref)
        return result

    def rule_problems(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        by_id: dict[str, int] = {}
        for index, step in enumerate(self.steps):
            if step.id is None:
                continue
            if step.id in by_id:
                problems.append(
                    (f"steps[{index}].id", f"duplicate step id {step.id!r} (also steps[{by_id[step.id]}])")
                )
            else:
                by_id[step.id] = index
        for index, step in enumerate(self.steps):
            where = f"steps[{index}]"
            if step.parent is None:
                if step.branch is not None:
                    problems.append((f"{where}.branch", "branch needs parent (a root step has no branch)"))
                continue
            if step.parent not in by_id:
                known = ", ".join(sorted(by_id)) or "no step has an id"
                problems.append((f"{where}.parent", f"unknown parent {step.parent!r}; step ids: {known}"))
                continue
            parent = self.steps[by_id[step.parent]]
            if parent.condition is not None and step.branch not in CONDITION_BRANCHES:
                problems.append(
                    (
                        f"{where}.branch",
                        f"a child of condition step {step.parent!r} needs "
                        f'branch = "yes" or "no" (got {step.branch!r})',
                    )
                )
            elif parent.action is not None and step.branch not in (None, *ACTION_BRANCHES):
                problems.append(
                    (
                        f"{where}.branch",
                        f"a child of action step {step.parent!r} takes "
                        f'branch = "success" (default) or "failure" (got {step.branch!r})',
                    )
                )
            if self._in_loop(index, by_id):
                problems.append((f"{where}.parent", f"loop: step {step.id or index!r} is its own ancestor"))
        return problems

    def _in_loop(self, index: int, by_id: dict[str, int]) -> bool:
        seen = {index}
        current = self.steps[index]
        while current.parent is not None and current.parent in by_id:
            parent_index = by_id[current.parent]
            if parent_index in seen:
                return parent_index == index
            seen.add(parent_index)
            current = self.steps[parent_index]
        return False
