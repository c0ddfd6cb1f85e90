"""Compiling `[[workflows]]` into step trees, with every configuration problem found in one pass.

A workflow is a tree (SPEC §4): a step without `parent` is a root; a condition's children take
`branch = "yes"` or `"no"`; an action's children run after it (`branch = "success"`, the default,
or `"failure"`). `compile_workflows` checks the tree, each action's keys, each condition, every
template's syntax and what the listened sources can do, and returns the compiled workflows with
a list of `(dotted_key, message)` problems; the caller refuses the config if that list is not empty.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from config.workflows import record_id_spelling_problem
from engine.actions import REGISTRY
from engine.conditions import validate_condition

ACTION_BRANCHES = ("success", "failure")
CONDITION_BRANCHES = ("yes", "no")
CALLER_WORDS = {
    "respond": (
        "can_respond",
        'has no caller waiting for a respond step (only an endpoint with return_type = "continue" has)',
    ),
    "emit": ("can_emit", 'cannot stream events (only an endpoint with return_type = "sse" can)'),
    "reply": ("can_reply", "cannot take a TwiML reply (only sms and whatsapp sources can)"),
}


@dataclass(frozen=True)
class SourceCaps:
    """What a source's caller can take, as the workflow compiler needs to know it."""

    can_respond: bool = False
    can_emit: bool = False
    can_reply: bool = False
    requires_sync: bool = False


class Templates(Protocol):
    """The part of `engine.templates.TemplateEngine` the compiler and the runner use."""

    def check(self, source: str) -> str | None: ...

    def render(self, source: str, data: dict[str, Any], *, html: bool = False) -> str: ...

    def render_value(self, value: Any, data: dict[str, Any]) -> Any: ...


class StepLike(Protocol):
    """What the compiler reads from a `config` step (`config.StepConfig`)."""

    @property
    def id(self) -> str | None: ...
    @property
    def parent(self) -> str | None: ...
    @property
    def branch(self) -> str | None: ...
    @property
    def condition(self) -> Any: ...
    @property
    def action(self) -> str | None: ...
    def options(self) -> dict[str, Any]: ...


class WorkflowLike(Protocol):
    """What the compiler reads from a `config` workflow (`config.WorkflowConfig`)."""

    @property
    def name(self) -> str: ...
    @property
    def listen(self) -> str | Sequence[str]: ...
    @property
    def run_mode(self) -> str: ...
    @property
    def timeout(self) -> float | None: ...
    @property
    def max_attempts(self) -> int | None: ...
    @property
    def active(self) -> bool: ...
    @property
    def steps(self) -> Sequence[StepLike]: ...


@dataclass(eq=False)
class Step:
    id: str
    action: str | None  # None for a condition
    options: dict[str, Any] = field(default_factory=dict)
    condition: Any = None
    branch: str | None = None  # the branch of its parent it hangs under; None for a root
    children: dict[str, list[Step]] = field(default_factory=dict)

    @property
    def is_condition(self) -> bool:
        return self.action is None


@dataclass(eq=False)
class Workflow:
    name: str
    listen: list[str]
    run_mode: str = "async"
    timeout: float | None = None
    max_attempts: int | None = None
    roots: list[Step] = field(default_factory=list)
    active: bool = True
    steps: dict[str, Step] = field(default_factory=dict)  # every step by id

    def matches(self, source: str) -> bool:
        """Whether this (active) workflow listens to `source`; `kind.*` matches every source of a kind."""
        if not self.active:
            return False
        for pattern in self.listen:
            if pattern == source or pattern == "*":
                return True
            if pattern.endswith(".*") and source.startswith(pattern[:-1]):
                return True
        return False


def old_record_id_spelling(config: StepLike) -> str | None:
    return record_id_spelling_problem(config.action, config.id)


def _plain(value: Any) -> Any:
    """A config value as plain dicts/lists (pydantic models are dumped)."""
    if hasattr(value, "model_dump"):
        return value.model_dump(exclude_none=True, by_alias=True)
    return value


_STEP_INDEX = re.compile(r"\.steps\[(\d+)\]")


def _step_index(key: str) -> int:
    match = _STEP_INDEX.search(key)
    return int(match.group(1)) if match else -1


def _strings(value: Any, path: str) -> Iterable[tuple[str, str]]:
    """Every string leaf of a value tree, with its dotted path below `path`."""
    value = _plain(value)
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _strings(item, f"{path}[{i}]")


