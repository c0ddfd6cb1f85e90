"""The engine end to end: compiled workflows run on entities against a real SQLite file."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
import trio

from engine.actions import REGISTRY, Action, ActionContext, ActionError, ActionResult, Services
from engine.entity import Entity
from engine.ports import Reply
from engine.runner import Engine, RunResult
from engine.templates import TemplateEngine
from engine.workflow import SourceCaps, Workflow, compile_workflows
from router.storage.sqlite.tx import SqliteTx
from tests.test_records import Sink, SqliteDb

# -- config stand-ins (the protocol compile_workflows reads) -----------------------------------


@dataclass
class StepCfg:
    id: str | None = None
    parent: str | None = None
    branch: str | None = None
    condition: dict[str, Any] | None = None
    action: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def options(self) -> dict[str, Any]:
        return dict(self.extra)


@dataclass
class WfCfg:
    name: str
    listen: str | list[str]
    steps: list[StepCfg]
    run_mode: str = "async"
    timeout: float | None = None
    max_attempts: int | None = None
    active: bool = True


def step(
    step_id: str | None = None,
    /,
    *,
    parent: str | None = None,
    branch: str | None = None,
    condition: dict[str, Any] | None = None,
    action: str | None = None,
    **extra: Any,
) -> StepCfg:
    return StepCfg(id=step_id, parent=parent, branch=branch, condition=condition, action=action, extra=extra)


CAPS = {
    "endpoints.invoices": SourceCaps(can_respond=True),
    "endpoints.live": SourceCaps(can_emit=True, requires_sync=True),
    "sms.main": SourceCaps(can_reply=True),
}


def caps(source: str) -> SourceCaps:
    return CAPS.get(source, SourceCaps())


def compile_one(cfg: WfCfg) -> Workflow:
    workflows, problems = compile_workflows([cfg], caps, TemplateEngine())
    assert problems == []
    return workflows[0]


# -- test-only actions ----------------------------------------------------------------------

SEEN: dict[str, dict[str, Any]] = {}


class Probe(Action):
    """Remembers the __data its step saw, under `label`."""

    name: ClassVar[str] = "test_probe"
    required: ClassVar[frozenset[str]] = frozenset({"label"})

    async def execute(self, options: dict[str, Any], ctx: ActionContext) -> ActionResult:
        SEEN[options["label"]] = dict(ctx.data)
        return ActionResult(output={"seen": sorted(ctx.data)})


class Sleep(Action):
    name: ClassVar[str] = "test_sleep"
    required: ClassVar[frozenset[str]] = frozenset({"seconds"})
    optional: ClassVar[frozenset[str]] = frozenset({"label"})

    async def execute(self, options: dict[str, Any], ctx: ActionContext) -> ActionResult:
        await trio.sleep(float(options["seconds"]))
        return ActionResult(store={options.get("label", "slept"): True})


class Boom(Action):
    name: ClassVar[str] = "test_boom"
    optional: ClassVar[frozenset[str]] = frozenset({"kind", "token"})

    async def execute(self, options: dict[str, Any], ctx: ActionContext) -> ActionResult:
        ctx.render(options.get("token", ""))
        if options.get("kind") == "crash":
            raise RuntimeError("kaput")
        if options.get("kind") == "with-store":  # like WebhookError: the answer is kept for `failure`
            exc = ActionError("HTTP 500")
            exc.store = {"webhook": {"status": 500}}  # type: ignore[attr-defined]
            raise exc
        raise ActionError("upstream said no", retryable=False)


@pytest.fixture(autouse=True)
def test_actions() -> Any:
    for cls in (Probe, Sleep, Boom):
        REGISTRY[cls.name] = cls()
    SEEN.clear()
    yield
    for cls in (Probe, Sleep, Boom):
        REGISTRY.pop(cls.name, None)


# -- the caller ---------------------------------------------------------------------------


class Caller:
    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.events: list[tuple[str, str]] = []
        self.twiml: list[str] = []

    def respond(self, reply: Reply) -> bool:
        self.replies.append(reply)
        return len(self.replies) == 1

    async def emit(self, event: str, data: str) -> None:
        self.events.append((event, data))

    def twiml_reply(self, message: str) -> None:
        self.twiml.append(message)


@pytest.fixture
def db(tmp_path: Path) -> SqliteDb:
    return SqliteDb(tmp_path / "router.db")


def make_engine(db: SqliteDb, sink: Sink | None = None) -> Engine:
    return Engine(Services(db=db, deletions=sink), TemplateEngine(), default_timeout=30)


def entity(data: dict[str, Any], source: str = "endpoints.invoices") -> Entity:
    return Entity(channel=source.split(".")[0], source=source, data=dict(data))


# -- Flexie example 1 (SPEC §4) -------------------------------------------------------------

INVOICE = WfCfg(
    name="invoice-raised",
    listen="endpoints.invoices",
    run_mode="sync",
    steps=[
        step("has-email", condition={"left": "{{ __data.customer_email }}", "operator": "is_not_empty"}),
        step(
            parent="has-email",
            branch="no",
            action="respond",
            return_type="data",
            return_data='{"error": "email required"}',
        ),
        step(
            "save-note",
            parent="has-email",
            branch="yes",
            action="create_record",
            record_type="note",
            fields={
                "body": 'Invoice raised: {{ formatCurrency(__data.invoice_amount, "€") }}',
                "amount": "{{ __data.invoice_amount }}",
            },
        ),
        step(parent="save-note", action="respond", return_type="data", return_data='{"status": "received"}'),
    ],
)


async def test_flexie_example_creates_note_and_responds(db: SqliteDb) -> None:
    caller = Caller()
    result = await make_engine(db).run(
        compile_one(INVOICE), entity({"invoice_amount": 2500, "customer_email": "john@example.com"}), caller
    )
    assert result.status == "done", result.error
    notes = db.read(lambda c: c.record_find("note"))
    assert len(notes) == 1
    assert notes[0]["body"] == "Invoice raised: €2,500.00"
    assert notes[0]["amount"] == 2500  # a lone {{ expression }} keeps its type
    assert [(r.return_type, r.body) for r in caller.replies] == [("data", '{"status": "received"}')]
    assert result.data["__entity_inserted_id"] == notes[0]["id"]
    by_step = {e["step_id"]: e for e in result.trace}
    assert by_step["has-email"]["action"] == "condition" and by_step["has-email"]["result"] == "yes"
    assert by_step["save-note"]["inputs"]["fields"]["body"] == "Invoice raised: €2,500.00"
    assert by_step["save-note"]["output"]["id"] == notes[0]["id"]
    for entry in result.trace:
        assert entry["started_at"].endswith("Z") and entry["duration_ms"] >= 0 and "error" not in entry


async def test_flexie_example_without_email_refuses(db: SqliteDb) -> None:
    caller = Caller()
    result = await make_engine(db).run(compile_one(INVOICE), entity({"invoice_amount": 2500}), caller)
    assert result.status == "done"
    assert [r.body for r in caller.replies] == ['{"error": "email required"}']
    assert db.read(lambda c: c.record_count("note")) == 0
    assert [e["branch"] for e in result.trace] == ["no", "success"]


# -- branches -------------------------------------------------------------------------------


async def test_condition_groups_compare_numbers(db: SqliteDb) -> None:
    wf = compile_one(
        WfCfg(
            name="big",
            listen="webhooks.x",
            steps=[
                step(
                    "big",
                    condition={
                        "all": [
                            {"left": "{{ __data.amount }}", "operator": "greater", "right": "1000"},
                            {"left": "{{ __data.who }}", "operator": "begins_with", "right": "Jo"},
                        ]
                    },
                ),
                step(parent="big", branch="yes", action="test_probe", label="yes"),
                step(parent="big", branch="no", action="test_probe", label="no"),
            ],
        )
    )
    engine = make_engine(db)
    result = await engine.run(wf, entity({"amount": 2500, "who": "John"}, "webhooks.x"))
    assert list(SEEN) == ["yes"] and result.trace[0]["result"] == "yes"
    assert result.trace[0]["inputs"]["all"][0]["left"] == 2500
    SEEN.clear()
    await engine.run(wf, entity({"amount": 999, "who": "John"}, "webhooks.x"))
    assert list(SEEN) == ["no"]


async def test_siblings_are_isolated_children_see_ancestors(db: SqliteDb) -> None:
    wf = compile_one(
        WfCfg(
            name="iso",
            listen="webhooks.x",
            steps=[
                step("root", action="store", name="a", value="{{ 1 }}"),
                step("left", parent="root", action="store", name="b", value="B"),
                step("right", parent="root", action="store", name="c", value="{{ __data.a + 1 }}"),
                step(parent="left", action="test_probe", label="under-left"),
                step(parent="right", action="test_probe", label="under-right"),
            ],
        )
    )
    result = await make_engine(db).run(wf, entity({"x": 1}, "webhooks.x"))
    assert result.status == "done", result.error
    left, right = SEEN["under-left"], SEEN["under-right"]
    assert left["a"] == 1 and left["b"] == "B" and "c" not in left
    assert right["a"] == 1 and right["c"] == 2 and "b" not in right
    assert left["x"] == 1 and left["__source"] == "webhooks.x"
    # the run's merged view has every store
    assert {"a": 1, "b": "B", "c": 2}.items() <= result.data.items()


async def test_siblings_run_concurrently(db: SqliteDb, autojump_clock: trio.testing.MockClock) -> None:
    wf = compile_one(
        WfCfg(
            name="conc",
            listen="webhooks.x",
            steps=[
                step("one", action="test_sleep", seconds=5, label="one"),
                step("two", action="test_sleep", seconds=5, label="two"),
                step("three", parent="two", action="test_sleep", seconds=5, label="three"),
            ],
        )
    )
    start = trio.current_time()
    result = await make_engine(db).run(wf, entity({}, "webhooks.x"))
    assert result.status == "done"
    assert trio.current_time() - start == pytest.approx(10)  # not 15: roots overlap, the child waits
    assert result.data["one"] and result.data["two"] and result.data["three"]


async def test_failure_branch_taken(db: SqliteDb) -> None:
    wf = compile_one(
        WfCfg(
            name="fb",
            listen="webhooks.x",
            steps=[
                step("call", action="test_boom"),
                step(parent="call", branch="failure", action="test_probe", label="failed"),
                step(parent="call", branch="success", action="test_probe", label="ok"),
            ],
        )
    )
    result = await make_engine(db).run(wf, entity({}, "webhooks.x"))
    assert result.status == "done" and result.error is None
    assert "ok" not in SEEN and SEEN["failed"]["__error"] == "upstream said no"
    call = result.trace[0]
    assert call["error"] == "upstream said no" and call["branch"] == "failure"


async def test_failure_branch_sees_what_the_failed_step_kept(db: SqliteDb) -> None:
    wf = compile_one(
        WfCfg(
            name="fb",
            listen="webhooks.x",
            steps=[
                step("call", action="test_boom", kind="with-store"),
                step(parent="call", branch="failure", action="test_probe", label="failed"),
            ],
        )
    )
    result = await make_engine(db).run(wf, entity({}, "webhooks.x"))
    assert result.status == "done"
    assert SEEN["failed"]["webhook"] == {"status": 500} and SEEN["failed"]["__error"] == "HTTP 500"


async def test_run_fails_without_failure_branch_and_cancels_the_rest(
    db: SqliteDb, autojump_clock: trio.testing.MockClock
) -> None:
    wf = compile_one(
        WfCfg(
            name="nf",
            listen="webhooks.x",
            steps=[
                step("slow", action="test_sleep", seconds=10),
                step("after-slow", parent="slow", action="test_probe", label="after"),
                step("wait", action="test_sleep", seconds=1),
                step("call", parent="wait", action="test_boom", token="{{ __data.secret_token }}"),
            ],
        )
    )
    result = await make_engine(db).run(wf, entity({"secret_token": "s3cr3t"}, "webhooks.x"))
    assert result.status == "failed"
    assert result.error == 'step "call" failed: upstream said no' and result.retryable is False
    assert "after" not in SEEN
    by_step = {e["step_id"]: e for e in result.trace}
    assert by_step["slow"]["error"] == "cancelled"
    assert by_step["call"]["inputs"]["token"] == "***"
    assert "s3cr3t" not in json.dumps(result.trace)


async def test_unexpected_exception_becomes_the_error(db: SqliteDb) -> None:
    wf = compile_one(
        WfCfg(name="crash", listen="webhooks.x", steps=[step("c", action="test_boom", kind="crash")])
    )
    result = await make_engine(db).run(wf, entity({}, "webhooks.x"))
    assert result.status == "failed" and result.error == 'step "c" failed: RuntimeError: kaput'
    assert result.retryable is True


async def test_run_timeout(db: SqliteDb, autojump_clock: trio.testing.MockClock) -> None:
    wf = compile_one(
        WfCfg(
            name="slow", listen="webhooks.x", timeout=2, steps=[step("zz", action="test_sleep", seconds=60)]
        )
    )
    engine = make_engine(db)
    result = await engine.run(wf, entity({}, "webhooks.x"))
    assert (result.status, result.error, result.retryable) == ("failed", "run timed out after 2s", True)
    assert result.trace[0]["error"] == "cancelled"
    result = await engine.run(wf, entity({}, "webhooks.x"), timeout=0.5)
    assert result.error == "run timed out after 0.5s"


async def test_outer_cancellation_is_not_swallowed(
    db: SqliteDb, autojump_clock: trio.testing.MockClock
) -> None:
    wf = compile_one(
        WfCfg(
            name="slow",
            listen="webhooks.x",
            steps=[
                step("a", action="test_sleep", seconds=60),
                step("b", action="test_sleep", seconds=60),
            ],
        )
    )
    outcome: list[RunResult] = []
    with trio.move_on_after(1) as scope:
        outcome.append(await make_engine(db).run(wf, entity({}, "webhooks.x")))
    assert scope.cancelled_caught and outcome == []


# -- caller actions -------------------------------------------------------------------------


async def test_respond_html_redirect_status_headers_and_second_reply_ignored(db: SqliteDb) -> None:
    wf = compile_one(
        WfCfg(
            name="r",
            listen="endpoints.invoices",
            steps=[
                step(
                    "page",
                    action="respond",
                    return_type="html",
                    return_html="<p>{{ __data.name }}</p>",
                    status="{{ __data.code }}",
                    headers={"X-Who": "{{ __data.name|upper }}", "Authorization": "Bearer {{ __data.tok }}"},
                ),
                step(
                    "again",
                    parent="page",
                    action="respond",
                    return_type="redirect",
                    return_redirect="https://example.com/?n={{ __data.code }}",
                ),
            ],
        )
    )
    caller = Caller()
    result = await make_engine(db).run(wf, entity({"name": "<b>Ann</b>", "code": 201, "tok": "zz"}), caller)
    assert result.status == "done"
    first, second = caller.replies
    assert first.body == "<p>&lt;b&gt;Ann&lt;/b&gt;</p>" and first.status == 201
    assert first.headers["X-Who"] == "<B>ANN</B>" and first.headers["Authorization"] == "Bearer zz"
    assert (second.return_type, second.body) == ("redirect", "https://example.com/?n=201")
    by_step = {e["step_id"]: e for e in result.trace}
    assert by_step["page"]["inputs"]["headers"]["Authorization"] == "***"
    assert by_step["again"]["logs"] == [{"level": "info", "message": "response already sent; ignored"}]


async def test_respond_data_table_becomes_json(db: SqliteDb) -> None:
    wf = compile_one(
        WfCfg(
            name="r",
            listen="endpoints.invoices",
            steps=[
                step(action="respond", return_data={"id": "{{ __data.n }}", "ok": True}),
            ],
        )
    )
    caller = Caller()
    await make_engine(db).run(wf, entity({"n": 7}), caller)
    assert json.loads(caller.replies[0].body) == {"id": 7, "ok": True}


async def test_emit_reply_and_log(db: SqliteDb) -> None:
    caller = Caller()
    live = compile_one(
        WfCfg(
            name="live",
            listen="endpoints.live",
            run_mode="sync",
            steps=[
                step("e1", action="emit", data="hello {{ __data.who }}"),
                step(parent="e1", action="emit", event="done-ish", data="{{ __data.obj }}"),
            ],
        )
    )
    await make_engine(db).run(live, entity({"who": "you", "obj": {"a": 1}}, "endpoints.live"), caller)
    assert caller.events == [("message", "hello you"), ("done-ish", '{"a":1}')]
    sms = compile_one(
        WfCfg(
            name="sms",
            listen="sms.main",
            steps=[
                step("l", action="log", message="got {{ __data.t }}", level="warning"),
                step(parent="l", action="reply", message="Thanks, {{ __data.t }}"),
            ],
        )
    )
    result = await make_engine(db).run(sms, entity({"t": "hi"}, "sms.main"), caller)
    assert caller.twiml == ["Thanks, hi"]
    assert result.trace[0]["logs"] == [{"level": "warning", "message": "got hi"}]


# -- record actions -------------------------------------------------------------------------


async def test_record_actions_and_deletion_sink(db: SqliteDb) -> None:
    sink = Sink()
    wf = compile_one(
        WfCfg(
            name="rec",
            listen="webhooks.x",
            steps=[
                step(
                    "up",
                    action="upsert_record",
                    record_type="contact",
                    key=["email"],
                    fields={
                        "email": "{{ __data.email }}",
                        "n": "{{ __data.n }}",
                        "tags": "{{ __data.tags }}",
                    },
                ),
                step(
                    "upd",
                    parent="up",
                    action="update_record",
                    record_type="contact",
                    record_id="{{ __data.__entity_inserted_id }}",
                    fields={"stage": "won"},
                ),
                step(
                    "del",
                    parent="upd",
                    action="delete_record",
                    record_type="contact",
                    record_id="{{ __data.__entity_inserted_id }}",
                ),
            ],
        )
    )
    engine = make_engine(db, sink)
    result = await engine.run(wf, entity({"email": "a@x.io", "n": 3, "tags": ["vip"]}, "webhooks.x"))
    assert result.status == "done", result.error
    record_id = result.data["__entity_inserted_id"]
    assert sink.calls == [("contact", sink.calls[0][1])]
    last = sink.calls[0][1]
    assert (last["id"], last["email"], last["n"], last["tags"], last["stage"]) == (
        record_id,
        "a@x.io",
        3,
        ["vip"],
        "won",
    )
    assert db.read(lambda c: c.record_get("contact", record_id)) is None
    assert db.read(lambda c: [tuple(r) for r in c.conn.execute("SELECT id FROM outbox")]) == [(record_id,)]


async def test_failed_deletion_sink_rolls_back_the_delete(db: SqliteDb) -> None:
    def setup(c: SqliteTx) -> dict[str, Any]:
        c.conn.execute("CREATE TABLE outbox (type TEXT, id TEXT)")
        return c.record_create("contact", {"e": 1})

    rec = await db.write(setup)
    wf = compile_one(
        WfCfg(
            name="del",
            listen="webhooks.x",
            steps=[
                step("del", action="delete_record", record_type="contact", record_id="{{ __data.rid }}"),
            ],
        )
    )
    result = await make_engine(db, Sink(fail=True)).run(wf, entity({"rid": rec["id"]}, "webhooks.x"))
    assert result.status == "failed" and "sink failed" in (result.error or "")
    assert db.read(lambda c: c.record_get("contact", rec["id"])) == rec
    assert db.read(lambda c: c.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]) == 0


async def test_update_of_missing_record_fails(db: SqliteDb) -> None:
    wf = compile_one(
        WfCfg(
            name="u",
            listen="webhooks.x",
            steps=[
                step("u", action="update_record", record_type="contact", record_id="nope", fields={"a": 1}),
            ],
        )
    )
    result = await make_engine(db).run(wf, entity({}, "webhooks.x"))
    assert result.status == "failed" and "no contact with id 'nope'" in (result.error or "")
    assert result.retryable is False
