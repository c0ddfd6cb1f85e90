"""The contract every workflow action implements.

An action is a small class registered by name. The workflow compiler calls `validate` at load
time (so config errors surface in `router check`), the runner calls `execute` per step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from config import OutboundSmtpSettings, TwilioSettings

if TYPE_CHECKING:  # pragma: no cover
    from engine.ports import Database, DeletionSink, Responder


class ActionError(Exception):
    """A step failed; the message is shown in the run trace and the signal's last error.

    `retryable=False` marks errors that a retry cannot fix (a 4xx answer, bad input).
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass
class Services:
    """Long-lived things actions use; built once by whoever owns the engine."""

    db: Database
    deletions: DeletionSink | None = None
    smtp: OutboundSmtpSettings = field(
        default_factory=OutboundSmtpSettings
    )  # `[outbound.smtp]`: send_email's relay
    twilio: TwilioSettings = field(default_factory=TwilioSettings)  # `[twilio]`: send_sms / send_whatsapp
    http: Any = None  # an httpx.AsyncClient shared by webhook steps (created by the runner's owner)
    # ... or made on first use by this (its TLS context costs ~4 MB and ~50 ms: not for processes
    # whose workflows never call out).
    http_factory: Callable[[], Any] | None = None
    # Observers for the owner's metrics: one outbound call (kind, outcome, seconds), one retry (kind).
    on_call: Callable[[str, str, float], None] | None = None
    on_retry: Callable[[str], None] | None = None


@dataclass
class ActionContext:
    """What one step execution sees."""

    step_id: str
    data: dict[str, Any]  # this branch's view of __data; `store` and friends write here
    render: Callable[[str], str]  # render a template string against `data`
    render_value: Callable[[Any], Any]  # render a value tree; a leaf that is one {{ expr }} keeps its type
    services: Services
    responder: Responder | None = None
    log: Callable[[str, str], None] = lambda level, message: None
    # Render a template string as HTML: values are autoescaped (respond's return_html, send_email's html).
    render_html: Callable[[str], str] | None = None
    # (signal id, workflow, step id) when the run belongs to a journaled signal: record steps write
    # once per run even if the run is started over after a crash (engine.records.once).
    effect_key: tuple[str, str, str] | None = None
    # How many times the signal was replayed: a replay is a new execution, with its own webhook keys.
    replay: int = 0


@dataclass
class Each:
    """A `for_each` step's answer: run its children once per element, `concurrency` at a time."""

    name: str
    items: list[Any]
    concurrency: int


@dataclass
class ActionResult:
    """`output` goes into the trace; `store` is merged into this branch's __data; `each` (only
    `for_each` sets it) makes the runner run the step's children once per element."""

    output: Any = None
    store: dict[str, Any] = field(default_factory=dict)
    each: Each | None = None


class Action:
    """Base class: subclasses set `name`, `required`, `optional` and implement `execute`."""

    name: ClassVar[str] = ""
    required: ClassVar[frozenset[str]] = frozenset()
    optional: ClassVar[frozenset[str]] = frozenset()
    # Needs a caller that can take a reply: "respond", "emit" or "reply"; None for most actions.
    needs_caller: ClassVar[str | None] = None

    def validate(self, options: dict[str, Any]) -> list[str]:
        """Return problems with the step's keys (in addition to required/unknown checks)."""
        return []

    async def execute(self, options: dict[str, Any], ctx: ActionContext) -> ActionResult:
        """Run the step. `options` are the step's keys as configured (templates not yet rendered):
        render what you use with `ctx.render`, `ctx.render_value` or `ctx.render_html`, exactly
        once (rendered text is data, never template source again); the runner records those calls
        for the trace."""
        raise NotImplementedError


REGISTRY: dict[str, Action] = {}


def register(action_cls: type[Action]) -> type[Action]:
    REGISTRY[action_cls.name] = action_cls()
    return action_cls