class _Compiler:
    def __init__(self, caps: Callable[[str], SourceCaps], templates: Templates) -> None:
        self.caps = caps
        self.templates = templates
        self.problems: list[tuple[str, str]] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append((key, message))

    def workflow(self, config: WorkflowLike) -> Workflow:
        first = len(self.problems)
        workflow = self._workflow(config)
        # Report in step order, whichever check found the problem (workflow-level keys first).
        mine = self.problems[first:]
        mine.sort(key=lambda problem: _step_index(problem[0]))
        self.problems[first:] = mine
        return workflow

    def _workflow(self, config: WorkflowLike) -> Workflow:
        name = config.name
        base = f"workflows.{name}"
        listen = [config.listen] if isinstance(config.listen, str) else list(config.listen or [])
        run_mode = config.run_mode or "async"
        caps = self.source_caps(base, listen, run_mode)
        steps, roots = self.steps(base, config.steps or [], caps)
        return Workflow(
            name=name,
            listen=listen,
            run_mode=run_mode,
            timeout=config.timeout,
            max_attempts=config.max_attempts,
            roots=roots,
            active=bool(getattr(config, "active", True)),
            steps=steps,
        )

    def source_caps(self, base: str, listen: list[str], run_mode: str) -> list[tuple[str, SourceCaps]]:
        if not listen:
            self.problem(
                f"{base}.listen", 'a workflow must listen to at least one source, e.g. "endpoints.NAME"'
            )
        found: list[tuple[str, SourceCaps]] = []
        for source in listen:
            try:
                caps = self.caps(source)
            except (KeyError, LookupError, ValueError) as exc:
                detail = exc.args[0] if exc.args and isinstance(exc.args[0], str) else ""
                self.problem(f"{base}.listen", detail or f'unknown source "{source}"')
                continue
            found.append((source, caps))
            if caps.requires_sync and run_mode != "sync":
                self.problem(
                    f"{base}.run_mode",
                    f'source "{source}" streams its answer (sse) and needs run_mode = "sync"',
                )
        return found

    def steps(
        self, base: str, configs: Sequence[StepLike], caps: list[tuple[str, SourceCaps]]
    ) -> tuple[dict[str, Step], list[Step]]:
        explicit = {c.id for c in configs if c.id}
        steps: dict[str, Step] = {}
        where: dict[str, tuple[str, StepLike]] = {}  # id -> (key prefix, config)
        order: list[Step] = []
        for index, config in enumerate(configs):
            key = f"{base}.steps[{index}]"
            old_spelling = old_record_id_spelling(config)
            if old_spelling is not None:
                self.problem(f"{key}.id", old_spelling)
            step_id = config.id or self.auto_id(index, explicit)
            if step_id in steps:
                self.problem(f"{key}.id", f'duplicate step id "{step_id}" (ids must be unique in a workflow)')
                continue
            step = self.step(key, step_id, config, caps)
            steps[step_id] = step
            where[step_id] = (key, config)
            order.append(step)
        named = {step_id for step_id, (_, config) in where.items() if config.id}
        return steps, self.link(steps, where, order, named)

    @staticmethod
    def auto_id(index: int, taken: set[str]) -> str:
        step_id = f"step-{index + 1}"
        n = 1
        while step_id in taken:
            step_id = f"step-{index + 1}-{n}"
            n += 1
        taken.add(step_id)
        return step_id

    def step(self, key: str, step_id: str, config: StepLike, caps: list[tuple[str, SourceCaps]]) -> Step:
        options = dict(config.options() or {})
        who = f'step "{step_id}"'
        condition = config.condition
        if condition is not None and config.action:
            self.problem(key, f"{who} has both a condition and an action; a step is one or the other")
        if condition is None and not config.action:
            self.problem(key, f'{who} needs either an action = "…" or a condition = {{ … }}')
        if condition is not None and not config.action:
            # Messages come as "condition.left: what is wrong"; templates are checked there too.
            for message in validate_condition(_plain(condition), "condition"):
                path, sep, text = message.partition(": ")
                if not sep or not path.startswith("condition"):
                    path, text = "condition", message
                self.problem(f"{key}.{path}", f"{who}: {text}")
            for option in options:
                self.problem(f"{key}.{option}", f'{who} is a condition and takes no key "{option}"')
            return Step(id=step_id, action=None, condition=condition, options={})
        action_name = config.action or ""
        action = REGISTRY.get(action_name)
        if action is None:
            allowed = ", ".join(sorted(REGISTRY))
            self.problem(f"{key}.action", f'{who}: unknown action "{action_name}"; allowed: {allowed}')
        else:
            allowed_keys = action.required | action.optional
            for missing in sorted(action.required - options.keys()):
                if missing == "record_id" and old_record_id_spelling(config) is not None:
                    continue  # already reported at `id`, naming record_id
                self.problem(f"{key}.{missing}", f'{who}: action "{action_name}" needs the key "{missing}"')
            for unknown in sorted(options.keys() - allowed_keys):
                self.problem(
                    f"{key}.{unknown}",
                    f'{who}: action "{action_name}" has no key "{unknown}"; '
                    f"allowed: {', '.join(sorted(allowed_keys)) or '(none)'}",
                )
            try:
                extra = action.validate(options)
            except Exception as exc:  # noqa: BLE001 - a validator must not break loading
                extra = [f"invalid options ({type(exc).__name__}: {exc})"]
            for message in extra:
                self.problem(key, f"{who}: {message}")
            self.check_caller(key, who, action_name, action.needs_caller, caps)
        for path, source in _strings(options, ""):
            self.check_template(f"{key}.{path}", who, source)
        return Step(id=step_id, action=action_name, options=options)

    def check_caller(
        self, key: str, who: str, action_name: str, needs: str | None, caps: list[tuple[str, SourceCaps]]
    ) -> None:
        if needs is None or needs not in CALLER_WORDS:
            return
        attr, why = CALLER_WORDS[needs]
        for source, cap in caps:
            if not getattr(cap, attr):
                self.problem(
                    f"{key}.action", f'{who}: action "{action_name}" not allowed: source "{source}" {why}'
                )

    def check_template(self, key: str, who: str, source: str) -> None:
        try:
            error = self.templates.check(source)
        except Exception as exc:  # noqa: BLE001  # pragma: no cover - check() should not raise
            error = f"{type(exc).__name__}: {exc}"
        if error:
            self.problem(key, f"{who}: {error}")

    def link(
        self,
        steps: dict[str, Step],
        where: dict[str, tuple[str, StepLike]],
        order: list[Step],
        named: set[str],
    ) -> list[Step]:
        """Attach children to parents and return the roots; report unknown parents, bad branches, loops.

        A `parent` must name a step's own `id`: the automatic ids (`step-N`) shift when a step is
        inserted, and `config.workflows` (the first checking layer) knows only the named ones."""
        roots: list[Step] = []
        parent_of: dict[str, str] = {}
        for step in order:
            key, config = where[step.id]
            who = f'step "{step.id}"'
            branch = config.branch
            if not config.parent:
                if branch:
                    self.problem(f"{key}.branch", f'{who} has branch = "{branch}" but no parent')
                roots.append(step)
                continue
            parent = steps.get(config.parent) if config.parent in named else None
            if parent is None:
                known = ", ".join(sorted(named)) or "no step has an id"
                self.problem(f"{key}.parent", f'{who}: unknown parent "{config.parent}"; step ids: {known}')
                continue
            parent_of[step.id] = parent.id
            if parent.is_condition:
                if branch is None:
                    self.problem(
                        f"{key}.branch",
                        f'{who} is under condition "{parent.id}" and needs branch = "yes" or "no"',
                    )
                    continue
                if branch not in CONDITION_BRANCHES:
                    self.problem(
                        f"{key}.branch",
                        f'{who}: branch "{branch}" is not allowed under condition "{parent.id}"; '
                        'use "yes" or "no"',
                    )
                    continue
            else:
                branch = branch or "success"
                if branch not in ACTION_BRANCHES:
                    self.problem(
                        f"{key}.branch",
                        f'{who}: branch "{branch}" is not allowed under action "{parent.id}"; '
                        'use "success" or "failure" ("yes"/"no" are for conditions)',
                    )
                    continue
            step.branch = branch
            parent.children.setdefault(branch, []).append(step)
        self.report_loops(parent_of, where)
        return roots

    def report_loops(self, parent_of: dict[str, str], where: dict[str, tuple[str, StepLike]]) -> None:
        position = {step_id: i for i, step_id in enumerate(where)}
        seen: set[str] = set()
        for start in parent_of:
            path: list[str] = []
            node: str | None = start
            while node is not None and node not in seen and node not in path:
                path.append(node)
                node = parent_of.get(node)
            if node is not None and node in path:
                loop = path[path.index(node) :]
                first = min(loop, key=position.__getitem__)
                chain = " → ".join([*loop, node])
                self.problem(
                    f"{where[first][0]}.parent",
                    f"steps form a loop ({chain}); a workflow must be a tree",
                )
            seen.update(path)


def compile_workflows(
    configs: Iterable[WorkflowLike], caps: Callable[[str], SourceCaps], templates: Templates
) -> tuple[list[Workflow], list[tuple[str, str]]]:
    """Compile every workflow; returns them with ALL problems found as `(dotted_key, message)`."""
    compiler = _Compiler(caps, templates)
    workflows = [compiler.workflow(config) for config in configs]
    return workflows, compiler.problems
