"""Running one workflow on one entity (SPEC §8 "Runs").

Roots start together; a step's children start together once it has finished. Each step works on
its own shallow copy of its parent's `__data`, so a child sees what its ancestors stored and
siblings never see each other's values. An action that fails follows its `failure` children if it
has any; otherwise the whole run fails with that step's error and the rest is cancelled. The
whole run is bounded by a timeout. `Engine.run` never raises for a failing workflow: the outcome,
a trace of every step and the final `__data` come back in a `RunResult`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
import trio

from engine.actions import REGISTRY, ActionContext, ActionError, ActionResult, Services
from engine.actions.base import Each
from engine.conditions import ConditionError, evaluate
from engine.entity import Entity, utcnow_iso
from engine.ports import Responder
from engine.templates import TemplateError
from engine.trace import Recorder, redact
from engine.workflow import Step, Templates, Workflow

log = structlog.get_logger("router.engine")

LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


@dataclass
class RunResult:
    status: str  # "done" | "failed"
    error: str | None = None
    retryable: bool = False
    trace: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "done"


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, ActionError):
        return str(exc) or type(exc).__name__
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, ActionError):
        return exc.retryable
    # A template that cannot render, a bad condition or a bad value will not get better on a retry.
    return not isinstance(exc, (TemplateError, ConditionError, ValueError, TypeError, KeyError))


class _Run:
    def __init__(
        self, engine: Engine, workflow: Workflow, entity: Entity, responder: Responder | None, replay: int = 0
    ) -> None:
        self.engine = engine
        self.replay = replay
        self.workflow = workflow
        self.entity = entity
        self.responder = responder
        self.trace: list[dict[str, Any]] = []
        self.merged: dict[str, Any] = dict(entity.data)
        self.error: str | None = None
        self.retryable = False
        self.scope = trio.CancelScope()

    async def steps(self, steps: list[Step], data: dict[str, Any], item: tuple[int, ...] = ()) -> None:
        if len(steps) == 1:
            await self.step(steps[0], data, item)
            return
        async with trio.open_nursery() as nursery:
            for step in steps:
                nursery.start_soon(self.step, step, data, item)

    async def step(self, step: Step, parent_data: dict[str, Any], item: tuple[int, ...] = ()) -> None:
        """`item`: the element indexes of the `for_each` steps above this one, outermost first."""
        data = dict(parent_data)
        entry: dict[str, Any] = {
            "step_id": step.id,
            "action": "condition" if step.is_condition else step.action,
            "started_at": utcnow_iso(),
        }
        if item:
            entry["item_index"] = list(item)
        self.trace.append(entry)
        recorder = Recorder()
        started = time.perf_counter()
        children: list[Step] = []
        each: Each | None = None
        try:
            if step.is_condition:
                children = self.condition(step, data, entry, recorder)
            else:
                children, each = await self.action(step, data, entry, recorder, item)
        except trio.Cancelled:
            entry.setdefault("error", "cancelled")
            raise
        finally:
            entry["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
        if children and each is not None:
            await self.each(children, data, item, each)
        elif children:
            await self.steps(children, data, item)

    async def each(
        self, children: list[Step], data: dict[str, Any], item: tuple[int, ...], each: Each
    ) -> None:
        """A `for_each` step's children, once per element, at most `concurrency` at a time."""
        slots = trio.Semaphore(each.concurrency)  # taken here, given back by the element's task

        async def one(index: int, element: Any) -> None:
            try:
                await self.steps(
                    children, {**data, each.name: element, f"{each.name}_index": index}, (*item, index)
                )
            finally:
                slots.release()

        async with trio.open_nursery() as nursery:
            for index, element in enumerate(each.items):
                await slots.acquire()  # no more tasks than may run: 10,000 items stay cheap
                nursery.start_soon(one, index, element)

    def condition(
        self, step: Step, data: dict[str, Any], entry: dict[str, Any], recorder: Recorder
    ) -> list[Step]:
        render = recorder.wrap(lambda source: self.engine.templates.render_value(source, data))
        try:
            result = bool(evaluate(step.condition, render))
        except Exception as exc:  # noqa: BLE001 - any error in a condition fails the step, with its trace
            entry["inputs"] = redact(recorder.rendered(step.condition))
            return self.fail(step, entry, exc)
        entry["inputs"] = redact(recorder.rendered(step.condition))
        branch = "yes" if result else "no"
        entry["result"] = branch
        entry["branch"] = branch
        return step.children.get(branch, [])

    async def action(
        self,
        step: Step,
        data: dict[str, Any],
        entry: dict[str, Any],
        recorder: Recorder,
        item: tuple[int, ...],
    ) -> tuple[list[Step], Each | None]:
        action = REGISTRY.get(step.action or "")
        templates = self.engine.templates
        logs: list[dict[str, str]] = []
        ctx = ActionContext(
            step_id=step.id,
            data=data,
            render=recorder.wrap(lambda source: templates.render(source, data)),
            render_value=recorder.wrap(lambda value: templates.render_value(value, data)),
            services=self.engine.services,
            responder=self.responder,
            log=lambda level, message: self.log(step, logs, level, message),
            render_html=recorder.wrap(lambda source: templates.render(source, data, html=True)),
            # Inside a for_each, each element's run of a step is its own effect (and webhook key).
            effect_key=(self.entity.id, self.workflow.name, step.id + "".join(f"[{i}]" for i in item)),
            replay=self.replay,
        )
        try:
            if action is None:
                raise ActionError(f"unknown action {step.action!r}", retryable=False)
            result = await action.execute(step.options, ctx)
            if result is None:
                result = ActionResult()
        except trio.Cancelled:
            raise
        except Exception as exc:
            entry["inputs"] = redact(recorder.rendered(step.options))
            if logs:
                entry["logs"] = logs
            if not isinstance(exc, ActionError):
                log.warning("step raised", workflow=self.workflow.name, step=step.id, exc_info=exc)
            failure = step.children.get("failure")
            if not failure:
                return self.fail(step, entry, exc), None
            entry["error"] = _error_text(exc)
            entry["branch"] = "failure"
            store = getattr(exc, "store", None)
            if isinstance(store, dict):
                data.update(store)
            data["__error"] = entry["error"]
            return failure, None
        entry["inputs"] = redact(recorder.rendered(step.options))
        entry["output"] = redact(result.output)
        if logs:
            entry["logs"] = logs
        if result.store:
            data.update(result.store)
            self.merged.update(result.store)
        entry["branch"] = "success"
        return step.children.get("success", []), result.each

    def fail(self, step: Step, entry: dict[str, Any], exc: BaseException) -> list[Step]:
        """The run fails with this step's error; everything still running is cancelled."""
        message = _error_text(exc)
        entry["error"] = message
        if self.error is None:
            self.error = f'step "{step.id}" failed: {message}'
            self.retryable = _retryable(exc)
        self.scope.cancel()
        return []

    def log(self, step: Step, logs: list[dict[str, str]], level: str, message: str) -> None:
        level = (level or "info").lower()
        logs.append({"level": level, "message": message})
        log.log(
            LOG_LEVELS.get(level, logging.INFO),
            "workflow log",
            workflow=self.workflow.name,
            signal_id=self.entity.id,
            step=step.id,
            message=message,
        )


