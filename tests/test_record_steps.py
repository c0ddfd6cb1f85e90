"""Issue 16 bug 1: record steps take the record in `record_id` (SPEC §8), so `id` names the step
and they can have children; the old spelling (`id` = a template) is refused naming `record_id`;
the two checking layers (`config.workflows` and `engine.workflow`) give the same verdicts."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from config import parse_config
from config.errors import ConfigError
from config.workflows import StepConfig, WorkflowConfig
from engine.templates import TemplateEngine
from engine.workflow import SourceCaps, compile_workflows
from router.storage import open_storage

CONFIG = """
[endpoints.touch]
return_type = "continue"

[endpoints.drop]
return_type = "continue"

[[workflows]]
name = "touch"
listen = "endpoints.touch"
run_mode = "sync"

[[workflows.steps]]
id = "touch"
action = "update_record"
record_type = "note"
record_id = "{{ __data.id }}"
fields = { state = "{{ __data.state }}" }

[[workflows.steps]]
parent = "touch"
action = "respond"
return_type = "data"
return_data = '{"updated": "{{ __data.id }}"}'

[[workflows.steps]]
parent = "touch"
branch = "failure"
action = "respond"
status = "404"
return_type = "data"
return_data = '{"error": "no such note"}'

[[workflows]]
name = "drop"
listen = "endpoints.drop"
run_mode = "sync"

[[workflows.steps]]
id = "drop"
action = "delete_record"
record_type = "note"
record_id = "{{ __data.id }}"

[[workflows.steps]]
parent = "drop"
action = "respond"
return_type = "data"
return_data = '{"deleted": "{{ __data.id }}"}'

[[workflows.steps]]
parent = "drop"
branch = "failure"
action = "respond"
status = "422"
return_type = "data"
return_data = '{"error": {{ __data.__error | json_encode }}}'
"""


def seed(router: Any, n: int) -> list[str]:
    """Records made through the store's own interface before the daemon starts."""
    store = open_storage(Path(router.data_dir) / "router.db")
    try:
        return store.write_sync(
            lambda tx: [tx.record_create("note", {"state": "open", "n": i})["id"] for i in range(n)]
        )
    finally:
        store.close()


def notes(router: Any) -> dict[str, str]:
    conn = sqlite3.connect(f"file:{Path(router.data_dir) / 'router.db'}?mode=ro", uri=True, timeout=10)
    try:
        return dict(conn.execute("SELECT id, state FROM record_note").fetchall())
    finally:
        conn.close()


def test_update_record_then_respond_and_delete_record_with_a_failure_branch(router_factory) -> None:  # type: ignore[no-untyped-def]
    router = router_factory(CONFIG, start=False)
    first, second = seed(router, 2)
    router.start()
    touch, drop = router.url("endpoints.touch"), router.url("endpoints.drop")

    r = httpx.post(touch, json={"id": first, "state": "closed"}, timeout=10)
    assert (r.status_code, r.json()) == (200, {"updated": first})
    assert notes(router) == {first: "closed", second: "open"}
    r = httpx.post(touch, json={"id": "missing", "state": "closed"}, timeout=10)
    assert (r.status_code, r.json()) == (404, {"error": "no such note"})

    r = httpx.post(drop, json={"id": second}, timeout=10)
    assert (r.status_code, r.json()) == (200, {"deleted": second})
    assert notes(router) == {first: "closed"}
    # No id: the record id renders empty, the step fails and its failure branch answers.
    r = httpx.post(drop, json={}, timeout=10)
    assert r.status_code == 422 and "record id rendered empty" in r.json()["error"]
    assert notes(router) == {first: "closed"}


OLD_SPELLING = """
[endpoints.touch]
return_type = "continue"

[[workflows]]
name = "old"
listen = "endpoints.touch"
run_mode = "sync"

[[workflows.steps]]
action = "{action}"
record_type = "note"
id = "{{{{ __data.id }}}}"
{fields}
"""