class Engine:
    """Runs compiled workflows. One per process; `run` may be called concurrently."""

    def __init__(self, services: Services, templates: Templates, *, default_timeout: float) -> None:
        self.services = services
        self.templates = templates
        self.default_timeout = default_timeout

    async def run(
        self,
        workflow: Workflow,
        entity: Entity,
        responder: Responder | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - ends the run as "timeout" with its trace (a caller's scope would lose both)
        replay: int = 0,
    ) -> RunResult:
        """`replay`: how many times the signal was replayed (0: its first round of attempts)."""
        limit = timeout if timeout is not None else workflow.timeout or self.default_timeout
        run = _Run(self, workflow, entity, responder, replay)
        timed_out = False
        try:
            # One scope for both ends of a run: the deadline, and `fail()`, which sets the run's
            # error before it cancels; so a cancellation caught with no error is the deadline's.
            run.scope.deadline = trio.current_time() + limit
            with run.scope:
                await run.steps(workflow.roots, dict(entity.data))
            timed_out = run.scope.cancelled_caught and run.error is None
        except BaseException as exc:  # one run's failure must never escape...
            leaves = _leaves(exc)
            if any(isinstance(e, (trio.Cancelled, KeyboardInterrupt, SystemExit)) for e in leaves):
                raise  # ...but a cancellation from outside (or a shutdown) must
            log.error("workflow crashed", workflow=workflow.name, signal_id=entity.id, exc_info=exc)
            if run.error is None:
                run.error = f"internal error: {_error_text(leaves[0])}"
                run.retryable = True
        if run.error is None and timed_out:
            run.error = f"run timed out after {limit:g}s"
            run.retryable = True
        if run.error is not None:
            return RunResult("failed", run.error, run.retryable, run.trace, run.merged)
        return RunResult("done", None, False, run.trace, run.merged)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]