@pytest.mark.parametrize("action", ["update_record", "delete_record"])
def test_the_old_spelling_is_a_config_error_naming_record_id(router_factory, action: str) -> None:  # type: ignore[no-untyped-def]
    fields = 'fields = { state = "x" }' if action == "update_record" else ""
    router = router_factory(OLD_SPELLING.format(action=action, fields=fields), start=False)
    check = router.cli("check", check=False)
    assert check.returncode != 0
    out = check.stdout + check.stderr
    assert "workflows.old.steps[0].id" in out and "record_id = '{{ __data.id }}'" in out, out
    # The daemon refuses to start on it, with the same message.
    serve = subprocess.run(
        [sys.executable, "-m", "router.cli", "serve", "-c", str(router.config_path)],
        capture_output=True,
        text=True,
        env=router.env,
        timeout=60,
    )
    assert serve.returncode != 0 and "record_id" in serve.stdout + serve.stderr


# -- the two checking layers agree ------------------------------------------------------------

REC = {"record_type": "note", "record_id": "{{ __data.id }}"}
CASES: dict[str, tuple[bool, list[dict[str, Any]]]] = {
    "update then respond": (
        True,
        [
            {"id": "u", "action": "update_record", **REC, "fields": {"a": "1"}},
            {"parent": "u", "action": "log", "message": "ok"},
        ],
    ),
    "delete with failure branch": (
        True,
        [
            {"id": "d", "action": "delete_record", **REC},
            {"parent": "d", "branch": "failure", "action": "log", "message": "{{ __data.__error }}"},
        ],
    ),
    "old spelling, update": (
        False,
        [{"action": "update_record", "record_type": "note", "id": "{{ __data.id }}", "fields": {"a": "1"}}],
    ),
    "old spelling, delete, with a child": (
        False,
        [
            {"action": "delete_record", "record_type": "note", "id": "{{ __data.id }}"},
            {"parent": "step-1", "action": "log", "message": "x"},
        ],
    ),
    "parent names an automatic id": (
        False,
        [{"action": "log", "message": "a"}, {"parent": "step-1", "action": "log", "message": "b"}],
    ),
    "unknown parent": (
        False,
        [{"id": "a", "action": "log", "message": "a"}, {"parent": "b", "action": "log", "message": "b"}],
    ),
    "duplicate id": (
        False,
        [{"id": "a", "action": "log", "message": "a"}, {"id": "a", "action": "log", "message": "b"}],
    ),
    "branch without parent": (False, [{"branch": "yes", "action": "log", "message": "a"}]),
    "condition child without branch": (
        False,
        [
            {"id": "c", "condition": {"left": "{{ __data.x }}", "operator": "is_empty"}},
            {"parent": "c", "action": "log", "message": "a"},
        ],
    ),
    "action child with a yes branch": (
        False,
        [
            {"id": "a", "action": "log", "message": "a"},
            {"parent": "a", "branch": "yes", "action": "log", "message": "b"},
        ],
    ),
    "loop": (
        False,
        [
            {"id": "a", "parent": "b", "action": "log", "message": "a"},
            {"id": "b", "parent": "a", "action": "log", "message": "b"},
        ],
    ),
    "condition and action": (
        False,
        [{"action": "log", "message": "a", "condition": {"left": "1", "operator": "is_empty"}}],
    ),
}


def config_layer_accepts(steps: list[dict[str, Any]]) -> bool:
    try:
        parse_config(
            {"webhooks": {"x": {}}, "workflows": [{"name": "w", "listen": "webhooks.x", "steps": steps}]}
        )
    except ConfigError:
        return False
    return True


def engine_layer_accepts(steps: list[dict[str, Any]]) -> bool:
    """The engine's compiler on its own: the config models built without their validators."""
    models = []
    for raw in steps:
        fixed = {k: raw[k] for k in ("id", "parent", "branch", "condition", "action") if k in raw}
        extra = {k: v for k, v in raw.items() if k not in fixed}
        model = StepConfig.model_construct(**fixed)
        model.__pydantic_extra__ = extra
        models.append(model)
    workflow = WorkflowConfig.model_construct(name="w", listen=["webhooks.x"], steps=models)
    _, problems = compile_workflows([workflow], lambda source: SourceCaps(), TemplateEngine())
    return not problems


@pytest.mark.parametrize("name", list(CASES))
def test_config_and_engine_layers_agree(name: str) -> None:
    expected, steps = CASES[name]
    assert (config_layer_accepts(steps), engine_layer_accepts(steps)) == (expected, expected)
